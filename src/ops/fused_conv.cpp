// cuDNN graphs for the fused convolutions (see fused_conv.h), through cudnn-frontend's header-only
// graph API. Each graph is built once per shape (validate, heuristics, support check, plan build)
// and cached for the process; a call looks its graph up, binds pointers to its tensors and queues
// it on the current stream (so it is captured in a CUDA graph like any ATen op).
//
// The patterns follow cuDNN's specialised fusion engines ("ConvBNfprop", "DgradDreluBNBwdWeight",
// "ConvBNwgrad"). Where cuDNN wants a detail other than the one we try first (the type of the
// prologue's scale and shift, how the mean enters the ReLU mask), the next variant is tried; the
// variant built is part of what bench/fused_conv_probe prints.
#include "ops/fused_conv.h"

#include <stdexcept>

#ifdef RESNET_WITH_CUDNN_FRONTEND
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cudnn/Handle.h>
#include <ATen/record_function.h>
#include <c10/cuda/CUDAGuard.h>
#include <cudnn_frontend.h>

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <vector>
#endif

namespace resnet::fused {

#ifndef RESNET_WITH_CUDNN_FRONTEND

bool fused_conv_supported(const torch::Device&, std::string* why) {
  if (why)
    *why = "this build has no cuDNN graph support (cudnn-frontend's headers were not found when it was configured; "
           "scripts/install-deps installs them)";
  return false;
}

namespace {
[[noreturn]] void unavailable() {
  std::string why;
  fused_conv_supported(torch::Device(torch::kCPU), &why);
  throw std::runtime_error("fused convolutions: " + why);
}
}  // namespace

ConvStats conv_stats(const torch::Tensor&, const torch::Tensor&, const InputNorm&, ConvGeometry) { unavailable(); }
DgradNorm dgrad_relu_bn(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, const InputNorm&,
                        ConvGeometry) {
  unavailable();
}
torch::Tensor dgrad(const torch::Tensor&, const torch::Tensor&, at::IntArrayRef, ConvGeometry, const torch::Tensor&,
                    const torch::Tensor&) {
  unavailable();
}
torch::Tensor wgrad(const torch::Tensor&, const torch::Tensor&, const InputNorm&, at::IntArrayRef, ConvGeometry) {
  unavailable();
}
std::vector<std::string> fused_conv_graphs_built() { return {}; }

#else

namespace {

namespace fe = cudnn_frontend;
using Attr = std::shared_ptr<fe::graph::Tensor_attributes>;

// Fixed ids of the graphs' user tensors: a call binds pointers to them by id.
enum Uid : int64_t {
  kX = 1, kW, kY, kSum, kSqSum, kScale, kShift, kDy, kDx, kMean, kInvstd, kGamma, kBeta, kDscale, kDbias, kEqDy,
  kEqX, kEqBias, kDw, kNegMean, kAddend, kMaskBy
};

// How the mean enters the ReLU mask of dgrad_relu_bn's graph: x - mean, or x + (-mean) as cuDNN's
// sample writes it (a tensor of its own; dbn_weight still gets the mean).
enum class MeanMode { kSub, kAddNegatedSeparate };

struct Graph {
  std::shared_ptr<fe::graph::Graph> graph;
  int64_t workspace = 0;
  bool half_params = false;  // the prologue's scale and shift are fp16 tensors
  MeanMode mean_mode = MeanMode::kSub;
  bool adds = false;   // dgrad's epilogue adds a tensor
  bool masks = false;  // and masks the sum by another tensor > 0 (a ReLU's backward)
};

std::mutex log_mutex;
std::vector<std::string> built_log;  // one line per graph built: its key and the variant cuDNN took

std::vector<int64_t> dims(at::IntArrayRef s) { return {s.begin(), s.end()}; }

// Strides of a channels-last (NHWC) tensor of these NCHW sizes.
std::vector<int64_t> nhwc_strides(const std::vector<int64_t>& d) {
  return {d[1] * d[2] * d[3], 1, d[3] * d[1], d[1]};
}

Attr tensor(fe::graph::Graph& g, Uid uid, const char* name, const std::vector<int64_t>& d,
            std::optional<fe::DataType_t> type = std::nullopt) {
  auto a = fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim(d).set_stride(nhwc_strides(d));
  if (type) a.set_data_type(*type);
  return g.tensor(a);
}

// A per-channel [1, C, 1, 1] tensor.
Attr channel_tensor(fe::graph::Graph& g, Uid uid, const char* name, int64_t C, fe::DataType_t type) {
  return tensor(g, uid, name, {1, C, 1, 1}, type);
}

void set_output(const Attr& t, Uid uid, const std::vector<int64_t>& d, std::optional<fe::DataType_t> type = {}) {
  t->set_output(true).set_uid(uid).set_dim(d).set_stride(nhwc_strides(d));
  if (type) t->set_data_type(*type);
}

std::shared_ptr<fe::graph::Graph> new_graph(fe::DataType_t intermediate = fe::DataType_t::FLOAT) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::HALF)
      .set_intermediate_data_type(intermediate)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

// A convolution's padding, stride and dilation in cudnn-frontend's attributes (fprop, dgrad, wgrad).
template <typename Attributes>
Attributes geometry(ConvGeometry g) {
  return Attributes().set_padding({g.padding, g.padding}).set_stride({g.stride, g.stride}).set_dilation({1, 1});
}

// relu(x * scale + shift), the previous batch norm applied in the prologue.
Attr normalise(fe::graph::Graph& g, const Attr& x, int64_t C, fe::DataType_t type) {
  auto scale = channel_tensor(g, kScale, "scale", C, type);
  auto shift = channel_tensor(g, kShift, "shift", C, type);
  using P = fe::graph::Pointwise_attributes;
  auto scaled = g.pointwise(x, scale, P().set_mode(fe::PointwiseMode_t::MUL));
  auto shifted = g.pointwise(scaled, shift, P().set_mode(fe::PointwiseMode_t::ADD));
  return g.pointwise(shifted, P().set_mode(fe::PointwiseMode_t::RELU_FWD));
}

// Validates and builds `g`; an empty string where it runs here, else what stopped it.
std::string build(fe::graph::Graph& g, cudnnHandle_t handle) {
  auto step = [](fe::error_t e, const char* what) { return e.is_good() ? std::string() : what + (": " + e.get_message()); };
  std::string err;
  if (!(err = step(g.validate(), "validate")).empty()) return err;
  if (!(err = step(g.build_operation_graph(handle), "operation graph")).empty()) return err;
  if (!(err = step(g.create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK}), "heuristics")).empty())
    return err;
  if (!(err = step(g.check_support(handle), "support")).empty()) return err;
  return step(g.build_plans(handle), "plan");
}

std::string describe(const Graph& g) {
  std::string d = g.half_params ? " [fp16 scale/shift]" : "";
  if (g.mean_mode == MeanMode::kAddNegatedSeparate) d += " [mask: x + (-mean), separate tensor]";
  if (g.adds) d += " [+ addend in the epilogue]";
  if (g.masks) d += " [ReLU mask in the epilogue]";
  return d + " workspace " + std::to_string(g.workspace) + " B";
}

class Cache {
 public:
  // The graph under `key`, built by the first of `variants` that cuDNN supports.
  const Graph& get(const std::string& key, cudnnHandle_t handle,
                   const std::vector<std::function<Graph()>>& variants) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = graphs_.find(key);
    if (it != graphs_.end()) return it->second;
    std::string errors;
    for (const auto& make : variants) {
      Graph candidate = make();
      const std::string err = build(*candidate.graph, handle);
      if (err.empty()) {
        int64_t ws = 0;
        fe::error_t e = candidate.graph->get_workspace_size(ws);
        if (!e.is_good()) throw std::runtime_error("cuDNN graph " + key + ": workspace: " + e.get_message());
        candidate.workspace = ws;
        {
          std::lock_guard<std::mutex> log_lock(log_mutex);
          built_log.push_back(key + describe(candidate) +
                              (errors.empty() ? "" : " (declined before it: " + errors.substr(0, 400) + ")"));
        }
        return graphs_.emplace(key, std::move(candidate)).first->second;
      }
      errors += (errors.empty() ? "" : "; ") + err;
    }
    throw std::runtime_error("cuDNN has no engine for the fused convolution " + key + " (" + errors + ")");
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, Graph> graphs_;
};

Cache& cache() {
  static Cache c;
  return c;
}

std::string key(const char* kind, at::IntArrayRef x, at::IntArrayRef w, ConvGeometry g, bool prologue) {
  std::ostringstream k;
  k << kind << (prologue ? "+norm" : "") << " x" << x << " w" << w << " stride " << g.stride << " pad " << g.padding
    << " on cuda:" << static_cast<int>(at::cuda::current_device());
  return k.str();
}

// `op` names the call for --trace (a "conv" name: the profile counts it as a convolution).
void run(const char* op, const Graph& graph, cudnnHandle_t handle, std::unordered_map<int64_t, void*>& pointers,
         const torch::Tensor& like, const std::string& what) {
  RECORD_FUNCTION(op, std::vector<c10::IValue>());
  torch::Tensor workspace;
  if (graph.workspace > 0) workspace = at::empty({graph.workspace}, like.options().dtype(at::kByte));
  fe::error_t e =
      graph.graph->execute(handle, pointers, workspace.defined() ? workspace.data_ptr() : nullptr);
  if (!e.is_good()) throw std::runtime_error("cuDNN fused convolution " + what + ": " + e.get_message());
}

void check_activation(const torch::Tensor& t, const char* name) {
  if (!t.is_cuda() || t.scalar_type() != at::kHalf || t.dim() != 4 || !t.is_contiguous(at::MemoryFormat::ChannelsLast))
    throw std::invalid_argument(std::string("fused convolution: ") + name +
                                " must be a 4-D fp16 channels-last CUDA tensor");
}

void check_vector(const torch::Tensor& t, int64_t n, const char* name) {
  if (!t.defined() || !t.is_cuda() || t.scalar_type() != at::kFloat || t.numel() != n || !t.is_contiguous())
    throw std::invalid_argument(std::string("fused convolution: ") + name + " must be a contiguous fp32 CUDA tensor of " +
                                std::to_string(n) + " values");
}

std::vector<int64_t> conv_out(at::IntArrayRef x, at::IntArrayRef w, ConvGeometry g) {
  return {x[0], w[0], (x[2] + 2 * g.padding - w[2]) / g.stride + 1, (x[3] + 2 * g.padding - w[3]) / g.stride + 1};
}

// Points the graph's scale and shift at the prologue's (fp16 copies where cuDNN took no fp32
// ones; returned, to live until the graph has run).
torch::Tensor bind_prologue(const Graph& graph, const InputNorm& in, int64_t channels,
                            std::unordered_map<int64_t, void*>& pointers) {
  torch::Tensor params = !graph.half_params              ? in.scale_shift
                         : in.scale_shift_half.defined() ? in.scale_shift_half
                                                         : in.scale_shift.to(at::kHalf);
  pointers[kScale] = params.data_ptr();
  pointers[kShift] = static_cast<char*>(params.data_ptr()) + channels * params.element_size();
  return params;
}

// The GPU's and cuDNN's part of fused_conv_supported: the same answer all process long.
bool device_supported(int index, std::string* why) {
  const cudaDeviceProp* p = at::cuda::getDeviceProperties(index);
  if (p->major < 8) {
    *why = "cuDNN fuses batch norm into convolutions on Ampere (sm_80) and newer GPUs; this one is sm_" +
           std::to_string(p->major * 10 + p->minor);
    return false;
  }
  if (cudnnGetVersion() < 8900) {
    *why = "cuDNN 8.9 or newer is needed, found " + std::to_string(cudnnGetVersion());
    return false;
  }
  return true;
}

}  // namespace

bool fused_conv_supported(const torch::Device& device, std::string* why) {
  auto no = [&](const std::string& reason) {
    if (why) *why = reason;
    return false;
  };
  if (!device.is_cuda()) return no("the fused convolutions run on CUDA GPUs only");
  if (!at::cuda::is_available()) return no("no CUDA GPU is visible");
  const int index = device.has_index() ? device.index() : at::cuda::current_device();
  // asked for every block of every forward pass: the answer is kept per device once known
  constexpr int kDevices = 64;
  static std::array<std::atomic<int>, kDevices> known{};  // 0: not asked yet, 1: yes, 2: no
  if (!why && index < kDevices && known[index] != 0) return known[index] == 1;
  std::string reason;
  const bool yes = device_supported(index, &reason);
  if (index < kDevices) known[index] = yes ? 1 : 2;
  return yes || no(reason);
}

std::vector<std::string> fused_conv_graphs_built() {
  std::lock_guard<std::mutex> lock(log_mutex);
  return built_log;
}

ConvStats conv_stats(const torch::Tensor& x, const torch::Tensor& w, const InputNorm& in, ConvGeometry geo) {
  check_activation(x, "x");
  check_activation(w, "w");
  const bool prologue = in.defined();
  if (prologue) check_vector(in.scale_shift, 2 * x.size(1), "the input norm's scale_shift");
  const c10::cuda::CUDAGuard guard(x.device());
  cudnnHandle_t handle = at::native::getCudnnHandle();
  const auto xd = dims(x.sizes()), wd = dims(w.sizes()), yd = conv_out(x.sizes(), w.sizes(), geo);
  auto make = [&](bool half_params) {
    return [=]() {
      Graph out{new_graph(), 0, half_params, MeanMode::kSub, false, false};
      fe::graph::Graph& g = *out.graph;
      Attr X = tensor(g, kX, "x", xd), W = tensor(g, kW, "w", wd);
      Attr input = prologue ? normalise(g, X, xd[1], half_params ? fe::DataType_t::HALF : fe::DataType_t::FLOAT) : X;
      Attr Y = g.conv_fprop(input, W,
                            geometry<fe::graph::Conv_fprop_attributes>(geo));
      set_output(Y, kY, yd, fe::DataType_t::HALF);
      auto [sum, sq] = g.genstats(Y, fe::graph::Genstats_attributes());
      set_output(sum, kSum, {1, yd[1], 1, 1}, fe::DataType_t::FLOAT);
      set_output(sq, kSqSum, {1, yd[1], 1, 1}, fe::DataType_t::FLOAT);
      return out;
    };
  };
  std::vector<std::function<Graph()>> variants{make(false)};
  if (prologue) variants.push_back(make(true));
  const std::string k = key("conv+stats", x.sizes(), w.sizes(), geo, prologue);
  const Graph& graph = cache().get(k, handle, variants);

  ConvStats r;
  r.y = at::empty(yd, x.options(), at::MemoryFormat::ChannelsLast);
  r.sums = at::empty({2 * yd[1]}, x.options().dtype(at::kFloat));
  std::unordered_map<int64_t, void*> p{{kX, x.data_ptr()},
                                       {kW, w.data_ptr()},
                                       {kY, r.y.data_ptr()},
                                       {kSum, r.sums.data_ptr()},
                                       {kSqSum, static_cast<float*>(r.sums.data_ptr()) + yd[1]}};
  const torch::Tensor params = prologue ? bind_prologue(graph, in, xd[1], p) : torch::Tensor();
  run("resnet::conv_fprop_stats", graph, handle, p, x, k);
  return r;
}

DgradNorm dgrad_relu_bn(const torch::Tensor& dy, const torch::Tensor& w, const torch::Tensor& x, const InputNorm& in,
                        ConvGeometry geo) {
  check_activation(dy, "dy");
  check_activation(w, "w");
  check_activation(x, "x");
  const int64_t C = x.size(1);
  check_vector(in.mean, C, "the input norm's mean");
  check_vector(in.invstd, C, "the input norm's 1/std");
  check_vector(in.weight, C, "the input norm's weight");
  check_vector(in.bias, C, "the input norm's bias");
  const c10::cuda::CUDAGuard guard(x.device());
  cudnnHandle_t handle = at::native::getCudnnHandle();
  const auto dyd = dims(dy.sizes()), wd = dims(w.sizes()), xd = dims(x.sizes());
  auto make = [&](MeanMode mode) {
    return [=]() {
    Graph out{new_graph(), 0, false, mode, false, false};
    fe::graph::Graph& g = *out.graph;
    using P = fe::graph::Pointwise_attributes;
    Attr DY = tensor(g, kDy, "dy", dyd), W = tensor(g, kW, "w", wd), X = tensor(g, kX, "x", xd);
    Attr dgrad_out = g.conv_dgrad(DY, W,
                                  geometry<fe::graph::Conv_dgrad_attributes>(geo));
    dgrad_out->set_dim(xd).set_stride(nhwc_strides(xd));
    Attr M = channel_tensor(g, kMean, "mean", C, fe::DataType_t::FLOAT);
    Attr V = channel_tensor(g, kInvstd, "invstd", C, fe::DataType_t::FLOAT);
    Attr S = channel_tensor(g, kGamma, "gamma", C, fe::DataType_t::FLOAT);
    Attr B = channel_tensor(g, kBeta, "beta", C, fe::DataType_t::FLOAT);
    // the forward's normalised input, for the ReLU's mask: (x - mean) * invstd * gamma + beta
    Attr centred;
    if (mode == MeanMode::kSub) {
      centred = g.pointwise(X, M, P().set_mode(fe::PointwiseMode_t::SUB));
    } else {
      centred = g.pointwise(X, channel_tensor(g, kNegMean, "-mean", C, fe::DataType_t::FLOAT),
                            P().set_mode(fe::PointwiseMode_t::ADD));
    }
    Attr normed = g.pointwise(centred, V, P().set_mode(fe::PointwiseMode_t::MUL));
    Attr scaled = g.pointwise(normed, S, P().set_mode(fe::PointwiseMode_t::MUL));
    Attr shifted = g.pointwise(scaled, B, P().set_mode(fe::PointwiseMode_t::ADD));
    Attr masked = g.pointwise(dgrad_out, shifted, P().set_mode(fe::PointwiseMode_t::RELU_BWD));
    set_output(masked, kDx, xd, fe::DataType_t::HALF);
    auto [dscale, dbias, eq_dy, eq_x, eq_bias] = g.dbn_weight(masked, X, M, V, S, fe::graph::DBN_weight_attributes());
    set_output(dscale, kDscale, {1, C, 1, 1}, fe::DataType_t::FLOAT);
    set_output(dbias, kDbias, {1, C, 1, 1}, fe::DataType_t::FLOAT);
    set_output(eq_dy, kEqDy, {1, C, 1, 1}, fe::DataType_t::FLOAT);
    set_output(eq_x, kEqX, {1, C, 1, 1}, fe::DataType_t::FLOAT);
    set_output(eq_bias, kEqBias, {1, C, 1, 1}, fe::DataType_t::FLOAT);
    return out;
    };
  };
  const Graph& graph = cache().get(key("dgrad+drelu+dbn", x.sizes(), w.sizes(), geo, true), handle,
                                   {make(MeanMode::kSub), make(MeanMode::kAddNegatedSeparate)});
  DgradNorm r;
  r.grad = at::empty(xd, x.options(), at::MemoryFormat::ChannelsLast);
  const auto f32 = x.options().dtype(at::kFloat);
  r.dweight = at::empty({C}, f32);
  r.dbias = at::empty({C}, f32);
  r.coef = at::empty({3 * C}, f32);
  auto* coef = static_cast<float*>(r.coef.data_ptr());
  std::unordered_map<int64_t, void*> p{
      {kDy, dy.data_ptr()},          {kW, w.data_ptr()},           {kX, x.data_ptr()},
      {kMean, in.mean.data_ptr()},   {kInvstd, in.invstd.data_ptr()}, {kGamma, in.weight.data_ptr()},
      {kBeta, in.bias.data_ptr()},   {kDx, r.grad.data_ptr()},     {kDscale, r.dweight.data_ptr()},
      {kDbias, r.dbias.data_ptr()},  {kEqDy, coef},                {kEqX, coef + C},
      {kEqBias, coef + 2 * C}};
  torch::Tensor neg_mean;
  if (graph.mean_mode == MeanMode::kAddNegatedSeparate) {
    neg_mean = in.mean.neg();
    p[kNegMean] = neg_mean.data_ptr();
  }
  run("resnet::conv_dgrad_relu_bn", graph, handle, p, x, "dgrad+drelu+dbn");
  return r;
}

torch::Tensor dgrad(const torch::Tensor& dy, const torch::Tensor& w, at::IntArrayRef x_sizes, ConvGeometry geo,
                    const torch::Tensor& addend, const torch::Tensor& mask_by) {
  check_activation(dy, "dy");
  check_activation(w, "w");
  const bool add = addend.defined(), mask = mask_by.defined();
  for (const auto* t : {&addend, &mask_by}) {
    if (!t->defined()) continue;
    check_activation(*t, "dgrad's addend and mask");
    if (t->sizes() != x_sizes) throw std::invalid_argument("fused convolution: dgrad's addend or mask has the wrong shape");
  }
  const c10::cuda::CUDAGuard guard(dy.device());
  cudnnHandle_t handle = at::native::getCudnnHandle();
  const auto dyd = dims(dy.sizes()), wd = dims(w.sizes()), xd = dims(x_sizes);
  auto make = [&](bool fuse_add, bool fuse_mask) {
    return [=]() {
      Graph out{new_graph(), 0, false, MeanMode::kSub, fuse_add, fuse_mask};
      fe::graph::Graph& g = *out.graph;
      using P = fe::graph::Pointwise_attributes;
      Attr DY = tensor(g, kDy, "dy", dyd), W = tensor(g, kW, "w", wd);
      Attr DX = g.conv_dgrad(DY, W,
                             geometry<fe::graph::Conv_dgrad_attributes>(geo));
      if (fuse_add || fuse_mask) DX->set_dim(xd).set_stride(nhwc_strides(xd));
      if (fuse_add) DX = g.pointwise(DX, tensor(g, kAddend, "addend", xd), P().set_mode(fe::PointwiseMode_t::ADD));
      if (fuse_mask) DX = g.pointwise(DX, tensor(g, kMaskBy, "mask", xd), P().set_mode(fe::PointwiseMode_t::RELU_BWD));
      set_output(DX, kDx, xd, fe::DataType_t::HALF);
      return out;
    };
  };
  std::vector<std::function<Graph()>> variants;
  if (add && mask) variants.push_back(make(true, true));
  if (add) variants.push_back(make(true, false));
  variants.push_back(make(false, false));
  const std::string k =
      key(add && mask ? "dgrad+add+drelu" : add ? "dgrad+add" : mask ? "dgrad+drelu" : "dgrad", x_sizes, w.sizes(),
          geo, false);
  const Graph& graph = cache().get(k, handle, variants);
  torch::Tensor dx = at::empty(xd, dy.options(), at::MemoryFormat::ChannelsLast);
  std::unordered_map<int64_t, void*> p{{kDy, dy.data_ptr()}, {kW, w.data_ptr()}, {kDx, dx.data_ptr()}};
  if (graph.adds) p[kAddend] = addend.data_ptr();
  if (graph.masks) p[kMaskBy] = mask_by.data_ptr();
  run("resnet::conv_dgrad", graph, handle, p, dy, k);
  if ((add && !graph.adds) || (mask && !graph.masks)) {
    RECORD_FUNCTION("resnet::dgrad_epilogue", std::vector<c10::IValue>());
    if (add && !graph.adds) dx.add_(addend);
    if (mask && !graph.masks) dx = at::threshold_backward(dx, mask_by, 0);
  }
  return dx;
}

torch::Tensor wgrad(const torch::Tensor& dy, const torch::Tensor& x, const InputNorm& in, at::IntArrayRef w_sizes,
                    ConvGeometry geo) {
  check_activation(dy, "dy");
  check_activation(x, "x");
  const bool prologue = in.defined();
  if (prologue) check_vector(in.scale_shift, 2 * x.size(1), "the input norm's scale_shift");
  const c10::cuda::CUDAGuard guard(x.device());
  cudnnHandle_t handle = at::native::getCudnnHandle();
  const auto dyd = dims(dy.sizes()), xd = dims(x.sizes()), wd = dims(w_sizes);
  auto make = [&](bool half_params) {
    return [=]() {
      // cuDNN's scale-bias-ReLU wgrad engine keeps the normalised input in fp16
      Graph out{new_graph(half_params ? fe::DataType_t::HALF : fe::DataType_t::FLOAT), 0, half_params, MeanMode::kSub,
                false, false};
      fe::graph::Graph& g = *out.graph;
      Attr DY = tensor(g, kDy, "dy", dyd), X = tensor(g, kX, "x", xd);
      Attr input = prologue ? normalise(g, X, xd[1], half_params ? fe::DataType_t::HALF : fe::DataType_t::FLOAT) : X;
      Attr DW = g.conv_wgrad(DY, input,
                             geometry<fe::graph::Conv_wgrad_attributes>(geo));
      set_output(DW, kDw, wd, fe::DataType_t::HALF);
      return out;
    };
  };
  std::vector<std::function<Graph()>> variants{make(false), make(true)};
  const std::string k = key("wgrad", x.sizes(), w_sizes, geo, prologue);
  const Graph& graph = cache().get(k, handle, variants);
  torch::Tensor dw = at::empty(wd, x.options(), at::MemoryFormat::ChannelsLast);
  std::unordered_map<int64_t, void*> p{{kDy, dy.data_ptr()}, {kX, x.data_ptr()}, {kDw, dw.data_ptr()}};
  const torch::Tensor params = prologue ? bind_prologue(graph, in, xd[1], p) : torch::Tensor();
  run("resnet::conv_wgrad", graph, handle, p, x, k);
  return dw;
}

#endif  // RESNET_WITH_CUDNN_FRONTEND

}  // namespace resnet::fused
