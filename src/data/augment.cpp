#include "data/augment.h"

#include <torch/nn/functional/conv.h>
#include <torch/nn/functional/vision.h>

#include <array>
#include <cmath>
#include <stdexcept>

#include "data/upload.h"

namespace resnet {
namespace {

constexpr double kPi = 3.14159265358979323846;

double radians(double degrees) { return degrees * kPi / 180.0; }

bool is_signed(AugmentOp op) {
  switch (op) {
    case AugmentOp::kShearX:
    case AugmentOp::kShearY:
    case AugmentOp::kTranslateX:
    case AugmentOp::kTranslateY:
    case AugmentOp::kRotate:
    case AugmentOp::kBrightness:
    case AugmentOp::kColor:
    case AugmentOp::kContrast:
    case AugmentOp::kSharpness:
      return true;
    default:
      return false;
  }
}

// torchvision's _augmentation_space for TrivialAugmentWide, computed as it computes it (float32
// linspace, whose rounding makes e.g. step 15 of 0-32 pixels 15.999999, a translation of 15).
torch::Tensor magnitude_table(AugmentOp op) {
  switch (op) {
    case AugmentOp::kShearX:
    case AugmentOp::kShearY:
    case AugmentOp::kBrightness:
    case AugmentOp::kColor:
    case AugmentOp::kContrast:
    case AugmentOp::kSharpness:
      return torch::linspace(0.0, 0.99, kAugmentBins);
    case AugmentOp::kTranslateX:
    case AugmentOp::kTranslateY:
      return torch::linspace(0.0, 32.0, kAugmentBins);
    case AugmentOp::kRotate:
      return torch::linspace(0.0, 135.0, kAugmentBins);
    case AugmentOp::kPosterize:  // 8 - round(bin / ((bins - 1) / 6)): 8 bits down to 2
      return 8 - (torch::arange(kAugmentBins) / ((kAugmentBins - 1) / 6.0)).round().to(torch::kInt);
    case AugmentOp::kSolarize:
      return torch::linspace(255.0, 0.0, kAugmentBins);
    default:
      return torch::zeros({kAugmentBins});
  }
}

double magnitude_at(AugmentOp op, int bin) {
  static const std::vector<std::vector<double>> tables = [] {
    std::vector<std::vector<double>> t;
    for (int op = 0; op < kAugmentOps; ++op) {
      const auto values = magnitude_table(static_cast<AugmentOp>(op)).to(torch::kDouble).contiguous();
      t.emplace_back(values.data_ptr<double>(), values.data_ptr<double>() + values.numel());
    }
    return t;
  }();
  return tables[static_cast<size_t>(op)][static_cast<size_t>(bin)];
}

// torchvision's _get_inverse_affine_matrix (output pixel -> input pixel, both relative to the
// image's centre), for a rotation by `angle` degrees about (cx, cy), a translation and shears
// (degrees), scale 1.
std::array<double, 6> inverse_affine(double cx, double cy, double angle, double tx, double ty, double shear_x,
                                     double shear_y) {
  const double rot = radians(angle), sx = radians(shear_x), sy = radians(shear_y);
  const double a = std::cos(rot - sy) / std::cos(sy);
  const double b = -std::cos(rot - sy) * std::tan(sx) / std::cos(sy) - std::sin(rot);
  const double c = std::sin(rot - sy) / std::cos(sy);
  const double d = -std::sin(rot - sy) * std::tan(sx) / std::cos(sy) + std::cos(rot);
  std::array<double, 6> m{d, -b, 0.0, -c, a, 0.0};
  m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty) + cx;
  m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty) + cy;
  return m;
}

// The inverse matrix of image b's geometric operation, as torchvision's _apply_op builds it.
std::array<double, 6> geometry_of(const AugmentDraw& d, double scale_x, double scale_y, int64_t height,
                                  int64_t width) {
  const double corner_x = -0.5 * static_cast<double>(width), corner_y = -0.5 * static_cast<double>(height);
  const double shear = std::atan(d.magnitude) * 180.0 / kPi;
  switch (d.op) {
    case AugmentOp::kShearX:  // about the top-left corner (center=[0, 0])
      return inverse_affine(corner_x, corner_y, 0, 0, 0, shear, 0);
    case AugmentOp::kShearY:
      return inverse_affine(corner_x, corner_y, 0, 0, 0, 0, shear);
    case AugmentOp::kTranslateX:  // int(magnitude) pixels of the crop, then to the output's
      return inverse_affine(0, 0, 0, std::trunc(d.magnitude) * scale_x, 0, 0, 0);
    case AugmentOp::kTranslateY:
      return inverse_affine(0, 0, 0, 0, std::trunc(d.magnitude) * scale_y, 0, 0);
    case AugmentOp::kRotate:  // F.rotate's angle is counter-clockwise: the matrix takes -angle
      return inverse_affine(0, 0, -d.magnitude, 0, 0, 0, 0);
    default:
      throw std::logic_error("geometry_of: not a geometric operation");
  }
}

torch::Tensor column(const std::vector<double>& values, const torch::Tensor& like) {
  return upload(torch::tensor(values, torch::kDouble).to(like.scalar_type()), like.device()).view({-1, 1, 1, 1});
}

torch::Tensor grey(const torch::Tensor& x) {  // [k, 1, H, W], as rgb_to_grayscale
  return (0.2989 * x.select(1, 0) + 0.587 * x.select(1, 1) + 0.114 * x.select(1, 2)).unsqueeze(1);
}

// factor * x + (1 - factor) * other, into 0-255 (torchvision's _blend)
torch::Tensor blend(const torch::Tensor& x, const torch::Tensor& other, const torch::Tensor& factor) {
  return (factor * x + (1 - factor) * other).clamp(0, 255);
}

// The 3x3 smoothing (1s around a 5, over 13) inside a one-pixel border left as it is.
torch::Tensor blurred(const torch::Tensor& x) {
  auto kernel = torch::ones({3, 1, 3, 3}, x.options());
  kernel.select(2, 1).select(2, 1).fill_(5.0);
  kernel /= 13.0;
  namespace F = torch::nn::functional;
  const auto inner = F::conv2d(x, kernel, F::Conv2dFuncOptions().groups(3));
  auto out = x.clone();
  out.narrow(2, 1, x.size(2) - 2).narrow(3, 1, x.size(3) - 2).copy_(inner);
  return out;
}

// torchvision's equalize per channel of each image, on the pixels rounded to whole levels:
// a lookup table from the histogram's cumulative sums; a channel whose histogram leaves a step
// of 0 stays as it was.
torch::Tensor equalize(const torch::Tensor& x) {
  const int64_t k = x.size(0), rows = k * 3, per_row = x.size(2) * x.size(3);
  const auto levels = x.round().clamp(0, 255).to(torch::kLong).reshape({rows, per_row});
  auto hist = torch::zeros({rows, 256}, x.options().dtype(torch::kLong));
  hist.scatter_add_(1, levels, torch::ones_like(levels));
  // the count of the highest level present (torchvision leaves it out of the step)
  const auto present = hist.gt(0).to(torch::kLong) * torch::arange(256, levels.options());
  const auto last = hist.gather(1, std::get<0>(present.max(1, /*keepdim=*/true)));
  const auto step = torch::div(per_row - last, 255, "floor");  // [rows, 1]
  const auto safe = torch::where(step.eq(0), torch::ones_like(step), step);
  auto lut = torch::div(hist.cumsum(1) + torch::div(step, 2, "floor"), safe, "floor");
  lut = torch::cat({torch::zeros_like(lut.narrow(1, 0, 1)), lut.narrow(1, 0, 255)}, 1).clamp(0, 255);
  const auto mapped = lut.gather(1, levels).to(x.scalar_type());
  const auto flat = x.reshape({rows, per_row});
  return torch::where(step.eq(0), flat, mapped).view_as(x);
}

}  // namespace

const char* augment_op_name(AugmentOp op) {
  static const char* names[kAugmentOps] = {"Identity",  "ShearX",     "ShearY",    "TranslateX", "TranslateY",
                                           "Rotate",    "Brightness", "Color",     "Contrast",   "Sharpness",
                                           "Posterize", "Solarize",   "AutoContrast", "Equalize"};
  return names[static_cast<int>(op)];
}

AugmentDraw draw_trivial_augment(std::mt19937_64& rng) {
  AugmentDraw d;
  d.op = static_cast<AugmentOp>(std::uniform_int_distribution<int>(0, kAugmentOps - 1)(rng));
  d.magnitude = magnitude_at(d.op, std::uniform_int_distribution<int>(0, kAugmentBins - 1)(rng));
  const bool negative = std::bernoulli_distribution(0.5)(rng);
  if (negative && is_signed(d.op)) d.magnitude = -d.magnitude;
  return d;
}

torch::Tensor trivial_augment(const torch::Tensor& pixels, const std::vector<AugmentDraw>& draws,
                              const std::vector<double>& translate_scale) {
  const int64_t n = pixels.size(0), height = pixels.size(2), width = pixels.size(3);
  if (static_cast<int64_t>(draws.size()) != n || static_cast<int64_t>(translate_scale.size()) != 2 * n)
    throw std::logic_error("trivial_augment: a draw and two translation scales for each image");
  std::vector<std::vector<int64_t>> by_op(kAugmentOps);
  for (int64_t b = 0; b < n; ++b) by_op[static_cast<int>(draws[b].op)].push_back(b);
  auto out = pixels.clone();
  const auto index_of = [&](const std::vector<int64_t>& rows) {
    return upload(torch::tensor(rows, torch::kLong), pixels.device());
  };
  // One pass per operation over the images that drew it.
  const auto apply = [&](const std::vector<int64_t>& rows, const auto& op) {
    if (rows.empty()) return;
    const auto index = index_of(rows);
    out.index_copy_(0, index, op(out.index_select(0, index), rows));
  };
  // Geometric: one grid for all, torchvision's _gen_affine_grid (pixel centres relative to the
  // image's centre, the matrix scaled to grid_sample's [-1, 1]), nearest, zeros outside.
  std::vector<int64_t> geometric;
  for (AugmentOp op : {AugmentOp::kShearX, AugmentOp::kShearY, AugmentOp::kTranslateX, AugmentOp::kTranslateY,
                       AugmentOp::kRotate})
    for (int64_t b : by_op[static_cast<int>(op)]) geometric.push_back(b);
  apply(geometric, [&](const torch::Tensor& x, const std::vector<int64_t>& rows) {
    std::vector<double> theta;
    for (int64_t b : rows) {
      const auto m = geometry_of(draws[b], translate_scale[2 * b], translate_scale[2 * b + 1], height, width);
      // rescaled_theta = theta^T / [w / 2, h / 2]: [3, 2] per image
      const double hw = 0.5 * static_cast<double>(width), hh = 0.5 * static_cast<double>(height);
      theta.insert(theta.end(), {m[0] / hw, m[3] / hh, m[1] / hw, m[4] / hh, m[2] / hw, m[5] / hh});
    }
    const auto opts = x.options();
    const auto rescaled = upload(torch::tensor(theta, torch::kDouble).to(x.scalar_type()), x.device()).view({-1, 3, 2});
    const auto xs = torch::linspace(-0.5 * width + 0.5, 0.5 * width - 0.5, width, opts);
    const auto ys = torch::linspace(-0.5 * height + 0.5, 0.5 * height - 0.5, height, opts);
    const auto base = torch::stack({xs.view({1, width}).expand({height, width}), ys.view({height, 1}).expand({height, width}),
                                    torch::ones({height, width}, opts)},
                                   2)
                          .view({1, height * width, 3})
                          .expand({x.size(0), height * width, 3});
    const auto grid = base.bmm(rescaled).view({x.size(0), height, width, 2});
    namespace F = torch::nn::functional;
    return F::grid_sample(x, grid,
                          F::GridSampleFuncOptions().mode(torch::kNearest).padding_mode(torch::kZeros).align_corners(false));
  });
  const auto factors = [&](const std::vector<int64_t>& rows, const torch::Tensor& like) {
    std::vector<double> f;
    for (int64_t b : rows) f.push_back(1.0 + draws[b].magnitude);
    return column(f, like);
  };
  apply(by_op[static_cast<int>(AugmentOp::kBrightness)], [&](const torch::Tensor& x, const std::vector<int64_t>& rows) {
    return blend(x, torch::zeros_like(x), factors(rows, x));
  });
  apply(by_op[static_cast<int>(AugmentOp::kColor)], [&](const torch::Tensor& x, const std::vector<int64_t>& rows) {
    return blend(x, grey(x), factors(rows, x));
  });
  apply(by_op[static_cast<int>(AugmentOp::kContrast)], [&](const torch::Tensor& x, const std::vector<int64_t>& rows) {
    return blend(x, grey(x).mean({1, 2, 3}, /*keepdim=*/true), factors(rows, x));
  });
  apply(by_op[static_cast<int>(AugmentOp::kSharpness)], [&](const torch::Tensor& x, const std::vector<int64_t>& rows) {
    if (height <= 2 || width <= 2) return x;
    return blend(x, blurred(x), factors(rows, x));
  });
  apply(by_op[static_cast<int>(AugmentOp::kPosterize)], [&](const torch::Tensor& x, const std::vector<int64_t>& rows) {
    std::vector<double> step;  // 2^(8 - bits): the levels kept are its multiples
    for (int64_t b : rows) step.push_back(std::ldexp(1.0, 8 - static_cast<int>(draws[b].magnitude)));
    const auto q = column(step, x);
    return torch::floor(x.round().clamp(0, 255) / q) * q;  // (whole levels, as torchvision's uint8)
  });
  apply(by_op[static_cast<int>(AugmentOp::kSolarize)], [&](const torch::Tensor& x, const std::vector<int64_t>& rows) {
    std::vector<double> threshold;
    for (int64_t b : rows) threshold.push_back(draws[b].magnitude);
    return torch::where(x.ge(column(threshold, x)), 255 - x, x);
  });
  apply(by_op[static_cast<int>(AugmentOp::kAutoContrast)], [&](const torch::Tensor& x, const std::vector<int64_t>&) {
    auto low = x.amin({2, 3}, /*keepdim=*/true), high = x.amax({2, 3}, /*keepdim=*/true);
    const auto flat = high.eq(low);  // a flat channel stays as it is
    const auto scale = torch::where(flat, torch::ones_like(low), 255 / (high - low));
    low = torch::where(flat, torch::zeros_like(low), low);
    return ((x - low) * scale).clamp(0, 255);
  });
  apply(by_op[static_cast<int>(AugmentOp::kEqualize)],
        [&](const torch::Tensor& x, const std::vector<int64_t>&) { return equalize(x); });
  return out;
}

}  // namespace resnet
