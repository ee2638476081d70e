// Readers, decoding, the loader and the transforms, on files the fixture script
// (tests/reference/make_data_refs.py) and these tests generate.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <numeric>
#include <random>
#include <set>
#include <atomic>
#include <thread>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <tuple>

#ifdef RESNET_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "core/device.h"
#include "core/error.h"
#include "core/log.h"
#include "data/archive.h"
#include "data/augment.h"
#include "data/cifar10.h"
#include "data/decode.h"
#include "data/gpu_jpeg.h"
#include "data/image_folder.h"
#include "data/imagenet_val.h"
#include "data/mat5.h"
#include "data/loader.h"
#include "data/md5.h"
#include "data/open.h"
#include "data/transforms.h"
#include "train/report.h"
#include "train/trainer.h"
#include "io/torch_save.h"
#include "test_util.h"

#ifdef RESNET_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

using resnet::test::input_error_of;

namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& rel) { return (fs::path(RESNET_DATA_FIXTURES) / rel).string(); }

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

// A CIFAR-10 binary folder with `records` records per file and the given first label.
void write_cifar(const fs::path& dir, int records, uint8_t first_label = 3) {
  fs::create_directories(dir);
  std::ofstream(dir / "batches.meta.txt") << "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
  for (const char* name : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                           "data_batch_5.bin", "test_batch.bin"}) {
    std::ofstream f(dir / name, std::ios::binary);
    for (int r = 0; r < records; ++r) {
      std::vector<char> record(resnet::kCifarRecordBytes);
      record[0] = static_cast<char>(r == 0 ? first_label : r % 10);
      for (size_t i = 1; i < record.size(); ++i) record[i] = static_cast<char>((i + r) % 251);
      f.write(record.data(), static_cast<std::streamsize>(record.size()));
    }
  }
}

// Two-sample Kolmogorov-Smirnov statistic.
double ks_statistic(std::vector<double> a, std::vector<double> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  size_t i = 0, j = 0;
  double d = 0;
  while (i < a.size() && j < b.size()) {
    const double x = std::min(a[i], b[j]);
    while (i < a.size() && a[i] <= x) ++i;
    while (j < b.size() && b[j] <= x) ++j;
    d = std::max(d, std::abs(double(i) / a.size() - double(j) / b.size()));
  }
  return d;
}

// The image shape of a fixture's draws: "draws.HxW" -> {H, W}.
std::pair<int64_t, int64_t> draws_shape(const std::string& key) {
  const auto hw = key.substr(6);
  return {std::stoll(hw.substr(0, hw.find('x'))), std::stoll(hw.substr(hw.find('x') + 1))};
}

}  // namespace

// ---- decoding ---------------------------------------------------------------------------------

// Also CMYK JPEGs (PIL's conversion to RGB), a progressive JPEG and a PNG named .JPEG (kinds/).
TEST(Decode, MatchesPilForJpegPngGreyRgbaAndPalette) {
  const auto expected = resnet::load_tensor_dict(fixture("expected.pt"));
  ASSERT_GE(expected.size(), 10u);
  for (const auto& [rel, want] : expected) {
    const auto got = resnet::decode_image_file(fixture(rel));
    ASSERT_EQ(got.sizes(), want.sizes()) << rel;
    const int max_diff = (got.to(torch::kInt) - want.to(torch::kInt)).abs().max().item<int>();
    // Both decode with libjpeg-turbo's default (islow) IDCT; PNG is lossless.
    EXPECT_LE(max_diff, 1) << rel;
    const auto size = resnet::read_image_size(resnet::read_file_bytes(fixture(rel)), rel);
    EXPECT_EQ(size.height, want.size(1)) << rel;
    EXPECT_EQ(size.width, want.size(2)) << rel;
  }
}

TEST(Decode, EncodedJpegsDecodeBackToTheirPixels) {
  // encode_jpeg (the GPU decoder's filler images) against our decoder: the size exactly, a smooth
  // picture's pixels within what quality 90 and 4:2:0 lose; the baseline markers (SOF0).
  auto y = torch::arange(24, torch::kFloat).view({24, 1}).expand({24, 40});
  auto x = torch::arange(40, torch::kFloat).view({1, 40}).expand({24, 40});
  const auto rgb = torch::stack({4 * y, 3 * x + 20, 200 - 2 * x}).to(torch::kUInt8);
  const auto bytes = resnet::encode_jpeg(rgb, 90);
  ASSERT_GE(bytes.size(), 4u);
  EXPECT_EQ(bytes[0], 0xFF);
  EXPECT_EQ(bytes[1], 0xD8);
  EXPECT_EQ(bytes[bytes.size() - 1], 0xD9);
  bool baseline = false;
  for (size_t i = 0; i + 1 < bytes.size(); ++i) baseline = baseline || (bytes[i] == 0xFF && bytes[i + 1] == 0xC0);
  EXPECT_TRUE(baseline);
  const auto back = resnet::decode_image(bytes, "encoded.jpg");
  ASSERT_EQ(back.sizes(), rgb.sizes());
  const double mean = (back.to(torch::kFloat) - rgb.to(torch::kFloat)).abs().mean().item<double>();
  EXPECT_LE(mean, 3.0);
  // A noisy picture's JPEG is larger than the encoder's first 4 KB: it grows its buffer.
  torch::manual_seed(3);
  const auto noise = torch::randint(0, 256, {3, 96, 128}, torch::kInt).to(torch::kUInt8);
  const auto big = resnet::encode_jpeg(noise, 95);
  EXPECT_GT(big.size(), 4096u);
  EXPECT_EQ(big[big.size() - 2], 0xFF);
  EXPECT_EQ(big[big.size() - 1], 0xD9);
  EXPECT_EQ(resnet::decode_image(big, "noise.jpg").sizes(), noise.sizes());
  EXPECT_THROW(resnet::encode_jpeg(rgb.to(torch::kFloat), 90), c10::Error);
  EXPECT_THROW(resnet::encode_jpeg(rgb[0], 90), c10::Error);
}

TEST(Decode, JpegsLargerThanKeepSideDecodeSmallerAsPilsDraft) {
  // libjpeg's DCT scaling M/8, the smallest M keeping the shorter side at least keep_side: at 1/2
  // and 1/4 against PIL's draft() (the same scaled IDCT); at 3/8, which draft() lacks, against the
  // whole decode shrunk with antialiasing; smaller images, and PNGs, whole.
  namespace F = torch::nn::functional;
  const auto path = fixture("draft/big.jpg");
  const auto bytes = resnet::read_file_bytes(path);
  const auto drafts = resnet::load_tensor_dict(fixture("draft/draft.pt"));
  EXPECT_EQ(resnet::jpeg_eighths({300, 400}, 75), 2);  // by the shorter side
  EXPECT_EQ(resnet::jpeg_eighths({300, 400}, 113), 3);
  EXPECT_EQ(resnet::jpeg_eighths({300, 400}, 300), 8);
  EXPECT_EQ(resnet::jpeg_eighths({300, 400}, 0), 8);
  EXPECT_EQ(resnet::jpeg_eighths({3000, 4000}, 672), 2);  // 750 x 1000 (3 x 224 kept)
  EXPECT_EQ(resnet::jpeg_eighths({500, 4000}, 672), 8);   // a panorama's shorter side is small already
  const auto whole = resnet::decode_image(bytes, path);
  EXPECT_TRUE(torch::equal(resnet::decode_image(bytes, path, 300), whole));
  for (const auto& [keep, key] : {std::pair<int64_t, const char*>{150, "draft.2"}, {75, "draft.4"}}) {
    const auto want = resnet::find_tensor(drafts, key, "draft.pt");
    const auto got = resnet::decode_image(bytes, path, keep);
    ASSERT_EQ(got.sizes(), want.sizes()) << key;
    const double err = (got.to(torch::kFloat) - want.to(torch::kFloat)).abs().max().item<double>();
    std::cout << key << ": max abs difference from PIL's draft " << err << "\n";
    EXPECT_LE(err, 2.0) << key;
  }
  const auto three = resnet::decode_image(bytes, path, 113);
  ASSERT_EQ(three.sizes(), (std::vector<int64_t>{3, 113, 150}));
  const auto shrunk = F::interpolate(whole.unsqueeze(0).to(torch::kFloat), F::InterpolateFuncOptions()
                                                                               .size(std::vector<int64_t>{113, 150})
                                                                               .mode(torch::kBilinear)
                                                                               .align_corners(false)
                                                                               .antialias(true))[0];
  const double mean = (three.to(torch::kFloat) - shrunk).abs().mean().item<double>();
  std::cout << "3/8: mean abs difference from the whole decode shrunk " << mean << "\n";
  // The scaled IDCT filters otherwise than bilinear antialiasing: on this noisy picture PIL's own
  // draft() at 1/2 and 1/4 differs from the antialiased shrink by 4.4 and 5.9 on average; 3/8: 8.0.
  EXPECT_LE(mean, 10.0);
  const auto png = fixture("kinds/png.JPEG");
  EXPECT_TRUE(torch::equal(resnet::decode_image_file(png, 4), resnet::decode_image_file(png)));
}

TEST(Decode, ARegionIsTheWholeDecodeCutOrItsScaledOne) {
  // decode_image_region against decode_image: at scale 1 (min_side beyond the box) the region is
  // the whole decode's pixels there, and it covers the box (JPEGs of each subsampling, grey, CMYK,
  // progressive, PNG); at a smaller scale it is the DCT-scaled decode's pixels there.
  const auto index = resnet::index_image_folder(fixture("gpu/train"));
  for (const auto& path : index.files) {
    const auto bytes = resnet::read_file_bytes(path);
    const auto whole = resnet::decode_image(bytes, path);
    const int64_t h = whole.size(1), w = whole.size(2);
    for (const resnet::PixelBox& box : std::vector<resnet::PixelBox>{
             {h / 4, w / 3, std::max<int64_t>(1, h / 2), std::max<int64_t>(1, w / 3)}, {0, 0, h, w}, {h - 5, w - 7, 5, 7}}) {
      const auto r = resnet::decode_image_region(bytes, path, box, 100000);
      ASSERT_EQ(r.scale, 1.0) << path;
      const auto top = static_cast<int64_t>(r.top), left = static_cast<int64_t>(r.left);
      const int64_t rh = r.image.size(1), rw = r.image.size(2);
      EXPECT_TRUE(top <= box.top && left <= box.left && top + rh >= box.top + box.height &&
                  left + rw >= box.left + box.width && top + rh <= h && left + rw <= w)
          << path << ": region " << top << "," << left << " " << rh << "x" << rw;
      const int max = (r.image.to(torch::kInt) - whole.narrow(1, top, rh).narrow(2, left, rw).to(torch::kInt))
                          .abs().max().item<int>();
      EXPECT_EQ(max, 0) << path << " box " << box.top << "," << box.left << " " << box.height << "x" << box.width;
    }
  }
  // 300 x 400: a 240 x 320 box kept at 60 pixels a side is decoded at 2/8, as decode_image's 1/4
  const auto path = fixture("draft/big.jpg");
  const auto bytes = resnet::read_file_bytes(path);
  const auto quarter = resnet::decode_image(bytes, path, 75);
  ASSERT_EQ(quarter.size(1), 75);
  const auto r = resnet::decode_image_region(bytes, path, {30, 40, 240, 320}, 60);
  EXPECT_EQ(r.scale, 0.25);
  const auto top = static_cast<int64_t>(r.top * 0.25), left = static_cast<int64_t>(r.left * 0.25);
  EXPECT_TRUE(top <= 7 && left <= 10 && top + r.image.size(1) >= 68 && left + r.image.size(2) >= 90);
  EXPECT_TRUE(torch::equal(r.image, quarter.narrow(1, top, r.image.size(1)).narrow(2, left, r.image.size(2))));
  EXPECT_THROW(resnet::decode_image_region(bytes, path, {0, 0, 301, 10}, 60), std::invalid_argument);
}

TEST(Transforms, CropRegionsGiveWhatTheWholeImagesGive) {
  // A streamed folder gathered with a CropPlan (each image's RandomResizedCrop drawn first, only
  // that decoded) and transformed gives what the whole images give: exactly where every region is
  // at scale 1 (a large output), closely where the DCT scaling shrinks them (a small one).
  const auto index = resnet::index_image_folder(fixture("gpu/train"));
  const auto source = resnet::streaming_source(index, false);
  const auto all = torch::arange(static_cast<int64_t>(index.files.size()));
  std::vector<uint64_t> seeds;
  for (size_t i = 0; i < index.files.size(); ++i) seeds.push_back(1000 + i);
  const resnet::TrainCropOptions crop;
  for (const int64_t size : {256, 24}) {
    resnet::CropPlan plan;
    plan.output_size = size;
    plan.box = [&](int64_t row, int64_t height, int64_t width) {
      std::mt19937_64 rng(seeds[static_cast<size_t>(row)]);
      return resnet::random_resized_crop_box(height, width, rng, crop);
    };
    const auto planned = source->gather(all, torch::kCPU, &plan);
    const auto whole = source->gather(all, torch::kCPU);
    ASSERT_TRUE(planned.regions.defined() && !whole.regions.defined());
    const double smallest = planned.regions.select(1, 2).min().item<double>();
    const auto a = resnet::train_transform(planned, size, seeds, {}, crop);
    const auto b = resnet::train_transform(whole, size, seeds, {}, crop);
    const auto diff = (a - b).abs();
    std::cout << "output " << size << ": smallest scale " << smallest << ", mean " << diff.mean().item<double>()
              << ", max " << diff.max().item<double>() << " (normalised units)\n";
    if (size == 256) {
      EXPECT_EQ(smallest, 1.0);
      EXPECT_LE(diff.max().item<double>(), 1e-4);
    } else {
      EXPECT_LT(smallest, 1.0);  // some regions shrunk: the bilinear resize then starts from fewer pixels
      EXPECT_LE(diff.mean().item<double>(), 0.15);
    }
  }
}

TEST(ImageFolder, TheEnvironmentSetsHowManyBatchesAStreamedFolderGathersAtOnce) {
  // Three by default when the CPU decodes (five with --gpu-decode: GpuJpeg's test);
  // RESNET_GATHERS_AT_ONCE=N (1-16) for others; anything else refused by name.
  const auto index = resnet::index_image_folder(fixture("gpu/train"));
  {
    const resnet::test::ScopedEnv unset("RESNET_GATHERS_AT_ONCE", nullptr);
    EXPECT_EQ(resnet::streaming_source(index, false)->gathers_at_once(), 3);
    // --gpu-decode where no decoder starts (here: an unknown backend) decodes on the CPU, three at once
    const resnet::test::ScopedEnv bogus("RESNET_NVJPEG_BACKEND", "bogus");
    const auto fallen_back = resnet::streaming_source(index, false, /*gpu_decode_device=*/0);
    EXPECT_EQ(fallen_back->gathers_at_once(), 3);
    EXPECT_EQ(fallen_back->description().find("nvJPEG"), std::string::npos) << fallen_back->description();
  }
  {
    const resnet::test::ScopedEnv five("RESNET_GATHERS_AT_ONCE", "5");
    EXPECT_EQ(resnet::streaming_source(index, false)->gathers_at_once(), 5);
  }
  for (const char* bad : {"0", "17", "4x", "", "-2"}) {
    const resnet::test::ScopedEnv env("RESNET_GATHERS_AT_ONCE", bad);
    try {
      resnet::streaming_source(index, false);
      ADD_FAILURE() << "'" << bad << "' was taken";
    } catch (const resnet::UsageError& e) {
      expect_contains(e.what(), "RESNET_GATHERS_AT_ONCE");
      expect_contains(e.what(), std::string("'") + bad + "'");
    }
  }
}

TEST(ImageFolder, AStreamedBatchHoldsEachRegionWithZerosBeyond) {
  // The loader decodes each image straight into its row of the batch (channels-last, as libjpeg
  // writes pixels): row b is decode_image_region's pixels for its crop, zeros beyond; whole
  // images likewise without a plan (JPEGs of each kind, grey, CMYK, progressive, PNG).
  const auto index = resnet::index_image_folder(fixture("gpu/train"));
  const auto source = resnet::streaming_source(index, false);
  const auto all = torch::arange(static_cast<int64_t>(index.files.size()));
  resnet::CropPlan plan;
  plan.output_size = 24;
  plan.box = [](int64_t row, int64_t height, int64_t width) {
    std::mt19937_64 rng(77 + static_cast<uint64_t>(row));
    return resnet::random_resized_crop_box(height, width, rng);
  };
  for (const bool planned : {true, false}) {
    const auto batch = source->gather(all, torch::kCPU, planned ? &plan : nullptr);
    ASSERT_EQ(batch.images.size(0), all.size(0));
    EXPECT_TRUE(batch.images.is_contiguous(torch::MemoryFormat::ChannelsLast));
    int64_t shrunk = 0;
    for (int64_t b = 0; b < all.size(0); ++b) {
      const auto& path = index.files[static_cast<size_t>(b)];
      const auto bytes = resnet::read_file_bytes(path);
      torch::Tensor want;
      if (planned) {
        const auto* c = batch.crops.data_ptr<int64_t>() + 4 * b;
        const auto r = resnet::decode_image_region(bytes, path, {c[0], c[1], c[2], c[3]}, 24);
        EXPECT_EQ(r.scale, batch.regions[b][2].item<double>()) << path;
        EXPECT_EQ(r.top, batch.regions[b][0].item<double>()) << path;
        shrunk += r.scale < 1;
        want = r.image;
      } else {
        want = resnet::decode_image(bytes, path);
      }
      const int64_t h = batch.sizes[b][0].item<int64_t>(), w = batch.sizes[b][1].item<int64_t>();
      ASSERT_EQ(want.sizes(), (std::vector<int64_t>{3, h, w})) << path;
      const auto row = batch.images[b];
      EXPECT_TRUE(torch::equal(row.narrow(1, 0, h).narrow(2, 0, w), want)) << path;
      EXPECT_EQ(row.sum().item<int64_t>(), want.sum().item<int64_t>()) << path << ": not zeros beyond the image";
    }
    if (planned) {
      EXPECT_GT(shrunk, 0) << "no region was DCT-scaled: the test would not see one";
      // the transform reads a channels-last batch as it reads a planar one
      std::vector<uint64_t> seeds;
      for (int64_t b = 0; b < all.size(0); ++b) seeds.push_back(500 + static_cast<uint64_t>(b));
      resnet::RawBatch planar = batch;
      planar.images = batch.images.contiguous();
      ASSERT_FALSE(batch.images.is_contiguous());
      const auto a = resnet::train_transform(batch, 24, seeds);
      const auto b = resnet::train_transform(planar, 24, seeds);
      EXPECT_LE((a - b).abs().max().item<double>(), 1e-5);
    }
  }
}

TEST(ImageFolder, StreamedTrainingImagesDecodeNoLargerThanNeeded) {
  // keep_side (train's training split: 3 x the input size): a big JPEG comes smaller, a small one
  // and a PNG whole; the padded batch shrinks with it.
  const auto root = fs::temp_directory_path() / ("resnet-keep-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "train" / "a");
  fs::copy_file(fixture("draft/big.jpg"), root / "train" / "a" / "big.jpg");
  fs::copy_file(fixture("kinds/png.JPEG"), root / "train" / "a" / "small.png");
  const auto index = resnet::index_image_folder((root / "train").string());
  const auto all = torch::arange(2);
  const auto whole = resnet::streaming_source(index, false)->gather(all, torch::kCPU);
  const auto kept = resnet::streaming_source(index, false, -1, 75)->gather(all, torch::kCPU);
  EXPECT_TRUE(torch::equal(whole.sizes, torch::tensor({300, 400, 20, 30}).view({2, 2})));
  EXPECT_TRUE(torch::equal(kept.sizes, torch::tensor({75, 100, 20, 30}).view({2, 2})));
  EXPECT_EQ(kept.images.sizes(), (std::vector<int64_t>{2, 3, 75, 100}));
  EXPECT_TRUE(torch::equal(kept.images[1].narrow(1, 0, 20).narrow(2, 0, 30), whole.images[1].narrow(1, 0, 20).narrow(2, 0, 30)));
  fs::remove_all(root);
}

TEST(Decode, BadFilesGetErrorsThatNameThem) {
  const auto truncated = fixture("bad/train/a/truncated.jpg");
  expect_contains(input_error_of([&] { resnet::decode_image_file(truncated); }), truncated + ": cannot decode JPEG");
  const auto text = fixture("bad/train/a/text.jpg");
  expect_contains(input_error_of([&] { resnet::decode_image_file(text); }),
                  text + ": not a JPEG or PNG image (it starts with 'hell')");
  expect_contains(input_error_of([&] { resnet::decode_image_file(fixture("nope.jpg")); }), "nope.jpg: cannot open");
}

// ---- CIFAR-10 binary --------------------------------------------------------------------------

TEST(Cifar10, ReadsRecordsAsImagesAndLabels) {
  resnet::test::TempDir dir;
  write_cifar(dir.path() / "cifar-10-batches-bin", 4);
  ASSERT_EQ(resnet::find_cifar10_binary(dir.path().string()), (dir.path() / "cifar-10-batches-bin").string());
  const auto train = resnet::read_cifar10((dir.path() / "cifar-10-batches-bin").string(), resnet::Split::kTrain);
  EXPECT_EQ(train.images.sizes(), (std::vector<int64_t>{20, 3, 32, 32}));
  EXPECT_EQ(train.labels.size(0), 20);
  EXPECT_EQ(train.labels[0].item<int64_t>(), 3);
  EXPECT_EQ(train.labels[1].item<int64_t>(), 1);
  // Record 0: byte i (1-based after the label) is i % 251; R plane first, row by row.
  EXPECT_EQ(train.images[0][0][0][0].item<int>(), 1);
  EXPECT_EQ(train.images[0][1][0][0].item<int>(), 1025 % 251);
  EXPECT_EQ(train.images[0][2][31][31].item<int>(), 3072 % 251);
  EXPECT_EQ(train.classes.at(9), "truck");
  const auto test = resnet::read_cifar10((dir.path() / "cifar-10-batches-bin").string(), resnet::Split::kTest);
  EXPECT_EQ(test.images.size(0), 4);
}

TEST(Cifar10, ErrorsNameTheFileAndWhatWasFound) {
  resnet::test::TempDir dir;
  const auto bin = dir.path() / "bin";
  write_cifar(bin, 2);
  {  // a truncated file
    std::ofstream f(bin / "data_batch_2.bin", std::ios::binary | std::ios::app);
    f << "xyz";
  }
  expect_contains(input_error_of([&] { resnet::read_cifar10(bin.string(), resnet::Split::kTrain); }),
                  (bin / "data_batch_2.bin").string() + ": 6149 bytes is not a whole number of 3,073-byte");
  write_cifar(bin, 2, /*first_label=*/12);
  expect_contains(input_error_of([&] { resnet::read_cifar10(bin.string(), resnet::Split::kTest); }),
                  (bin / "test_batch.bin").string() + ": record 0 has label 12; CIFAR-10 labels are 0 to 9");
  fs::remove(bin / "data_batch_4.bin");
  expect_contains(input_error_of([&] { resnet::read_cifar10(bin.string(), resnet::Split::kTrain); }),
                  (bin / "data_batch_4.bin").string() + ": missing");
  std::ofstream(bin / "test_batch.bin", std::ios::trunc).close();
  expect_contains(input_error_of([&] { resnet::read_cifar10(bin.string(), resnet::Split::kTest); }),
                  ": 0 bytes is not a whole number");
}

// ---- image folders ----------------------------------------------------------------------------

TEST(ImageFolder, IndexesClassesSortedAndImagesOnly) {
  const auto index = resnet::index_image_folder(fixture("folder/train"));
  EXPECT_EQ(index.classes, (std::vector<std::string>{"bird", "cat", "dog"}));
  EXPECT_EQ(index.files.size(), 3u + 1 + 3 + 1 + 3 + 1);  // notes.txt is not an image
  EXPECT_TRUE(std::is_sorted(index.labels.begin(), index.labels.end()));
  for (size_t i = 0; i < index.files.size(); ++i)
    EXPECT_NE(index.files[i].find("/" + index.classes[index.labels[i]] + "/"), std::string::npos);
  expect_contains(input_error_of([&] { resnet::index_image_folder(fixture("empty_class/train")); }),
                  fixture("empty_class/train/b") + ": class folder holds no images");
}

TEST(ImageFolder, MixedSizesStreamAndUniformOnesLiveInMemory) {
  const auto cpu = torch::Device(torch::kCPU);
  auto mixed = resnet::open_split(fixture("folder"), resnet::Split::kTrain, cpu);
  expect_contains(mixed->description(), "streamed");
  EXPECT_EQ(mixed->size(), 12);
  const auto batch = mixed->gather(torch::tensor({0, 3, 4}, torch::kLong), cpu);
  EXPECT_EQ(batch.images.size(0), 3);
  EXPECT_EQ(batch.sizes.size(0), 3);
  // Each image sits at the top left of its padded slot, as decoded.
  const auto index = resnet::index_image_folder(fixture("folder/train"));
  const auto fourth = resnet::decode_image_file(index.files[4]);
  EXPECT_EQ(batch.sizes[2][0].item<int64_t>(), fourth.size(1));
  EXPECT_TRUE(torch::equal(batch.images[2].slice(1, 0, fourth.size(1)).slice(2, 0, fourth.size(2)), fourth));
  EXPECT_EQ(batch.labels[2].item<int64_t>(), index.labels[4]);

  resnet::test::TempDir dir;  // a uniform folder: 32x32 JPEGs only
  for (const char* cls : {"x", "y"}) {
    fs::create_directories(dir.path() / "train" / cls);
    fs::copy_file(fixture("folder/train/bird/0.jpg"), dir.path() / "train" / cls / "0.jpg");
    fs::copy_file(fixture("folder/train/bird/1.jpg"), dir.path() / "train" / cls / "1.jpg");
  }
  auto uniform = resnet::open_split(dir.path().string(), resnet::Split::kTrain, cpu);
  expect_contains(uniform->description(), "in memory");
  EXPECT_EQ(uniform->size(), 4);
  EXPECT_TRUE(torch::equal(uniform->labels(), torch::tensor({0, 0, 1, 1}, torch::kLong)));
}

TEST(ImageFolder, TheEmbeddedSampleLoads) {
  const std::string sample = std::string(RESNET_SOURCE_DIR) + "/assets/cifar10-sample";
  auto train = resnet::open_split(sample, resnet::Split::kTrain, torch::kCPU);
  auto test = resnet::open_split(sample, resnet::Split::kTest, torch::kCPU);
  EXPECT_EQ(train->size(), 1000);
  EXPECT_EQ(test->size(), 200);
  EXPECT_EQ(train->classes(), (std::vector<std::string>{"airplane", "automobile", "bird", "cat", "deer", "dog",
                                                        "frog", "horse", "ship", "truck"}));
  expect_contains(train->description(), "in memory");
  EXPECT_EQ(torch::bincount(train->labels()).min().item<int64_t>(), 100);
}

TEST(ImageFolder, StreamedBatchesReachTheGpuIntact) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  auto source = resnet::open_split(fixture("folder"), resnet::Split::kTrain, torch::kCPU);
  expect_contains(source->description(), "streamed");
  const auto indices = torch::arange(source->size(), torch::kLong);
  const auto cpu = source->gather(indices, torch::kCPU);
  for (int round = 0; round < 3; ++round) {  // again and again: reused memory must not be clobbered
    const auto gpu = source->gather(indices, torch::Device(torch::kCUDA, 0));
    EXPECT_TRUE(gpu.images.is_cuda());
    EXPECT_TRUE(torch::equal(gpu.images.cpu(), cpu.images));
    EXPECT_TRUE(torch::equal(gpu.labels.cpu(), cpu.labels));
  }
}

TEST(ImageFolder, BadImagesFailOrAreSkipped) {
  const auto cpu = torch::Device(torch::kCPU);
  const auto why = input_error_of([&] { resnet::open_split(fixture("bad"), resnet::Split::kTrain, cpu); });
  EXPECT_TRUE(why.find("text.jpg") != std::string::npos || why.find("truncated.jpg") != std::string::npos) << why;
  expect_contains(why, "--skip-bad-images");
  resnet::DataOptions skip;
  skip.skip_bad_images = true;
  // The warnings reach the program's log sink, not the terminal.
  std::vector<std::string> warnings;
  const auto previous = resnet::set_log_sink([&](resnet::LogLevel level, const std::string& message) {
    if (level == resnet::LogLevel::kWarning) warnings.push_back(message);
  });
  auto source = resnet::open_split(fixture("bad"), resnet::Split::kTrain, cpu, skip);
  resnet::set_log_sink(previous);
  EXPECT_EQ(source->size(), 2);  // fine.jpg and ok.jpg
  ASSERT_EQ(warnings.size(), 3u);  // each bad file, then how many were left out
  expect_contains(warnings[0] + warnings[1], "text.jpg");
  expect_contains(warnings[0] + warnings[1], "truncated.jpg");
  expect_contains(warnings[2], "2 of 4 images");
  expect_contains(source->description(), "in memory");

  // Streamed (no memory allowed): the error comes with the batch that holds the file.
  resnet::DataOptions stream;
  stream.memory_limit_mib = 0;
  auto streamed = resnet::open_split(fixture("bad"), resnet::Split::kTrain, cpu, stream);
  EXPECT_EQ(streamed->size(), 4);
  const auto all = torch::arange(4, torch::kLong);
  const auto later = input_error_of([&] { streamed->gather(all, cpu); });
  EXPECT_TRUE(later.find("text.jpg") != std::string::npos || later.find("truncated.jpg") != std::string::npos) << later;
  stream.skip_bad_images = true;
  auto skipping = resnet::open_split(fixture("bad"), resnet::Split::kTrain, cpu, stream);
  const auto batch = skipping->gather(all, cpu);
  EXPECT_EQ(batch.images.size(0), 2);
  EXPECT_EQ(batch.labels.size(0), 2);
}

TEST(ImageFolder, RecognisesWhatDataHolds) {
  resnet::test::TempDir dir;
  EXPECT_EQ(resnet::detect_format(fixture("folder")), resnet::DataFormat::kImageFolder);
  EXPECT_EQ(resnet::detect_format(dir.path().string()), resnet::DataFormat::kNone);
  expect_contains(input_error_of([&] { resnet::open_split(dir.path().string(), resnet::Split::kTrain, torch::kCPU); }),
                  "holds neither CIFAR-10 binary files");
  write_cifar(dir.path() / "cifar-10-batches-bin", 2);
  EXPECT_EQ(resnet::detect_format(dir.path().string()), resnet::DataFormat::kCifar10Binary);
  auto source = resnet::open_split(dir.path().string(), resnet::Split::kTest, torch::kCPU);
  EXPECT_EQ(source->size(), 2);
  expect_contains(source->description(), "CIFAR-10 binary");
}

// ---- loader -----------------------------------------------------------------------------------

// `n` 8x8 images whose pixels and label are their index, in memory on the CPU.
std::shared_ptr<resnet::ImageSource> numbered_images(int64_t n) {
  resnet::LabeledImages data;
  data.images = torch::arange(n).to(torch::kUInt8).view({n, 1, 1, 1}).expand({n, 3, 8, 8}).contiguous();
  data.labels = torch::arange(n);
  data.classes = {"only"};
  return resnet::in_memory_source(data, torch::kCPU, "toy");
}

TEST(HoldOut, PartsASplitByClassTheSameWayEveryTime) {
  // 3 classes of 50, 30 and 20 images (label = i % 10 sorted into them), pixel = index.
  const int64_t n = 100;
  resnet::LabeledImages data;
  data.images = torch::arange(n).to(torch::kUInt8).view({n, 1, 1, 1}).expand({n, 3, 2, 2}).contiguous();
  data.labels = torch::arange(n).remainder(10).lt(5).logical_not().to(torch::kLong) +
                torch::arange(n).remainder(10).ge(8).to(torch::kLong);  // 0: 50, 1: 30, 2: 20
  data.classes = {"a", "b", "c"};
  auto source = resnet::in_memory_source(data, torch::kCPU, "toy");
  const auto [rest, held] = resnet::hold_out(source, 11);
  ASSERT_EQ(held->size(), 11);
  ASSERT_EQ(rest->size(), 89);
  EXPECT_EQ(held->classes(), source->classes());
  // shares 5.5, 3.3, 2.2: 5 + 3 + 2 and the one left to the largest remainder (class a)
  const auto counts = torch::bincount(held->labels(), {}, 3);
  EXPECT_EQ(counts[0].item<int64_t>(), 6);
  EXPECT_EQ(counts[1].item<int64_t>(), 3);
  EXPECT_EQ(counts[2].item<int64_t>(), 2);
  // Disjoint, together the whole split, labels and pixels those of the images they map to.
  auto indices_of = [](resnet::ImageSource& s) {
    const auto batch = s.gather(torch::arange(s.size()), torch::kCPU);
    return batch.images.select(1, 0).select(1, 0).select(1, 0).to(torch::kLong);
  };
  const auto h = indices_of(*held), r = indices_of(*rest);
  EXPECT_TRUE(torch::equal(std::get<0>(torch::cat({h, r}).sort()), torch::arange(n)));
  EXPECT_TRUE(torch::equal(held->labels(), data.labels.index_select(0, h)));
  EXPECT_TRUE(torch::equal(rest->labels(), data.labels.index_select(0, r)));
  EXPECT_TRUE(torch::equal(std::get<0>(h.sort()), h)) << "the split's order is kept";
  // The same images whatever the global generator's state (--seed).
  torch::manual_seed(99);
  const auto again = resnet::hold_out(source, 11);
  EXPECT_TRUE(torch::equal(indices_of(*again.second), h));
  EXPECT_THROW(resnet::hold_out(source, 0), resnet::UsageError);
  EXPECT_THROW(resnet::hold_out(source, 100), resnet::UsageError);
  try {
    resnet::hold_out(source, 100);
  } catch (const resnet::UsageError& e) {
    expect_contains(e.what(), "--holdout");
  }
}

TEST(Loader, ShufflesPerEpochFromTheSeedAndKeepsTheLastPartialBatch) {
  const int64_t n = 10;
  auto source = numbered_images(n);
  resnet::LoaderOptions o;
  o.batch_size = 4;
  o.image_size = 8;
  o.seed = 7;
  resnet::Loader loader(source, o, torch::kCPU);
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  auto epoch_labels = [&](int64_t epoch, int64_t skip = 0) {
    loader.start_epoch(epoch, skip);
    std::vector<int64_t> seen, sizes;
    while (auto batch = loader.next()) {
      sizes.push_back(batch->labels.size(0));
      EXPECT_EQ(batch->images.sizes(), (std::vector<int64_t>{batch->labels.size(0), 3, 8, 8}));
      for (int64_t i = 0; i < batch->labels.size(0); ++i) seen.push_back(batch->labels[i].item<int64_t>());
    }
    return std::make_pair(seen, sizes);
  };
  const auto [first, sizes] = epoch_labels(0);
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2}));
  auto sorted = first;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(epoch_labels(0).first, first);   // same seed and epoch: same order
  EXPECT_NE(epoch_labels(1).first, first);   // next epoch: another order
  const auto resumed = epoch_labels(0, /*skip=*/2).first;  // resume at the third batch
  EXPECT_EQ(resumed, std::vector<int64_t>(first.begin() + 8, first.end()));
}

TEST(Loader, ShardsAnEpochAcrossProcessesAsDistributedSampler) {
  // 10 images, 3 processes: training shards of 4 (the permutation padded with its first 2
  // images), together the whole permutation; evaluation shards of 4, 3, 3, each image once.
  const int64_t n = 10;
  auto source = numbered_images(n);
  for (const bool train : {true, false}) {
    std::vector<int64_t> all;
    std::vector<int64_t> sizes;
    for (int rank = 0; rank < 3; ++rank) {
      resnet::LoaderOptions o;
      o.batch_size = 2;
      o.image_size = 8;
      o.train = train;
      o.seed = 5;
      o.rank = rank;
      o.world_size = 3;
      resnet::Loader loader(source, o, torch::kCPU);
      loader.start_epoch(2);
      int64_t seen = 0;
      while (auto batch = loader.next()) {
        for (int64_t i = 0; i < batch->labels.size(0); ++i) all.push_back(batch->labels[i].item<int64_t>());
        seen += batch->labels.size(0);
      }
      EXPECT_EQ(seen, loader.shard_size());
      sizes.push_back(seen);
    }
    std::vector<int64_t> sorted = all;
    std::sort(sorted.begin(), sorted.end());
    if (train) {
      EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 4}));
      sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
      EXPECT_EQ(sorted.size(), 10u);  // every image, two of them twice (the padding)
    } else {
      EXPECT_EQ(sizes, (std::vector<int64_t>{4, 3, 3}));
      EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    }
  }
  resnet::LoaderOptions bad;
  bad.rank = 3;
  bad.world_size = 3;
  EXPECT_THROW(resnet::Loader(source, bad, torch::kCPU), resnet::UsageError);
}

TEST(Transforms, AnImagesCropDependsOnItsSeedNotItsBatch) {
  // Per-image seeds: image 1 with seed 42 gets the same crop alone as beside other images.
  const auto images = torch::randint(256, {3, 3, 20, 24}, torch::TensorOptions().dtype(torch::kUInt8));
  const auto sizes = torch::tensor({20, 24, 20, 24, 20, 24}).view({3, 2});
  const resnet::RawBatch three{images, sizes, torch::zeros({3}, torch::kLong)};
  const resnet::RawBatch one{images.narrow(0, 1, 1), sizes.narrow(0, 1, 1), torch::zeros({1}, torch::kLong)};
  const auto together = resnet::train_transform(three, 16, std::vector<uint64_t>{7, 42, 9});
  const auto alone = resnet::train_transform(one, 16, std::vector<uint64_t>{42});
  EXPECT_TRUE(torch::equal(together[1], alone[0]));
  const auto other_seed = resnet::train_transform(one, 16, std::vector<uint64_t>{43});
  EXPECT_FALSE(torch::equal(other_seed[0], alone[0]));
}

TEST(Loader, WritesIntoAGivenBufferWhereItFits) {
  // A graphed step's input buffer (channels-last here) gets the same values the loader returns
  // without one; a partial batch (other shape) gets a tensor of its own, the buffer untouched.
  resnet::LabeledImages data;
  const int64_t n = 5;
  data.images = torch::randint(256, {n, 3, 8, 8}, torch::TensorOptions().dtype(torch::kUInt8));
  data.labels = torch::arange(n);
  data.classes = {"only"};
  for (const bool train : {true, false}) {
    resnet::LoaderOptions o;
    o.batch_size = 3;
    o.image_size = 16;
    o.train = train;
    resnet::Loader plain(resnet::in_memory_source(data, torch::kCPU, "toy"), o, torch::kCPU);
    resnet::Loader buffered(resnet::in_memory_source(data, torch::kCPU, "toy"), o, torch::kCPU);
    plain.start_epoch(1);
    buffered.start_epoch(1);
    const auto buffer = torch::full({3, 3, 16, 16}, 7.0f).contiguous(torch::MemoryFormat::ChannelsLast);
    const auto first = plain.next(), first_in = buffered.next(buffer);
    ASSERT_TRUE(first && first_in);
    EXPECT_TRUE(first_in->images.is_same(buffer)) << train;
    EXPECT_TRUE(torch::equal(first_in->images, first->images)) << train;
    const auto before = buffer.clone();
    const auto last = plain.next(), last_in = buffered.next(buffer);
    ASSERT_TRUE(last && last_in);
    EXPECT_EQ(last_in->images.size(0), 2);
    EXPECT_FALSE(last_in->images.is_same(buffer));
    EXPECT_TRUE(torch::equal(last_in->images, last->images)) << train;
    EXPECT_TRUE(torch::equal(buffer, before)) << train;
    EXPECT_FALSE(buffered.next(buffer));
  }
}

// Every batch of `epochs` epochs of a loader over `source` (images on the CPU, labels).
std::vector<std::pair<torch::Tensor, torch::Tensor>> all_batches(std::shared_ptr<resnet::ImageSource> source,
                                                                 const resnet::LoaderOptions& o, const torch::Device& device,
                                                                 int epochs) {
  resnet::Loader loader(std::move(source), o, device);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> out;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    loader.start_epoch(epoch);
    while (auto batch = loader.next()) out.emplace_back(batch->images.cpu(), batch->labels.cpu());
  }
  return out;
}

// Another source's images as they are: the test doubles below override gather() to watch it.
class ForwardingSource : public resnet::ImageSource {
 public:
  ForwardingSource(std::shared_ptr<resnet::ImageSource> base, std::string description)
      : base_(std::move(base)), description_(std::move(description)) {}
  int64_t size() const override { return base_->size(); }
  const std::vector<std::string>& classes() const override { return base_->classes(); }
  torch::Tensor labels() const override { return base_->labels(); }
  std::string description() const override { return description_; }
  resnet::RawBatch gather(const torch::Tensor& indices, const torch::Device& device,
                          const resnet::CropPlan* plan = nullptr) override {
    return base_->gather(indices, device, plan);
  }

 private:
  std::shared_ptr<resnet::ImageSource> base_;
  std::string description_;
};

// numbered_images whose every gather takes `delay` first (a slow disk, a slow decoder).
class SlowSource : public ForwardingSource {
 public:
  SlowSource(std::shared_ptr<resnet::ImageSource> base, std::chrono::milliseconds delay)
      : ForwardingSource(std::move(base), "slow"), delay_(delay) {}
  resnet::RawBatch gather(const torch::Tensor& indices, const torch::Device& device,
                          const resnet::CropPlan* plan = nullptr) override {
    std::this_thread::sleep_for(delay_);
    const int number = ++gathers;
    auto batch = ForwardingSource::gather(indices, device, plan);
    batch.decode.cpu_images = indices.size(0);  // (as a streamed folder counts its decoding)
    batch.decode.gpu_setups = number;           // (a figure of its own for each batch: the trace's)
    batch.decode.zeros_s = 0.001 * number;      // (and the GPU gather's parts, each its own multiple)
    batch.decode.cpu_wait_s = 0.002 * number;
    batch.decode.upload_s = 0.003 * number;
    return batch;
  }
  std::atomic<int> gathers{0};  // batches gathered so far

 private:
  std::chrono::milliseconds delay_;
};

TEST(Loader, CountsTheTimeItsCallerWaitedForBatches) {
  // Three batches of a source that takes 60 ms a batch, asked for at once: next() waits about
  // 60 ms for each (one gather at a time); the count starts again with each epoch.
  resnet::LoaderOptions o;
  o.batch_size = 4;
  o.image_size = 8;
  resnet::Loader loader(std::make_shared<SlowSource>(numbered_images(12), std::chrono::milliseconds(60)), o,
                        torch::kCPU);
  loader.start_epoch(0);
  EXPECT_EQ(loader.seconds_waited(), 0.0);
  int batches = 0;
  while (loader.next()) ++batches;
  EXPECT_EQ(batches, 3);
  EXPECT_GE(loader.seconds_waited(), 0.15);
  EXPECT_LE(loader.seconds_waited(), 2.0);
  loader.start_epoch(1);
  EXPECT_EQ(loader.seconds_waited(), 0.0);
}

// The labels of an epoch (from its batch `skip` on), batch by batch.
std::vector<int64_t> labels_of_epoch(resnet::Loader& loader, int64_t epoch, int64_t skip = 0) {
  loader.start_epoch(epoch, skip);
  std::vector<int64_t> seen;
  while (auto batch = loader.next())
    for (int64_t i = 0; i < batch->labels.size(0); ++i) seen.push_back(batch->labels[i].item<int64_t>());
  return seen;
}

// Batches of 4 images of 8 px, shuffled from `seed`: the loader tests' small options.
resnet::LoaderOptions small_batches(uint64_t seed) {
  resnet::LoaderOptions o;
  o.batch_size = 4;
  o.image_size = 8;
  o.seed = seed;
  return o;
}

// Each epoch's labels from a loader that starts every epoch in turn.
std::vector<std::vector<int64_t>> epochs_of_labels(resnet::Loader& loader, int epochs) {
  std::vector<std::vector<int64_t>> out;
  for (int epoch = 0; epoch < epochs; ++epoch) out.push_back(labels_of_epoch(loader, epoch));
  return out;
}

TEST(Loader, GathersTheNextEpochsFirstBatchWhileTheCallerTests) {
  // A source of 200 ms a batch, three epochs of three batches, the caller busy for 300 ms after
  // each epoch (its test): told the run's length, the loader gathers the next epoch's first batch
  // meanwhile, so only the first epoch waits for its first batch; the epochs are the same as
  // without gathering ahead, each counts the decoding of its own 12 images, and nothing is
  // gathered past the last.
  auto o = small_batches(3);
  resnet::Loader plain(numbered_images(12), o, torch::kCPU);
  const auto want = epochs_of_labels(plain, 3);
  o.epochs = 3;
  auto slow = std::make_shared<SlowSource>(numbered_images(12), std::chrono::milliseconds(200));
  resnet::Loader loader(slow, o, torch::kCPU);
  for (int epoch = 0; epoch < 3; ++epoch) {
    EXPECT_EQ(labels_of_epoch(loader, epoch), want[static_cast<size_t>(epoch)]) << "epoch " << epoch;
    if (epoch == 0) {
      EXPECT_GE(loader.seconds_waited_first(), 0.1);
    } else {
      EXPECT_LT(loader.seconds_waited_first(), 0.05) << "epoch " << epoch;
    }
    EXPECT_GE(loader.seconds_waited(), loader.seconds_waited_first());
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(loader.epoch_decode_stats().cpu_images, 12) << "epoch " << epoch;
  }
  EXPECT_EQ(slow->gathers.load(), 9);
}

TEST(Loader, TracesEachBatchWhereTheEnvironmentSaysSo) {
  // RESNET_LOADER_TRACE=FILE: a training and a test loader of one process write one CSV (an old
  // file's content replaced): a row a batch they hand over, in order, each batch's times in the
  // order they happen (asked for, started, gathered, handed over; waited only while it was taken),
  // its images and its decoding counts. The first batch waits for its gathering (30 ms); the second
  // epoch's first, gathered ahead while the caller was busy, waits for nothing. A file that cannot
  // be written is refused by name.
  resnet::test::TempDir dir;
  const auto path = (dir.path() / "loader.csv").string();
  std::ofstream(path) << "an old trace\n";
  double waited_first_epoch = 0;
  {
    const resnet::test::ScopedEnv trace("RESNET_LOADER_TRACE", path.c_str());
    auto o = small_batches(4);
    o.epochs = 2;
    auto slow = std::make_shared<SlowSource>(numbered_images(10), std::chrono::milliseconds(30));
    resnet::Loader train(slow, o, torch::kCPU);
    o.train = false;
    resnet::Loader test(numbered_images(10), o, torch::kCPU);
    for (int epoch = 0; epoch < 2; ++epoch) {
      train.start_epoch(epoch);
      while (train.next()) {
      }
      if (epoch == 0) waited_first_epoch = train.seconds_waited();
      std::this_thread::sleep_for(std::chrono::milliseconds(60));  // (the next epoch's first batches gather)
      test.start_epoch(0);
      while (test.next()) {
      }
    }
  }
  std::ifstream in(path);
  std::string header, line;
  ASSERT_TRUE(std::getline(in, header));
  EXPECT_EQ(header, "loader,epoch,batch,images,asked_s,started_s,gathered_s,taken_s,handed_s,waited_s,gpu_images,"
                    "cpu_images,read_s,headers_s,gpu_s,cpu_s,gpu_setups,zeros_s,cpu_wait_s,upload_s");
  std::vector<std::string> order;
  int64_t train_images = 0;
  double waited_rows = 0;
  std::set<int64_t> train_setups;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream fields(line);
    for (std::string v; std::getline(fields, v, ',');) f.push_back(v);
    ASSERT_EQ(f.size(), 20u) << line;
    order.push_back(f[0] + " " + f[1] + "." + f[2]);
    const double asked = std::stod(f[4]), started = std::stod(f[5]), gathered = std::stod(f[6]);
    const double taken = std::stod(f[7]), handed = std::stod(f[8]), waited = std::stod(f[9]);
    EXPECT_LE(asked, started) << line;
    EXPECT_LE(started, gathered) << line;
    EXPECT_LE(gathered, handed) << line;
    EXPECT_LE(taken, handed) << line;
    EXPECT_GE(waited, 0.0) << line;
    EXPECT_LE(waited, handed - taken + 1e-6) << line;
    EXPECT_LE(asked, taken) << line;
    EXPECT_LE(gathered, taken + waited + 1e-6) << "handed over before it was gathered: " << line;
    if (f[0] == "train") {
      train_images += std::stoll(f[3]);
      if (f[1] == "0") waited_rows += waited;
      if (f[1] == "0" && f[2] == "0") {
        EXPECT_GE(waited, 0.02) << "the first batch waits for its gathering: " << line;
      }
      if (f[1] == "1" && f[2] == "0") {
        EXPECT_GE(taken - asked, 0.04) << "asked for during the pause: " << line;
        EXPECT_LT(waited, 0.01) << "gathered ahead: " << line;
      }
      EXPECT_GE(gathered - started, 0.025) << "the slow source's 30 ms: " << line;
      EXPECT_EQ(std::stoll(f[11]), std::stoll(f[3])) << "its decoding counts: " << line;
      train_setups.insert(std::stoll(f[16]));
      const auto gather_number = static_cast<double>(std::stoll(f[16]));
      EXPECT_NEAR(std::stod(f[17]), 0.001 * gather_number, 1e-9) << "zeros_s: " << line;
      EXPECT_NEAR(std::stod(f[18]), 0.002 * gather_number, 1e-9) << "cpu_wait_s: " << line;
      EXPECT_NEAR(std::stod(f[19]), 0.003 * gather_number, 1e-9) << "upload_s: " << line;
    }
  }
  // (the slow source numbers its gathers 1-6 in gpu_setups: each batch's own figure, the train
  // loader's six batches each once)
  EXPECT_EQ(train_setups, (std::set<int64_t>{1, 2, 3, 4, 5, 6}));
  const std::vector<std::string> want = {"train 0.0", "train 0.1", "train 0.2", "test 0.0", "test 0.1", "test 0.2",
                                         "train 1.0", "train 1.1", "train 1.2", "test 0.0", "test 0.1", "test 0.2"};
  EXPECT_EQ(order, want);
  EXPECT_EQ(train_images, 20);
  EXPECT_NEAR(waited_rows, waited_first_epoch, 1e-4) << "the rows' waits are the loader's own count";
  const resnet::test::ScopedEnv nowhere("RESNET_LOADER_TRACE", (dir.path() / "no" / "such" / "dir.csv").c_str());
  try {
    resnet::Loader loader(numbered_images(4), small_batches(1), torch::kCPU);
    ADD_FAILURE() << "a trace file that cannot be written was taken";
  } catch (const resnet::UsageError& e) {
    expect_contains(e.what(), "RESNET_LOADER_TRACE");
    expect_contains(e.what(), "dir.csv");
  }
}

TEST(Loader, TheEnvironmentLowersTheGatheringThreadsAndThoseTheyStart) {
  // RESNET_DATA_NICE=7: a gather runs at nice 7 (or the process's own, if lower already), and so
  // does a thread it starts (as its decoding threads); the caller's thread keeps its own; 20 and
  // words are refused by name.
  struct Nice : ForwardingSource {
    Nice() : ForwardingSource(numbered_images(8), "nice") {}
    std::atomic<int> gather_nice{-100}, started_nice{-100};
    resnet::RawBatch gather(const torch::Tensor& indices, const torch::Device& device,
                            const resnet::CropPlan* plan = nullptr) override {
      gather_nice = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
      std::thread([this] { started_nice = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid))); }).join();
      return ForwardingSource::gather(indices, device, plan);
    }
  };
  const int own = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
  bool refused = false;  // (a sandbox may refuse a thread its own nice value)
  std::thread([&] { refused = setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), std::max(own, 7)) != 0; })
      .join();
  if (refused) GTEST_SKIP() << "this system refuses a thread its own nice value";
  auto source = std::make_shared<Nice>();
  resnet::LoaderOptions o;
  o.batch_size = 4;
  o.image_size = 8;
  {
    const resnet::test::ScopedEnv nice("RESNET_DATA_NICE", "7");
    resnet::Loader loader(source, o, torch::kCPU);
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next());
  }
  EXPECT_EQ(source->gather_nice.load(), std::max(own, 7));
  EXPECT_EQ(source->started_nice.load(), std::max(own, 7));
  EXPECT_EQ(getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid))), own);
  {
    const resnet::test::ScopedEnv unset("RESNET_DATA_NICE", nullptr);
    resnet::Loader loader(source, o, torch::kCPU);
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next());
  }
  EXPECT_EQ(source->gather_nice.load(), own);
  for (const char* bad : {"20", "-1", "low"}) {
    const resnet::test::ScopedEnv nice("RESNET_DATA_NICE", bad);
    try {
      resnet::Loader loader(source, o, torch::kCPU);
      ADD_FAILURE() << bad << " was taken";
    } catch (const resnet::UsageError& e) {
      expect_contains(e.what(), "RESNET_DATA_NICE");
    }
  }
}

TEST(Loader, TellsItsCallerAsEachBatchArrives) {
  // The hook runs once a batch, on the caller's thread, while next() is giving it; none once removed.
  resnet::LoaderOptions o;
  o.batch_size = 4;
  o.image_size = 8;
  o.epochs = 2;
  resnet::Loader loader(numbered_images(10), o, torch::kCPU);
  int arrivals = 0, batches = 0;
  bool elsewhere = false;
  const auto caller = std::this_thread::get_id();
  loader.on_arrival([&] {
    ++arrivals;
    elsewhere = elsewhere || std::this_thread::get_id() != caller;
  });
  for (int epoch = 0; epoch < 2; ++epoch) {
    loader.start_epoch(epoch);
    while (loader.next()) {
      ++batches;
      EXPECT_EQ(arrivals, batches);
    }
  }
  EXPECT_EQ(batches, 6);
  EXPECT_FALSE(elsewhere);
  loader.on_arrival(nullptr);
  loader.start_epoch(0);
  while (loader.next()) {
  }
  EXPECT_EQ(arrivals, 6);
}

TEST(Loader, StartingAnyOtherEpochDropsWhatWasGatheredAhead) {
  // After an epoch ends the loader gathers the next one's first batches; starting the same epoch
  // again, one further on, or the next from a resumed position gives what a fresh loader gives.
  auto o = small_batches(9);
  resnet::Loader plain(numbered_images(10), o, torch::kCPU);
  const auto want = epochs_of_labels(plain, 4);
  o.epochs = 4;
  // (three gathers at once: one batch into an epoch, the next epoch's first is asked for already)
  resnet::Loader loader(resnet::with_gathers_at_once(numbered_images(10), 3), o, torch::kCPU);
  EXPECT_EQ(labels_of_epoch(loader, 0), want[0]);
  EXPECT_EQ(labels_of_epoch(loader, 0), want[0]);  // the same epoch again
  EXPECT_EQ(labels_of_epoch(loader, 2), want[2]);  // one further on
  EXPECT_EQ(labels_of_epoch(loader, 3, 1), std::vector<int64_t>(want[3].begin() + 4, want[3].end()));  // resumed mid-epoch
  // An epoch left unfinished: the next starts from its own first batch all the same
  loader.start_epoch(1);
  ASSERT_TRUE(loader.next());
  EXPECT_EQ(labels_of_epoch(loader, 2), want[2]);
}

TEST(Loader, ANewImageSizeMidEpochReachesTheBatchesAlreadyGathering) {
  // The streamed folder decodes each training crop at the smallest scale that keeps the output
  // size, so batches gathered ahead for the old size are gathered again: after set_image_size the
  // next batch is the one a loader at the new size from the start gives.
  const auto source = resnet::streaming_source(resnet::index_image_folder(fixture("gpu/train")), false);
  resnet::LoaderOptions o;
  o.batch_size = 2;
  o.image_size = 16;
  o.seed = 5;
  resnet::Loader changed(source, o, torch::kCPU);
  o.image_size = 96;
  resnet::Loader from_start(source, o, torch::kCPU);
  changed.start_epoch(0);
  from_start.start_epoch(0);
  ASSERT_TRUE(changed.next() && from_start.next());
  changed.set_image_size(96);
  for (int b = 1; b < 3; ++b) {
    const auto got = changed.next(), want = from_start.next();
    ASSERT_TRUE(got && want);
    EXPECT_TRUE(torch::equal(got->images, want->images)) << "batch " << b;
  }
  // Between epochs (--progressive-resize's case): the next epoch's batches gathered ahead at the
  // old size are gathered again at the new one.
  o.epochs = 2;
  o.image_size = 16;
  resnet::Loader ahead(source, o, torch::kCPU);
  ahead.start_epoch(0);
  while (ahead.next()) {
  }
  ahead.set_image_size(96);
  ahead.start_epoch(1);
  from_start.start_epoch(1);
  for (int b = 0; b < 3; ++b) {
    const auto got = ahead.next(), want = from_start.next();
    ASSERT_TRUE(got && want);
    EXPECT_TRUE(torch::equal(got->images, want->images)) << "epoch 2, batch " << b;
  }
}

TEST(Loader, AStreamedFolderGathersSeveralBatchesAtOnceInOrder) {
  // A streamed folder has three batches gathered at once, on three threads; the loader gives exactly
  // the batches, in the order, of one gathered at a time: training crops (only the crops decoded)
  // and tests, over two epochs (the second's first batches gathered ahead) and a last partial batch.
  const resnet::test::ScopedEnv default_count("RESNET_GATHERS_AT_ONCE", nullptr);
  const auto index = resnet::index_image_folder(fixture("gpu/train"));
  const auto source = resnet::streaming_source(index, false);
  ASSERT_EQ(source->gathers_at_once(), 3);
  for (const bool train : {true, false}) {
    resnet::LoaderOptions o;
    o.batch_size = 3;
    o.image_size = 32;
    o.train = train;
    o.seed = 5;
    const auto one = all_batches(resnet::with_gathers_at_once(source, 1), o, torch::kCPU, 2);
    o.epochs = 2;  // (and the second epoch's first batches gathered ahead)
    const auto two = all_batches(source, o, torch::kCPU, 2);
    ASSERT_EQ(two.size(), one.size());
    ASSERT_EQ(two.size(), 2 * static_cast<size_t>((index.files.size() + 2) / 3));
    for (size_t b = 0; b < two.size(); ++b) {
      EXPECT_TRUE(torch::equal(two[b].first, one[b].first)) << "batch " << b << ", train " << train;
      EXPECT_TRUE(torch::equal(two[b].second, one[b].second)) << "batch " << b << ", train " << train;
    }
  }
}

// ---- transforms -------------------------------------------------------------------------------

TEST(Transforms, TestTransformMatchesTorchvision) {
  // torchvision's reference is the sample's PIL pipeline (bilinear, uint8 after resizing); our
  // resize is bilinear in float. Upsampling (CIFAR-10's case) agrees to about 1/255 (1/255 is
  // 0.017 after normalisation); the 300x200 image is shrunk for 64 px (to 73 px a side), where
  // both antialias: PIL's filter and ATen's, its rounding to uint8 the difference.
  constexpr double kMaxAbs = 0.02;
  const auto ref = resnet::load_tensor_dict(fixture("transforms.pt"));
  for (int k = 0; k < 7; ++k) {
    const auto image = resnet::find_tensor(ref, "image." + std::to_string(k), "transforms.pt");
    resnet::RawBatch batch{image.unsqueeze(0), torch::tensor({image.size(1), image.size(2)}).view({1, 2}),
                           torch::zeros({1}, torch::kLong)};
    for (int64_t size : {224, 64}) {
      const auto key = "test." + std::to_string(size) + "." + std::to_string(k);
      const auto want = resnet::find_tensor(ref, key, "transforms.pt");
      const auto got = resnet::test_transform(batch, size)[0];
      ASSERT_EQ(got.sizes(), want.sizes()) << key;
      const double err = (got - want).abs().max().item<double>();
      std::cout << key << " (" << image.size(1) << "x" << image.size(2) << "): max abs difference " << err << "\n";
      EXPECT_LE(err, kMaxAbs) << key;
    }
  }
}

TEST(Transforms, BatchedEqualsOneImageAtATime) {
  // Mixed sizes in one padded batch give what each image gives alone; the 300x200 one is shrunk
  // by the test transform (resized alone, antialiased) while the others are sampled together.
  const auto ref = resnet::load_tensor_dict(fixture("transforms.pt"));
  std::vector<torch::Tensor> images;
  for (int k : {0, 4, 5, 6}) images.push_back(resnet::find_tensor(ref, "image." + std::to_string(k), "t"));
  const int n = static_cast<int>(images.size());
  auto padded = torch::zeros({n, 3, 300, 200}, torch::kUInt8);
  auto sizes = torch::empty({n, 2}, torch::kLong);
  for (int b = 0; b < n; ++b) {
    padded[b].slice(1, 0, images[b].size(1)).slice(2, 0, images[b].size(2)).copy_(images[b]);
    sizes[b][0] = images[b].size(1);
    sizes[b][1] = images[b].size(2);
  }
  const auto together = resnet::test_transform({padded, sizes, torch::zeros({n}, torch::kLong)}, 64);
  std::mt19937_64 rng_a(5), rng_b(5);
  const auto train_together = resnet::train_transform({padded, sizes, torch::zeros({n}, torch::kLong)}, 48, rng_a);
  for (int b = 0; b < n; ++b) {
    resnet::RawBatch one{images[b].unsqueeze(0), sizes[b].view({1, 2}), torch::zeros({1}, torch::kLong)};
    EXPECT_LE((together[b] - resnet::test_transform(one, 64)[0]).abs().max().item<double>(), 1e-4) << b;
    EXPECT_LE((train_together[b] - resnet::train_transform(one, 48, rng_b)[0]).abs().max().item<double>(), 1e-4) << b;
  }
}

TEST(Transforms, TrainCropEqualsCropThenResize) {
  // The fast path (one grid_sample from the uncropped batch) against the simple one: crop,
  // then bilinear-resize the crop with torch's interpolate.
  const auto image = torch::randint(0, 256, {1, 3, 32, 32}, torch::kUInt8);
  std::mt19937_64 rng(11), replay(11);
  resnet::RawBatch batch{image, torch::tensor({32, 32}).view({1, 2}), torch::zeros({1}, torch::kLong)};
  const auto fast = resnet::train_transform(batch, 40, rng)[0];
  const auto box = resnet::random_resized_crop_box(32, 32, replay);
  const bool flip = std::bernoulli_distribution(0.5)(replay);
  auto crop = image.slice(2, box.top, box.top + box.height).slice(3, box.left, box.left + box.width).to(torch::kFloat);
  auto simple = torch::nn::functional::interpolate(
      crop, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{40, 40}).mode(torch::kBilinear).align_corners(false))[0];
  if (flip) simple = simple.flip({2});
  const auto mean = torch::tensor({0.485, 0.456, 0.406}, torch::kFloat).view({3, 1, 1});
  const auto std = torch::tensor({0.229, 0.224, 0.225}, torch::kFloat).view({3, 1, 1});
  simple = (simple / 255.0 - mean) / std;
  EXPECT_LE((fast - simple).abs().max().item<double>(), 1e-4);
}

TEST(Transforms, PadCropEqualsEdgePadThenCropThenResize) {
  // --crop-pad: the fast path against torchvision's steps done one by one on a non-square image:
  // pad every side with the edge pixels, crop the image's own size at the drawn offset, resize,
  // flip, normalise.
  namespace F = torch::nn::functional;
  const int64_t h = 32, w = 24, pad = 4, size = 40;
  const auto image = torch::randint(0, 256, {1, 3, h, w}, torch::kUInt8);
  resnet::RawBatch batch{image, torch::tensor({h, w}).view({1, 2}), torch::zeros({1}, torch::kLong)};
  resnet::TrainCropOptions crop;
  crop.pad = pad;
  const auto mean = torch::tensor({0.485, 0.456, 0.406}, torch::kFloat).view({3, 1, 1});
  const auto std = torch::tensor({0.229, 0.224, 0.225}, torch::kFloat).view({3, 1, 1});
  const auto padded = F::pad(image.to(torch::kFloat), F::PadFuncOptions({pad, pad, pad, pad}).mode(torch::kReplicate));
  int shifted_out = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const auto fast = resnet::train_transform(batch, size, std::vector<uint64_t>{seed}, {}, crop)[0];
    std::mt19937_64 replay(seed);
    const auto box = resnet::random_crop_box(h, w, pad, replay);
    ASSERT_EQ(box.height, h);
    ASSERT_EQ(box.width, w);
    shifted_out += box.top != 0 || box.left != 0;
    const bool flip = std::bernoulli_distribution(0.5)(replay);
    const auto cut = padded.slice(2, box.top + pad, box.top + pad + h).slice(3, box.left + pad, box.left + pad + w);
    auto simple = F::interpolate(cut, F::InterpolateFuncOptions()
                                          .size(std::vector<int64_t>{size, size})
                                          .mode(torch::kBilinear)
                                          .align_corners(false))[0];
    if (flip) simple = simple.flip({2});
    simple = (simple / 255.0 - mean) / std;
    EXPECT_LE((fast - simple).abs().max().item<double>(), 1e-4) << "seed " << seed << " box " << box.top << ","
                                                                 << box.left;
  }
  EXPECT_GT(shifted_out, 30);  // 80 of 81 offsets shift the image
}

TEST(Transforms, PadCropOffsetsAreUniformOverThePadding) {
  // RandomCrop.get_params on the padded image: each of the 2 * pad + 1 offsets per axis alike.
  std::mt19937_64 rng(9);
  const int64_t pad = 4, draws = 18000;
  std::vector<int> tops(2 * pad + 1), lefts(2 * pad + 1);
  for (int64_t i = 0; i < draws; ++i) {
    const auto box = resnet::random_crop_box(32, 32, pad, rng);
    ASSERT_GE(box.top, -pad);
    ASSERT_LE(box.top, pad);
    ASSERT_GE(box.left, -pad);
    ASSERT_LE(box.left, pad);
    ++tops[static_cast<size_t>(box.top + pad)];
    ++lefts[static_cast<size_t>(box.left + pad)];
  }
  for (size_t k = 0; k < tops.size(); ++k) {  // 2,000 expected each; 5 standard deviations is 212
    EXPECT_NEAR(tops[k], 2000, 212) << "top offset " << int64_t(k) - pad;
    EXPECT_NEAR(lefts[k], 2000, 212) << "left offset " << int64_t(k) - pad;
  }
}

TEST(Transforms, TestCropPctSetsTheResize) {
  // timm's floor(size / crop_pct); 1 keeps the whole of a square image (a 32-pixel image at 32 is itself).
  EXPECT_EQ(resnet::test_resize_size(224), 256);
  EXPECT_EQ(resnet::test_resize_size(224, 1.0), 224);
  EXPECT_EQ(resnet::test_resize_size(224, 0.9), 248);
  const auto image = torch::randint(0, 256, {2, 3, 32, 32}, torch::kUInt8);
  const resnet::RawBatch batch{image, torch::tensor({32, 32}).repeat({2, 1}), torch::zeros({2}, torch::kLong)};
  const auto mean = torch::tensor({0.485, 0.456, 0.406}, torch::kFloat).view({1, 3, 1, 1});
  const auto std = torch::tensor({0.229, 0.224, 0.225}, torch::kFloat).view({1, 3, 1, 1});
  const auto whole = (image.to(torch::kFloat) / 255.0 - mean) / std;
  EXPECT_LE((resnet::test_transform(batch, 32, {}, 1.0) - whole).abs().max().item<double>(), 1e-4);
  EXPECT_GT((resnet::test_transform(batch, 32) - whole).abs().max().item<double>(), 0.1);  // 0.875 zooms in
}

TEST(Transforms, CropBoxesFollowTorchvisionsDistribution) {
  // Two-sample KS between 10,000 of our draws and 20,000 of torchvision's, for the crop's area
  // fraction, log aspect ratio and offsets. 0.03 is above the 0.1% critical value (~0.024).
  constexpr double kMaxKs = 0.03;
  constexpr int kDraws = 10000;
  const auto ref = resnet::load_tensor_dict(fixture("crop_draws.pt"));
  for (const auto& [key, tv] : ref) {
    const auto [h, w] = draws_shape(key);
    std::mt19937_64 rng(123);
    std::vector<double> area_ours, ratio_ours, top_ours, area_tv, ratio_tv, top_tv;
    int fallback_ours = 0, fallback_tv = 0;
    for (int i = 0; i < kDraws; ++i) {
      const auto b = resnet::random_resized_crop_box(h, w, rng);
      ASSERT_TRUE(b.top >= 0 && b.left >= 0 && b.top + b.height <= h && b.left + b.width <= w) << key;
      area_ours.push_back(double(b.height * b.width) / (h * w));
      ratio_ours.push_back(std::log(double(b.width) / b.height));
      top_ours.push_back(b.height < h ? double(b.top) / (h - b.height) : 0.5);
      fallback_ours += b.top == (h - b.height) / 2 && b.left == (w - b.width) / 2 && area_ours.back() > 0.9;
    }
    const auto t = tv.contiguous();
    for (int64_t i = 0; i < t.size(0); ++i) {
      const double top = t[i][0].item<double>(), left = t[i][1].item<double>();
      const double ch = t[i][2].item<double>(), cw = t[i][3].item<double>();
      area_tv.push_back(ch * cw / (h * w));
      ratio_tv.push_back(std::log(cw / ch));
      top_tv.push_back(ch < h ? top / (h - ch) : 0.5);
      fallback_tv += top == std::floor((h - ch) / 2) && left == std::floor((w - cw) / 2) && area_tv.back() > 0.9;
    }
    std::cout << key << ": KS area " << ks_statistic(area_ours, area_tv) << ", aspect "
              << ks_statistic(ratio_ours, ratio_tv) << ", top " << ks_statistic(top_ours, top_tv) << "; fallback "
              << double(fallback_ours) / kDraws << " vs " << double(fallback_tv) / t.size(0) << "\n";
    EXPECT_LE(ks_statistic(area_ours, area_tv), kMaxKs) << key << " area";
    EXPECT_LE(ks_statistic(ratio_ours, ratio_tv), kMaxKs) << key << " aspect ratio";
    EXPECT_LE(ks_statistic(top_ours, top_tv), kMaxKs) << key << " top offset";
    EXPECT_NEAR(double(fallback_ours) / kDraws, double(fallback_tv) / t.size(0), 0.01) << key << " fallback rate";
  }
}

TEST(Transforms, ErasingBoxesFollowTorchvisionsDistribution) {
  // RandomErasing.get_params at its defaults (p = 1 here): two-sample KS against torchvision's
  // draws for the box's area share, log aspect (height / width) and top offset, as the crops.
  constexpr double kMaxKs = 0.03;
  constexpr int kDraws = 10000;
  const resnet::RandomErasingOptions always{1.0};
  for (const auto& [key, tv] : resnet::load_tensor_dict(fixture("erase_draws.pt"))) {
    const auto [h, w] = draws_shape(key);
    std::mt19937_64 rng(321);
    std::vector<double> area_ours, aspect_ours, top_ours, area_tv, aspect_tv, top_tv;
    int none_ours = 0, none_tv = 0;
    for (int i = 0; i < kDraws; ++i) {
      const auto b = resnet::random_erasing_box(h, w, rng, always);
      if (b.height == 0) {
        ++none_ours;
        continue;
      }
      ASSERT_TRUE(b.top >= 0 && b.left >= 0 && b.top + b.height <= h && b.left + b.width <= w) << key;
      ASSERT_TRUE(b.height < h && b.width < w) << key;
      area_ours.push_back(double(b.height * b.width) / (h * w));
      aspect_ours.push_back(std::log(double(b.height) / b.width));
      top_ours.push_back(double(b.top) / (h - b.height));
    }
    const auto t = tv.contiguous();
    for (int64_t i = 0; i < t.size(0); ++i) {
      const double top = t[i][0].item<double>(), eh = t[i][2].item<double>(), ew = t[i][3].item<double>();
      if (eh == h && ew == w) {  // torchvision's "no box": the whole image back
        ++none_tv;
        continue;
      }
      area_tv.push_back(eh * ew / (h * w));
      aspect_tv.push_back(std::log(eh / ew));
      top_tv.push_back(top / (h - eh));
    }
    EXPECT_LE(ks_statistic(area_ours, area_tv), kMaxKs) << key << " area";
    EXPECT_LE(ks_statistic(aspect_ours, aspect_tv), kMaxKs) << key << " aspect";
    EXPECT_LE(ks_statistic(top_ours, top_tv), kMaxKs) << key << " top offset";
    EXPECT_NEAR(double(none_ours) / kDraws, double(none_tv) / t.size(0), 0.01) << key << " no-box rate";
  }
}

TEST(Transforms, RandomErasingZeroesItsBoxAndLeavesTheRest) {
  // Each image's box is the one its own generator gives after the crop and the flip; inside it
  // every channel is 0, outside the image is what the transform gives without erasing; p = 0 is
  // no erasing at all, p = 0.5 erases about half the images.
  const int64_t n = 64, size = 16;
  const auto images = torch::randint(1, 256, {n, 3, 20, 24}, torch::TensorOptions().dtype(torch::kUInt8));
  const resnet::RawBatch batch{images, torch::tensor({20, 24}).repeat({n, 1}), torch::zeros({n}, torch::kLong)};
  std::vector<uint64_t> seeds;
  for (int64_t i = 0; i < n; ++i) seeds.push_back(1000 + static_cast<uint64_t>(i));
  const auto plain = resnet::train_transform(batch, size, seeds);
  resnet::RandomErasingOptions erase{1.0};
  const auto erased = resnet::train_transform(batch, size, seeds, {}, {}, erase);
  int boxes = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::mt19937_64 rng(seeds[static_cast<size_t>(i)]);
    resnet::random_resized_crop_box(20, 24, rng);
    std::bernoulli_distribution(0.5)(rng);
    const auto box = resnet::random_erasing_box(size, size, rng, erase);
    auto inside = torch::zeros({size, size}, torch::kBool);
    if (box.height > 0) {
      inside.narrow(0, box.top, box.height).narrow(1, box.left, box.width).fill_(true);
      ++boxes;
    }
    const auto in = inside.unsqueeze(0).expand({3, size, size});
    EXPECT_TRUE(erased[i].masked_select(in).eq(0).all().item<bool>()) << i;
    EXPECT_TRUE(torch::equal(erased[i].masked_select(in.logical_not()), plain[i].masked_select(in.logical_not())))
        << i;
  }
  EXPECT_GT(boxes, n * 9 / 10);  // at p = 1 ten tries rarely all miss on a 16 x 16 image
  EXPECT_TRUE(torch::equal(resnet::train_transform(batch, size, seeds, {}, {}, resnet::RandomErasingOptions{0.0}), plain));
  const auto half = resnet::train_transform(batch, size, seeds, {}, {}, resnet::RandomErasingOptions{0.5});
  std::vector<uint64_t> more;
  for (int i = 0; i < 400; ++i) more.push_back(7 + static_cast<uint64_t>(i));
  int hit = 0;
  for (uint64_t s : more) {
    std::mt19937_64 rng(s);
    resnet::random_resized_crop_box(20, 24, rng);
    std::bernoulli_distribution(0.5)(rng);
    hit += resnet::random_erasing_box(size, size, rng, resnet::RandomErasingOptions{0.5}).height > 0;
  }
  EXPECT_GT(hit, 160);
  EXPECT_LT(hit, 240);
  EXPECT_FALSE(torch::equal(half, plain));
}

TEST(Transforms, CropScaleBoundsTheCropsArea) {
  // --crop-scale 0.5,0.9 on a 32x32 image: every crop sampled in range covers 0.5-0.9 of the
  // area (up to rounding its sides to whole pixels); the default's range reaches far below 0.5.
  std::mt19937_64 rng(5);
  resnet::TrainCropOptions crop;
  crop.scale_min = 0.5;
  crop.scale_max = 0.9;
  double smallest = 1, largest = 0, smallest_default = 1;
  for (int i = 0; i < 5000; ++i) {
    const auto b = resnet::random_resized_crop_box(32, 32, rng, crop);
    const double area = double(b.height * b.width) / (32 * 32);
    if (b.height == 32 && b.width == 32) continue;  // the fallback (whole image) after 10 misses
    smallest = std::min(smallest, area);
    largest = std::max(largest, area);
    const auto d = resnet::random_resized_crop_box(32, 32, rng);
    smallest_default = std::min(smallest_default, double(d.height * d.width) / (32 * 32));
  }
  EXPECT_GE(smallest, 0.5 * 0.9);  // whole pixels: sqrt(target * ratio) rounded, both sides
  EXPECT_LE(largest, 0.9 * 1.1);
  EXPECT_LE(smallest, 0.55);
  EXPECT_LE(smallest_default, 0.1);
}

// Each TrivialAugmentWide operation against torchvision's on the same uint8 image (ours in float:
// torchvision truncates to uint8 after the operation, and its grey levels for Color and Contrast).
TEST(Transforms, TrivialAugmentOperationsMatchTorchvision) {
  const auto ref = resnet::load_tensor_dict(fixture("augment.pt"));
  const auto image = resnet::find_tensor(ref, "image", "augment.pt").to(torch::kFloat).unsqueeze(0);
  const auto ops = resnet::find_tensor(ref, "ops", "augment.pt");
  const auto magnitudes = resnet::find_tensor(ref, "magnitudes", "augment.pt");
  // All the cases in one batch (image k gets case k: the operations' groups must not mix rows).
  const int64_t n = ops.size(0);
  std::vector<resnet::AugmentDraw> draws;
  for (int64_t k = 0; k < n; ++k)
    draws.push_back({static_cast<resnet::AugmentOp>(ops[k].item<int64_t>()), magnitudes[k].item<double>()});
  const auto batch = resnet::trivial_augment(image.expand({n, 3, image.size(2), image.size(3)}).contiguous(), draws,
                                             std::vector<double>(2 * static_cast<size_t>(n), 1.0));
  for (int64_t k = 0; k < n; ++k) {
    const auto& draw = draws[static_cast<size_t>(k)];
    const std::string name = std::string(resnet::augment_op_name(draw.op)) + " " + std::to_string(draw.magnitude);
    const auto want = resnet::find_tensor(ref, "out." + std::to_string(k), "augment.pt").to(torch::kFloat);
    const auto got = batch[k];
    ASSERT_EQ(got.sizes(), want.sizes()) << name;
    const auto diff = (got - want).abs();
    std::cout << name << ": max difference " << diff.max().item<double>() << ", mean " << diff.mean().item<double>()
              << ", share over 0.5 " << diff.gt(0.5).to(torch::kFloat).mean().item<double>() << "\n";
    switch (draw.op) {
      case resnet::AugmentOp::kShearX:
      case resnet::AugmentOp::kShearY:
      case resnet::AugmentOp::kTranslateX:
      case resnet::AugmentOp::kTranslateY:
      case resnet::AugmentOp::kRotate:
        // nearest: the same pixels but where a coordinate falls within float rounding of a tie
        EXPECT_LE(diff.gt(0.5).to(torch::kFloat).mean().item<double>(), 0.005) << name;
        EXPECT_GT(got.eq(0).to(torch::kFloat).mean().item<double>(), 0.02) << name << ": the black fill";
        break;
      case resnet::AugmentOp::kColor:
      case resnet::AugmentOp::kContrast:
      case resnet::AugmentOp::kSharpness:
        EXPECT_LE(diff.max().item<double>(), 2.0) << name;
        EXPECT_LE(diff.mean().item<double>(), 1.0) << name;
        break;
      default:
        EXPECT_LE(diff.max().item<double>(), 1.0) << name;
    }
    if (draw.op != resnet::AugmentOp::kIdentity) {
      EXPECT_GT((got - image[0]).abs().max().item<double>(), 2.0) << name;
    }
  }
  // Translations scaled per image and axis (x by the first scale, y by the second).
  const auto translated = [&](resnet::AugmentOp op, double magnitude, std::vector<double> scale) {
    return resnet::trivial_augment(image, {{op, magnitude}}, scale);
  };
  EXPECT_TRUE(torch::equal(translated(resnet::AugmentOp::kTranslateX, 7, {2, 3}),
                           translated(resnet::AugmentOp::kTranslateX, 14, {1, 1})));
  EXPECT_TRUE(torch::equal(translated(resnet::AugmentOp::kTranslateY, -7, {2, 3}),
                           translated(resnet::AugmentOp::kTranslateY, -21, {1, 1})));
}

TEST(Transforms, TrivialAugmentDrawsEachOperationAndStrengthEvenly) {
  const auto ref = resnet::load_tensor_dict(fixture("augment.pt"));
  std::mt19937_64 rng(11);
  constexpr int kDraws = 28000;  // 2,000 an operation expected
  std::vector<int> count(resnet::kAugmentOps);
  std::vector<std::set<double>> seen(resnet::kAugmentOps);
  int negative = 0, signed_draws = 0;
  for (int i = 0; i < kDraws; ++i) {
    const auto d = resnet::draw_trivial_augment(rng);
    ++count[static_cast<int>(d.op)];
    seen[static_cast<int>(d.op)].insert(std::abs(d.magnitude));
    if (d.op == resnet::AugmentOp::kRotate) {
      EXPECT_LE(std::abs(d.magnitude), 135.0);
      ++signed_draws;
      negative += d.magnitude < 0;
    }
    if (d.op == resnet::AugmentOp::kPosterize) {
      EXPECT_TRUE(d.magnitude >= 2 && d.magnitude <= 8) << d.magnitude;
    }
    if (d.op == resnet::AugmentOp::kSolarize) {
      EXPECT_TRUE(d.magnitude >= 0 && d.magnitude <= 255) << d.magnitude;
    }
  }
  for (int op = 0; op < resnet::kAugmentOps; ++op) {
    EXPECT_NEAR(count[op], 2000, 200) << op;  // 4.5 sigma
    // every strength of torchvision's table drawn, and no other (float32 values, as torchvision's)
    const auto table = resnet::find_tensor(ref, "space." + std::to_string(op), "augment.pt").contiguous();
    const std::set<double> want(table.data_ptr<double>(), table.data_ptr<double>() + table.numel());
    EXPECT_EQ(seen[op], want) << resnet::augment_op_name(static_cast<resnet::AugmentOp>(op));
  }
  EXPECT_NEAR(static_cast<double>(negative) / signed_draws, 0.5, 0.06);
}

// In the train transform: drawn from each image's generator after its crop and flip; an image that
// drew Identity comes out as without TrivialAugment, the others not; the same seeds, the same batch.
TEST(Transforms, TrainTransformAppliesTrivialAugmentPerImage) {
  torch::manual_seed(3);
  const int64_t n = 24;
  const auto images = torch::randint(0, 256, {n, 3, 32, 32}, torch::kUInt8);
  const resnet::RawBatch batch{images, torch::tensor({32, 32}).view({1, 2}).repeat({n, 1}), torch::zeros({n}, torch::kLong)};
  resnet::TrainCropOptions pad;
  pad.pad = 4;
  std::vector<uint64_t> seeds;
  for (uint64_t s = 0; s < static_cast<uint64_t>(n); ++s) seeds.push_back(1000 + s);
  const auto plain = resnet::train_transform(batch, 64, seeds, {}, pad, {}, false);
  const auto augmented = resnet::train_transform(batch, 64, seeds, {}, pad, {}, true);
  EXPECT_TRUE(torch::equal(augmented, resnet::train_transform(batch, 64, seeds, {}, pad, {}, true)));
  int identity = 0, changed = 0;
  for (int64_t b = 0; b < n; ++b) {
    std::mt19937_64 rng(seeds[static_cast<size_t>(b)]);  // the transform's draws, in its order
    resnet::random_crop_box(32, 32, 4, rng);
    std::bernoulli_distribution(0.5)(rng);
    const auto draw = resnet::draw_trivial_augment(rng);
    const bool same = torch::equal(plain[b], augmented[b]);
    if (draw.op == resnet::AugmentOp::kIdentity) {
      ++identity;
      EXPECT_TRUE(same) << "image " << b;
    } else if (!same) {
      ++changed;
    }
  }
  EXPECT_GE(changed, n - identity - 2);  // (a few operations can leave a random image unchanged)
  EXPECT_GT(changed, 0);
}

TEST(Transforms, CudaGivesWhatTheCpuGives) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  const auto images = torch::randint(0, 256, {16, 3, 32, 32}, torch::kUInt8);
  const auto sizes = torch::tensor({32, 32}).view({1, 2}).repeat({16, 1});
  resnet::RawBatch cpu{images, sizes, torch::zeros({16}, torch::kLong)};
  resnet::RawBatch gpu{images.cuda(), sizes, torch::zeros({16}, torch::kLong).cuda()};
  std::mt19937_64 a(3), b(3);
  EXPECT_LE((resnet::train_transform(cpu, 224, a) - resnet::train_transform(gpu, 224, b).cpu()).abs().max().item<double>(), 1e-4);
  resnet::TrainCropOptions pad;
  pad.pad = 4;
  EXPECT_LE((resnet::train_transform(cpu, 224, a, {}, pad) - resnet::train_transform(gpu, 224, b, {}, pad).cpu())
                .abs().max().item<double>(), 1e-4);
  const std::vector<uint64_t> seeds{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  const resnet::RandomErasingOptions erase{1.0};  // the erasing mask is built on the batch's device
  EXPECT_LE((resnet::train_transform(cpu, 224, seeds, {}, {}, erase) -
             resnet::train_transform(gpu, 224, seeds, {}, {}, erase).cpu())
                .abs().max().item<double>(), 1e-4);
  EXPECT_LE((resnet::test_transform(cpu, 224) - resnet::test_transform(gpu, 224).cpu()).abs().max().item<double>(), 1e-4);
}

// The GPU's one-kernel resample of uint8 batches (ops/resample_kernels.cu) against grid_sample's
// path, which runs where the batch is float (on the GPU too) or on the CPU: images of mixed sizes
// padded into a larger, non-square batch, channels-last like the CPU gather's, flips, erasing, and
// a channels-last buffer to write into; the test transform's upsampled images (and a batch with a
// shrunk one, which takes the other path).
TEST(Transforms, TheFusedResampleGivesWhatGridSampleGives) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  torch::manual_seed(7);
  const int64_t n = 12;
  const auto images = torch::randint(0, 256, {n, 3, 300, 340}, torch::kUInt8).contiguous(at::MemoryFormat::ChannelsLast);
  std::vector<int64_t> hw;
  for (int64_t b = 0; b + 1 < n; ++b) hw.insert(hw.end(), {60 + 20 * b, 340 - 15 * b});
  hw.insert(hw.end(), {300, 340});  // shrunk by the test transform's Resize(256)
  const auto sizes = torch::tensor(hw).view({n, 2});
  const auto labels = torch::zeros({n}, torch::kLong);
  const resnet::RawBatch cpu{images, sizes, labels};
  const resnet::RawBatch fused{images.cuda(), sizes, labels.cuda()};
  const resnet::RawBatch grid{images.cuda().to(torch::kFloat), sizes, labels.cuda()};
  ASSERT_TRUE(fused.images.is_contiguous(at::MemoryFormat::ChannelsLast));
  std::vector<uint64_t> seeds;
  for (uint64_t s = 1; s <= static_cast<uint64_t>(n); ++s) seeds.push_back(s * 7919);
  const resnet::RandomErasingOptions erase{0.5};
  const auto into = torch::empty({n, 3, 224, 224}, torch::TensorOptions().dtype(torch::kFloat).device(torch::kCUDA))
                        .contiguous(at::MemoryFormat::ChannelsLast);
#ifdef RESNET_WITH_CUDA
  // The kernel ran: grid_sample's path would first make a float copy of the batch (14 MiB here).
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
  const double before = resnet::peak_memory_mib(torch::Device(torch::kCUDA, 0));
#endif
  const auto out = resnet::train_transform(fused, 224, seeds, into, {}, erase);
  EXPECT_EQ(out.data_ptr(), into.data_ptr());  // written where the step reads it
#ifdef RESNET_WITH_CUDA
  EXPECT_LT(resnet::peak_memory_mib(torch::Device(torch::kCUDA, 0)) - before, 4.0);
#endif
  // Pixels 0-255 normalised by 1 / (255 * std): 1e-3 is 0.06 of a level, float rounding of the
  // source coordinates over 340 px; a wrong pixel or weight is off by whole levels.
  for (const auto& other : {resnet::train_transform(grid, 224, seeds, {}, {}, erase).cpu(),
                            resnet::train_transform(cpu, 224, seeds, {}, {}, erase)}) {
    const auto diff = (out.cpu() - other).abs();
    EXPECT_LE(diff.max().item<double>(), 1e-3);
    EXPECT_LE(diff.mean().item<double>(), 1e-5);
  }
  // TrivialAugment on the GPU as on the CPU (nearest sampling and whole levels: a value within
  // float rounding of a tie may go either way)
  const auto augmented = (resnet::train_transform(fused, 224, seeds, {}, {}, erase, true).cpu() -
                          resnet::train_transform(cpu, 224, seeds, {}, {}, erase, true)).abs();
  EXPECT_LE(augmented.gt(1e-2).to(torch::kFloat).mean().item<double>(), 0.01);
  resnet::TrainCropOptions pad;
  pad.pad = 4;
  std::mt19937_64 a(5), b(5);
  EXPECT_LE((resnet::train_transform(fused, 224, a, {}, pad).cpu() - resnet::train_transform(cpu, 224, b, {}, pad))
                .abs().max().item<double>(), 1e-3);
  // The test transform: with the shrunk image (resized alone; the rest sampled by grid_sample),
  // and without it (all upsampled: the kernel).
  EXPECT_LE((resnet::test_transform(fused, 224).cpu() - resnet::test_transform(cpu, 224)).abs().max().item<double>(),
            1e-3);
  const auto first = [&](const resnet::RawBatch& batch) {
    return resnet::RawBatch{batch.images.narrow(0, 0, n - 1), batch.sizes.narrow(0, 0, n - 1),
                            batch.labels.narrow(0, 0, n - 1)};
  };
  EXPECT_LE((resnet::test_transform(first(fused), 224).cpu() - resnet::test_transform(first(cpu), 224))
                .abs().max().item<double>(), 1e-3);
}

// ---- GPU JPEG decoding ------------------------------------------------------------------------

TEST(GpuJpeg, TheCpuTakesTheShareThatMakesBothSidesFinishTogether) {
  using resnet::jpegs_for_the_cpu;
  EXPECT_EQ(jpegs_for_the_cpu(0, 5, 100, 100), 0);
  EXPECT_EQ(jpegs_for_the_cpu(200, 10, 0, 0), 0);    // not measured: the CPU's own files measure it
  EXPECT_EQ(jpegs_for_the_cpu(200, 0, 0, 0), 25);    // nothing for the CPU: an eighth, to measure it
  EXPECT_EQ(jpegs_for_the_cpu(256, 0, 100, 100), 128);
  EXPECT_EQ(jpegs_for_the_cpu(100, 500, 100, 100), 0);   // the CPU already has more than its share
  EXPECT_EQ(jpegs_for_the_cpu(100, 0, 1e6, 1), 100);     // a GPU far slower: all to the CPU
  // Measured-like rates: both sides' times within one image of each other.
  for (const auto& [eligible, forced, cpu, gpu] : std::vector<std::tuple<int64_t, int64_t, double, double>>{
           {230, 26, 3700, 5500}, {256, 3, 900, 6000}, {180, 60, 4000, 2000}}) {
    const int64_t m = jpegs_for_the_cpu(eligible, forced, cpu, gpu);
    const double t_cpu = static_cast<double>(forced + m) / cpu, t_gpu = static_cast<double>(eligible - m) / gpu;
    EXPECT_LE(std::abs(t_cpu - t_gpu), 1.0 / std::min(cpu, gpu)) << eligible << " " << forced << ": " << m;
  }
}

TEST(GpuJpeg, TheDecoderKeepsItsCountWhereTheSplitAllows) {
  using resnet::jpegs_for_the_gpu;
  EXPECT_EQ(jpegs_for_the_gpu(230, 200, 0, 16), 200);    // not set up yet: the balanced split
  EXPECT_EQ(jpegs_for_the_gpu(230, 200, 210, 16), 210);  // within the slack: the count it has
  EXPECT_EQ(jpegs_for_the_gpu(230, 200, 190, 16), 190);
  EXPECT_EQ(jpegs_for_the_gpu(230, 200, 216, 16), 216);  // (the edge)
  EXPECT_EQ(jpegs_for_the_gpu(230, 200, 217, 16), 200);  // beyond it: set up again
  EXPECT_EQ(jpegs_for_the_gpu(205, 200, 210, 16), 200);  // more than this batch has
  EXPECT_EQ(jpegs_for_the_gpu(0, 0, 210, 16), 0);
}

TEST(GpuJpeg, TheSplitDecidesWhatMovesToTheCpu) {
  // RESNET_NVJPEG_SPLIT=gpu: none of the GPU's JPEGs go to the CPU, whatever the rates and counts;
  // balanced: jpegs_for_the_cpu's share; a share: the rest of it; the last two kept at the
  // decoder's count where within the slack.
  using resnet::jpegs_moved_to_the_cpu;
  using Split = resnet::GpuJpegSettings::Split;
  const auto split = [](Split how, double share = 1) {
    resnet::GpuJpegSettings s;
    s.split = how;
    s.gpu_share = share;
    return s;
  };
  const auto balanced = split(Split::kBalanced);
  EXPECT_EQ(jpegs_moved_to_the_cpu(balanced, 256, 0, 100, 100, 0, 16), 128);
  EXPECT_EQ(jpegs_moved_to_the_cpu(balanced, 230, 26, 3000, 1000, 0, 16), 166);  // (230 x 3 - 26) / 4
  EXPECT_EQ(jpegs_moved_to_the_cpu(balanced, 230, 26, 3000, 1000, 70, 16), 160);  // kept at 70
  EXPECT_EQ(jpegs_moved_to_the_cpu(balanced, 200, 0, 0, 0, 0, 16), 25);  // an eighth, to measure the CPU
  for (const auto& [eligible, forced, cpu, gpu, prepared] :
       std::vector<std::tuple<int64_t, int64_t, double, double, int64_t>>{
           {256, 0, 100, 100, 0}, {230, 26, 3000, 1000, 70}, {200, 0, 0, 0, 0}, {100, 0, 1e6, 1, 256}, {0, 5, 1, 1, 0}})
    EXPECT_EQ(jpegs_moved_to_the_cpu(split(Split::kGpu), eligible, forced, cpu, gpu, prepared, 16), 0)
        << eligible << " " << forced << " " << cpu << " " << gpu << " " << prepared;
  // A share ignores the rates: 60% of 230 is 138 on the GPU, 92 moved; kept at a count of 140
  // (within 16), not at 100; a share of 1 moves none.
  EXPECT_EQ(jpegs_moved_to_the_cpu(split(Split::kShare, 0.6), 230, 26, 3000, 1000, 0, 16), 92);
  EXPECT_EQ(jpegs_moved_to_the_cpu(split(Split::kShare, 0.6), 230, 26, 0, 0, 0, 16), 92);
  EXPECT_EQ(jpegs_moved_to_the_cpu(split(Split::kShare, 0.6), 230, 0, 1, 1e6, 140, 16), 90);
  EXPECT_EQ(jpegs_moved_to_the_cpu(split(Split::kShare, 0.6), 230, 0, 1, 1e6, 100, 16), 92);
  EXPECT_EQ(jpegs_moved_to_the_cpu(split(Split::kShare, 1.0), 230, 0, 1e6, 1, 0, 16), 0);
  EXPECT_EQ(jpegs_moved_to_the_cpu(split(Split::kShare, 0.5), 229, 0, 1, 1, 0, 16), 114);  // 114.5 rounds up for the GPU
  EXPECT_EQ(jpegs_moved_to_the_cpu(split(Split::kShare, 0.6), 0, 9, 1, 1, 0, 16), 0);
}

TEST(GpuJpeg, AnUnknownBackendIsRefusedByName) {
  if (!resnet::gpu_jpeg_built()) GTEST_SKIP() << "this build has no nvJPEG";
  resnet::GpuJpegSettings settings;
  settings.backend = "fastest";
  std::string why;
  EXPECT_EQ(resnet::make_gpu_jpeg_decoder(0, why, settings), nullptr);
  expect_contains(why, "unknown nvJPEG backend 'fastest'");
  expect_contains(why, "RESNET_NVJPEG_BACKEND");
}

TEST(GpuJpeg, TheEnvironmentSetsThePipelineOnlyWhenAskedTo) {
  // Off by default (the hardware decoder without its pipeline); RESNET_NVJPEG_PIPELINE=1 turns it
  // on, =0 leaves it off; the other settings keep their defaults.
  {
    const resnet::test::ScopedEnv unset("RESNET_NVJPEG_PIPELINE", nullptr);
    EXPECT_FALSE(resnet::GpuJpegSettings::from_environment().pipeline);
  }
  resnet::GpuJpegSettings on, off;
  {
    const resnet::test::ScopedEnv one("RESNET_NVJPEG_PIPELINE", "1");
    on = resnet::GpuJpegSettings::from_environment();
  }
  {
    const resnet::test::ScopedEnv zero("RESNET_NVJPEG_PIPELINE", "0");
    off = resnet::GpuJpegSettings::from_environment();
  }
  EXPECT_TRUE(on.pipeline);
  EXPECT_FALSE(off.pipeline);
  const resnet::GpuJpegSettings defaults;
  EXPECT_FALSE(defaults.pipeline);
  for (const auto& s : {on, off}) {
    EXPECT_EQ(s.preallocate, defaults.preallocate);
    EXPECT_EQ(s.fixed_count, defaults.fixed_count);
  }
}

TEST(GpuJpeg, TheEnvironmentSetsShrinkingOnlyWhenAskedTo) {
  // Off by default; RESNET_NVJPEG_SHRINK=1 turns it on, =0 leaves it off; the others unchanged.
  const auto with = [](const char* value) {
    const resnet::test::ScopedEnv given("RESNET_NVJPEG_SHRINK", value);
    return resnet::GpuJpegSettings::from_environment();
  };
  EXPECT_FALSE(resnet::GpuJpegSettings{}.shrink);
  EXPECT_FALSE(with(nullptr).shrink);
  EXPECT_FALSE(with("0").shrink);
  const auto on = with("1");
  EXPECT_TRUE(on.shrink);
  EXPECT_EQ(on.fixed_count, resnet::GpuJpegSettings{}.fixed_count);
  EXPECT_EQ(on.pipeline, resnet::GpuJpegSettings{}.pipeline);
}

TEST(GpuJpeg, TheEnvironmentPicksTheSplit) {
  // RESNET_NVJPEG_SPLIT: unset or "balanced", the balanced split; "gpu", every JPEG the decoder
  // takes; a number over 0 and at most 1, that share; anything else refused with the variable's
  // name and the value given.
  using Split = resnet::GpuJpegSettings::Split;
  {
    const resnet::test::ScopedEnv unset("RESNET_NVJPEG_SPLIT", nullptr);
    EXPECT_EQ(resnet::GpuJpegSettings::from_environment().split, Split::kBalanced);
  }
  {
    const resnet::test::ScopedEnv balanced("RESNET_NVJPEG_SPLIT", "balanced");
    EXPECT_EQ(resnet::GpuJpegSettings::from_environment().split, Split::kBalanced);
  }
  {
    const resnet::test::ScopedEnv gpu("RESNET_NVJPEG_SPLIT", "gpu");
    EXPECT_EQ(resnet::GpuJpegSettings::from_environment().split, Split::kGpu);
  }
  for (const auto& [text, share] : std::vector<std::pair<const char*, double>>{{"0.6", 0.6}, {"1", 1.0}, {".25", 0.25}, {"0.555", 0.555}}) {
    const resnet::test::ScopedEnv given("RESNET_NVJPEG_SPLIT", text);
    const auto settings = resnet::GpuJpegSettings::from_environment();
    EXPECT_EQ(settings.split, Split::kShare) << text;
    EXPECT_DOUBLE_EQ(settings.gpu_share, share) << text;
  }
  for (const char* bad_value : {"GPU ", "0", "-0.5", "1.5", "0.6x", "nan", "", " 0.5", "+0.5", "0x1p-1", "0.5 "}) {
    const resnet::test::ScopedEnv bad("RESNET_NVJPEG_SPLIT", bad_value);
    try {
      resnet::GpuJpegSettings::from_environment();
      ADD_FAILURE() << "RESNET_NVJPEG_SPLIT='" << bad_value << "' was taken";
    } catch (const resnet::UsageError& e) {
      expect_contains(e.what(), "RESNET_NVJPEG_SPLIT");
      expect_contains(e.what(), "balanced, gpu or the share");
      expect_contains(e.what(), std::string("'") + bad_value + "'");
    }
  }
}

#ifdef RESNET_WITH_CUDA  // (a build without CUDA has no GPU decoding to test)
// The environment's settings (RESNET_NVJPEG_BACKEND included) with these two
resnet::GpuJpegSettings nvjpeg_settings(bool preallocate, bool fixed_count) {
  auto s = resnet::GpuJpegSettings::from_environment();
  s.preallocate = preallocate;
  s.fixed_count = fixed_count;
  return s;
}

// gpu/train's files that `decoder` takes, with their names and sizes; checks that it takes the
// colour baseline ones ("s*") and no other (progressive.JPEG aside: the hybrid decoder may take it)
struct GpuFiles {
  std::vector<std::vector<uint8_t>> files;
  std::vector<std::string> names;
  std::vector<int64_t> heights, widths;
  int64_t max_h = 0, max_w = 0;
};
GpuFiles files_the_gpu_takes(resnet::GpuJpegDecoder& decoder) {
  GpuFiles out;
  for (const auto& path : resnet::index_image_folder(fixture("gpu/train")).files) {
    auto bytes = resnet::read_file_bytes(path);
    int64_t h = 0, w = 0;
    const std::string name = std::filesystem::path(path).filename().string();
    const bool colour_baseline = name.rfind("s", 0) == 0;
    const bool taken = decoder.accepts(bytes, h, w);
    if (name != "progressive.JPEG") {
      EXPECT_EQ(taken, colour_baseline) << name;
    }
    if (!taken) continue;
    out.names.push_back(name);
    out.heights.push_back(h);
    out.widths.push_back(w);
    out.files.push_back(std::move(bytes));
    out.max_h = std::max(out.max_h, h), out.max_w = std::max(out.max_w, w);
  }
  return out;
}

// Decodes files[i] for each i of `order` into slot k (k-th of order) of a zeroed batch on GPU 0,
// as large as its largest file (as the loader's batches are).
torch::Tensor decode_on_gpu(resnet::GpuJpegDecoder& decoder, const GpuFiles& g, const std::vector<size_t>& order) {
  int64_t max_h = 0, max_w = 0;
  for (const size_t i : order) max_h = std::max(max_h, g.heights[i]), max_w = std::max(max_w, g.widths[i]);
  auto images = torch::zeros({static_cast<int64_t>(order.size()), 3, max_h, max_w},
                             torch::TensorOptions().dtype(torch::kUInt8).device(torch::kCUDA, 0));
  torch::cuda::synchronize(0);  // the zeros (default stream) before the decode (another stream)
  std::vector<const std::vector<uint8_t>*> pointers;
  std::vector<int64_t> slots;
  for (size_t k = 0; k < order.size(); ++k) pointers.push_back(&g.files[order[k]]), slots.push_back(static_cast<int64_t>(k));
  const auto stream = c10::cuda::getStreamFromPool(false, 0);
  EXPECT_EQ(decoder.decode(pointers, slots, images, stream.stream()), "");
  return images;
}

TEST(GpuJpeg, DecodesAsTheCpuPathDoes) {
  // nvJPEG against libjpeg-turbo (the CPU path, equal to PIL) on gpu/'s colour JPEGs: the sizes
  // exactly; the pixels within what two decoders' IDCTs and chroma upsampling give (4:4:4 has no
  // upsampling; 4:2:2 and 4:2:0 differ most at colour edges); the padding beside each image
  // untouched (zero). Measured (H200, hardware engines, 2026-12-01): 4:4:4 equal, 4:2:2 and 4:2:0
  // mean 0.00025, max 1. The hardware bounds keep a margin over that; the hybrid decoder's
  // (GPUs without engines, not measured here) are wider, for its own IDCT and upsampling.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  std::string why;
  const auto decoder = resnet::make_gpu_jpeg_decoder(0, why);
  if (!decoder) GTEST_SKIP() << why;
  std::cout << "nvJPEG backend: " << decoder->backend() << (decoder->preallocates() ? ", buffers set up ahead" : "") << "\n";
  const GpuFiles g = files_the_gpu_takes(*decoder);
  const auto& files = g.files;
  const auto& names = g.names;
  const auto& heights = g.heights;
  const auto& widths = g.widths;
  const int64_t max_h = g.max_h, max_w = g.max_w;
  ASSERT_GE(files.size(), 4u);
  std::vector<size_t> all(files.size());
  std::iota(all.begin(), all.end(), size_t{0});
  const auto images = decode_on_gpu(*decoder, g, all);
  EXPECT_EQ(decoder->images_decoded(), static_cast<int64_t>(files.size()));
  EXPECT_EQ(decoder->batches_refused(), 0);
  const auto got = images.cpu();
  for (size_t i = 0; i < files.size(); ++i) {
    const auto want = resnet::decode_image(files[i], names[i]);
    ASSERT_EQ(want.size(1), heights[i]) << names[i];
    ASSERT_EQ(want.size(2), widths[i]) << names[i];
    const auto mine = got[static_cast<int64_t>(i)];
    const auto diff = (mine.narrow(1, 0, heights[i]).narrow(2, 0, widths[i]).to(torch::kFloat) - want.to(torch::kFloat)).abs();
    const double mean = diff.mean().item<double>(), max = diff.max().item<double>();
    std::cout << names[i] << ": mean abs difference " << mean << ", max " << max << "\n";
    const bool full_chroma = names[i].rfind("s0", 0) == 0;
    if (decoder->backend() == "hardware") {
      EXPECT_LE(mean, 0.05) << names[i];
      EXPECT_LE(max, full_chroma ? 1.0 : 4.0) << names[i];
    } else {
      EXPECT_LE(mean, full_chroma ? 2.0 : 8.0) << names[i];
      EXPECT_LE(max, full_chroma ? 24.0 : 40.0) << names[i];
    }
    auto outside = torch::ones({3, max_h, max_w}, torch::kBool);
    outside.narrow(1, 0, heights[i]).narrow(2, 0, widths[i]).fill_(false);
    EXPECT_EQ(mine.masked_select(outside).sum().item<int64_t>(), 0) << names[i] << ": wrote outside its image";
  }
}

TEST(GpuJpeg, PreallocatedBuffersDecodeWhatNvjpegsOwnWayDoes) {
  // The hardware decoder with its buffers set up ahead (the default) against nvJPEG left to
  // allocate as it decodes: the same pixels, over batches of growing images (the buffers grow to
  // cover each batch's largest, and never shrink) and small ones again.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  std::string why;
  const auto ahead = resnet::make_gpu_jpeg_decoder(0, why, nvjpeg_settings(true, true));
  if (!ahead) GTEST_SKIP() << why;
  const auto as_it_goes = resnet::make_gpu_jpeg_decoder(0, why, nvjpeg_settings(false, false));
  ASSERT_TRUE(as_it_goes) << why;
  EXPECT_EQ(ahead->preallocates(), ahead->backend() == "hardware");  // (the hybrid decoder: never)
  EXPECT_FALSE(as_it_goes->preallocates());
  const GpuFiles g = files_the_gpu_takes(*ahead);
  ASSERT_GE(g.files.size(), 4u);
  std::vector<size_t> by_area(g.files.size());
  std::iota(by_area.begin(), by_area.end(), size_t{0});
  std::sort(by_area.begin(), by_area.end(),
            [&](size_t a, size_t b) { return g.heights[a] * g.widths[a] < g.heights[b] * g.widths[b]; });
  std::vector<std::vector<size_t>> batches;  // the smallest image, the two smallest, ..., all
  for (size_t n = 1; n <= by_area.size(); ++n) batches.emplace_back(by_area.begin(), by_area.begin() + static_cast<std::ptrdiff_t>(n));
  const std::vector<size_t> every = batches.back();
  batches.push_back({by_area.front()});  // small again
  batches.push_back(every);              // then all of them once more
  constexpr int64_t kRoundedTo = 128;  // (gpu_jpeg.cpp rounds each side up to a multiple of this)
  int64_t seen_h = 0, seen_w = 0, grew = 0;
  resnet::GpuJpegDecoder::ImageSize before;
  for (size_t b = 0; b < batches.size(); ++b) {
    const auto mine = decode_on_gpu(*ahead, g, batches[b]).cpu();
    const auto want = decode_on_gpu(*as_it_goes, g, batches[b]).cpu();
    EXPECT_TRUE(torch::equal(mine, want)) << "batch " << b << " of " << batches[b].size() << " files";
    for (const size_t i : batches[b]) seen_h = std::max(seen_h, g.heights[i]), seen_w = std::max(seen_w, g.widths[i]);
    const auto now = ahead->preallocated();
    if (ahead->preallocates()) {
      EXPECT_GE(now.height, seen_h) << "batch " << b;
      EXPECT_GE(now.width, seen_w) << "batch " << b;
      EXPECT_LT(now.height, seen_h + kRoundedTo) << "batch " << b;
      EXPECT_LT(now.width, seen_w + kRoundedTo) << "batch " << b;
      EXPECT_GE(now.height, before.height) << "batch " << b;
      EXPECT_GE(now.width, before.width) << "batch " << b;
      grew += (now.height > before.height || now.width > before.width) ? 1 : 0;
    } else {
      EXPECT_EQ(now.height + now.width, 0);
    }
    before = now;
  }
  std::cout << "pre-allocated for " << before.height << " x " << before.width << ", grown " << grew << " times\n";
  if (ahead->preallocates()) {
    EXPECT_GE(grew, 2);  // (set up for the first batch, grown for a larger one)
  }
  // The same count of files of sizes it is set up for: nothing set up again.
  const int64_t setups = ahead->setups();
  EXPECT_GT(setups, 0);
  decode_on_gpu(*ahead, g, every);
  EXPECT_EQ(ahead->setups(), setups);
  EXPECT_EQ(ahead->batches_refused(), 0);
  EXPECT_EQ(as_it_goes->preallocated().height, 0);
}

TEST(GpuJpeg, FixedCountsFillBatchesUpInsteadOfSettingUpAgain) {
  // A decoder with fixed counts (the default) against one without: the same pixels, nothing
  // written beside each image (the fillers' pixels go elsewhere), and set up again only for a
  // batch with more files than it is set up for (then for a multiple of 32).
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  std::string why;
  const auto fixed = resnet::make_gpu_jpeg_decoder(0, why, nvjpeg_settings(true, true));
  if (!fixed) GTEST_SKIP() << why;
  EXPECT_TRUE(fixed->fixed_count());
  const auto plain = resnet::make_gpu_jpeg_decoder(0, why, nvjpeg_settings(true, false));
  ASSERT_TRUE(plain) << why;
  EXPECT_FALSE(plain->fixed_count());
  const GpuFiles g = files_the_gpu_takes(*fixed);
  ASSERT_GE(g.files.size(), 4u);
  ASSERT_LE(g.files.size(), 32u);
  std::vector<size_t> every(g.files.size());
  std::iota(every.begin(), every.end(), size_t{0});
  std::vector<size_t> many;  // 40 files: every one, again and again
  while (many.size() < 40) many.push_back(every[many.size() % every.size()]);
  const auto same = [&](const std::vector<size_t>& order, const std::string& what) {
    EXPECT_TRUE(torch::equal(decode_on_gpu(*fixed, g, order).cpu(), decode_on_gpu(*plain, g, order).cpu())) << what;
  };
  same(every, "every file");
  EXPECT_EQ(fixed->prepared_for(), 32);
  const int64_t setups = fixed->setups();
  const int64_t plain_setups = plain->setups();
  for (size_t n = every.size() - 1; n >= 1; --n) {  // fewer files each time: filled up, not set up again
    same(std::vector<size_t>(every.begin(), every.begin() + static_cast<std::ptrdiff_t>(n)),
         std::to_string(n) + " files");
    EXPECT_EQ(fixed->prepared_for(), 32) << n << " files";
  }
  EXPECT_EQ(fixed->setups(), setups);
  EXPECT_GE(plain->setups(), plain_setups + static_cast<int64_t>(every.size()) - 1);  // (without: each count set up)
  same(many, "40 files");
  EXPECT_EQ(fixed->prepared_for(), 64);
  EXPECT_GT(fixed->setups(), setups);
  same({every[0]}, "1 file after 40");  // 63 fillers: never set up for fewer
  EXPECT_EQ(fixed->prepared_for(), 64);
  EXPECT_EQ(fixed->images_decoded(), static_cast<int64_t>(every.size() * (every.size() + 1) / 2 + many.size() + 1));
  EXPECT_EQ(fixed->batches_refused(), 0);
}

TEST(GpuJpeg, AShrinkingDecoderSetsUpOnceForFewerFiles) {
  // RESNET_NVJPEG_SHRINK: set up for 96 files (a count of 96), then 8 calls of 24 (72 fillers
  // each): the 8th sets the decoder up again for 24 + 3 rounded up to 32, and from there calls of
  // 24 set nothing up; a call of 40 grows it to 64. The pixels are a decoder's without fixed counts
  // throughout. A decoder with fixed counts but no shrink stays at 96 through the same calls.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  std::string why;
  auto settings = nvjpeg_settings(true, true);
  settings.shrink = true;
  const auto shrinking = resnet::make_gpu_jpeg_decoder(0, why, settings);
  if (!shrinking) GTEST_SKIP() << why;
  ASSERT_TRUE(shrinking->fixed_count());
  EXPECT_TRUE(shrinking->shrinks());
  const auto plain = resnet::make_gpu_jpeg_decoder(0, why, nvjpeg_settings(true, false));
  ASSERT_TRUE(plain) << why;
  auto fixed_settings = nvjpeg_settings(true, true);
  fixed_settings.shrink = false;
  const auto fixed = resnet::make_gpu_jpeg_decoder(0, why, fixed_settings);
  ASSERT_TRUE(fixed) << why;
  EXPECT_FALSE(fixed->shrinks());
  EXPECT_FALSE(plain->shrinks());  // (no fixed counts: nothing to shrink)
  const GpuFiles g = files_the_gpu_takes(*shrinking);
  ASSERT_GE(g.files.size(), 4u);
  const auto files = [&](size_t n) {  // every file the decoder takes, again and again
    std::vector<size_t> order;
    while (order.size() < n) order.push_back(order.size() % g.files.size());
    return order;
  };
  const auto same = [&](size_t n, const std::string& what) {
    EXPECT_TRUE(torch::equal(decode_on_gpu(*shrinking, g, files(n)).cpu(), decode_on_gpu(*plain, g, files(n)).cpu()))
        << what;
  };
  same(96, "96 files");
  EXPECT_EQ(shrinking->prepared_for(), 96);
  decode_on_gpu(*fixed, g, files(96));
  const int64_t before = shrinking->setups();
  for (int call = 1; call < 8; ++call) {
    decode_on_gpu(*shrinking, g, files(24));
    EXPECT_EQ(shrinking->prepared_for(), 96) << "call " << call;
  }
  EXPECT_EQ(shrinking->setups(), before);
  same(24, "the 8th call of 24 files");
  EXPECT_EQ(shrinking->prepared_for(), 32);
  const int64_t shrunk = shrinking->setups();
  EXPECT_GT(shrunk, before);
  for (int call = 0; call < 20; ++call) {
    decode_on_gpu(*shrinking, g, files(24));
    decode_on_gpu(*fixed, g, files(24));
  }
  EXPECT_EQ(fixed->prepared_for(), 96);  // (20 calls of 24 filled up to 96: never set up for fewer)
  EXPECT_EQ(shrinking->setups(), shrunk);  // (8 fillers of 32: a quarter, but 24 fit with an eighth more)
  EXPECT_EQ(shrinking->prepared_for(), 32);
  same(40, "40 files after the shrink");
  EXPECT_EQ(shrinking->prepared_for(), 64);
  EXPECT_EQ(shrinking->batches_refused(), 0);
  EXPECT_EQ(fixed->batches_refused(), 0);
}

TEST(GpuJpeg, TheHardwareDecoderWithoutItsPipelineGivesTheSamePixels) {
  // The default (no pipeline) against nvJPEG's pipelined hardware decoder: the same pixels, batch
  // after batch, for every count of files (with and without fillers).
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  std::string why;
  auto settings = nvjpeg_settings(true, true);
  settings.pipeline = false;
  const auto plain = resnet::make_gpu_jpeg_decoder(0, why, settings);
  if (!plain) GTEST_SKIP() << why;
  settings.pipeline = true;
  const auto pipelined = resnet::make_gpu_jpeg_decoder(0, why, settings);
  ASSERT_TRUE(pipelined) << why;
  ASSERT_EQ(plain->backend(), pipelined->backend());
  if (plain->backend() != "hardware") GTEST_SKIP() << "nvJPEG's " << plain->backend() << " backend has no pipeline";
  EXPECT_FALSE(plain->pipelined());
  EXPECT_TRUE(pipelined->pipelined());
  const GpuFiles g = files_the_gpu_takes(*plain);
  ASSERT_GE(g.files.size(), 4u);
  std::vector<size_t> order(g.files.size());
  std::iota(order.begin(), order.end(), size_t{0});
  for (size_t n = order.size(); n >= 1; --n) {
    const std::vector<size_t> some(order.rbegin(), order.rbegin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_TRUE(torch::equal(decode_on_gpu(*plain, g, some).cpu(), decode_on_gpu(*pipelined, g, some).cpu()))
        << n << " files";
  }
  EXPECT_EQ(plain->batches_refused(), 0);
  EXPECT_EQ(pipelined->batches_refused(), 0);
}

TEST(GpuJpeg, StreamedBatchesMixBothDecoders) {
  // A whole batch of gpu/ gathered with --gpu-decode: the sizes and labels of the CPU path; the
  // files that stay on the CPU (grey, CMYK, PNG) bitwise the same; the decoder used.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  std::string why;
  if (!resnet::make_gpu_jpeg_decoder(0, why)) GTEST_SKIP() << why;
  const auto index = resnet::index_image_folder(fixture("gpu/train"));
  const auto n = static_cast<int64_t>(index.files.size());
  const auto all = torch::arange(n);
  const torch::Device cuda(torch::kCUDA, 0);
  const auto cpu = resnet::streaming_source(index, false)->gather(all, cuda);
  const auto gpu_source = resnet::streaming_source(index, false, 0);
  EXPECT_NE(gpu_source->description().find("nvJPEG"), std::string::npos) << gpu_source->description();
  // Three times: from the second batch on, a share of the JPEGs is decoded on the CPU beside the
  // GPU (the split follows the measured rates), and the batch must not change but for that.
  for (int round = 0; round < 3; ++round) {
    const auto gpu = gpu_source->gather(all, cuda);
    ASSERT_TRUE(torch::equal(cpu.sizes, gpu.sizes)) << "round " << round;
    EXPECT_TRUE(torch::equal(cpu.labels.cpu(), gpu.labels.cpu())) << "round " << round;
    for (int64_t i = 0; i < n; ++i) {
      const std::string name = std::filesystem::path(index.files[i]).filename().string();
      const auto diff = (cpu.images[i].to(torch::kFloat) - gpu.images[i].to(torch::kFloat)).abs();
      if (name == "grey.JPEG" || name == "cmyk.JPEG" || name == "png.JPEG") {
        EXPECT_EQ(diff.max().item<double>(), 0.0) << name << ", round " << round;
      } else {
        EXPECT_LE(diff.mean().item<double>(), 8.0) << name << ", round " << round;
      }
    }
  }
  // With a CropPlan (the training loader's): the CPU's share decodes only the crops; the batch,
  // once transformed, is the CPU path's within the decoders' differences.
  std::vector<uint64_t> seeds;
  for (int64_t i = 0; i < n; ++i) seeds.push_back(77 + static_cast<uint64_t>(i));
  const resnet::TrainCropOptions crop;
  resnet::CropPlan plan;
  plan.output_size = 32;
  plan.box = [&](int64_t row, int64_t height, int64_t width) {
    std::mt19937_64 rng(seeds[static_cast<size_t>(row)]);
    return resnet::random_resized_crop_box(height, width, rng, crop);
  };
  const auto cpu_planned = resnet::streaming_source(index, false)->gather(all, cuda, &plan);
  const auto gpu_planned = gpu_source->gather(all, cuda, &plan);
  ASSERT_TRUE(gpu_planned.regions.defined());
  const auto want = resnet::train_transform(cpu_planned, 32, seeds, {}, crop);
  const auto got = resnet::train_transform(gpu_planned, 32, seeds, {}, crop);
  const double mean = (want - got).abs().mean().item<double>();
  std::cout << "planned crops, GPU against CPU decoding: mean " << mean << " (normalised units)\n";
  EXPECT_LE(mean, 0.15);
  const auto stats = gpu_source->decode_stats();
  std::cout << "GPU " << stats.gpu_images << " images in " << stats.gpu_s << " s, CPU " << stats.cpu_images << " in "
            << stats.cpu_s << " s\n";
  EXPECT_EQ(stats.gpu_images + stats.cpu_images, 4 * n);
  EXPECT_GT(stats.gpu_images, 0);
}

TEST(GpuJpeg, TheGpuSplitLeavesTheCpuOnlyTheFilesItRefuses) {
  // RESNET_NVJPEG_SPLIT=gpu: in every batch (gpu/'s files 12 times over, so that from the second
  // the rates measured could move JPEGs beyond the decoder's slack) nvJPEG decodes each file it
  // takes and the CPU only the others; =0.5, half the files it takes (rounded) and the CPU the
  // rest; the batch is the CPU path's within the decoders' differences, and the source says which
  // split it runs. (Which split moves what: TheSplitDecidesWhatMovesToTheCpu.)
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  std::string why;
  auto probe = resnet::make_gpu_jpeg_decoder(0, why);
  if (!probe) GTEST_SKIP() << why;
  const auto taken = static_cast<int64_t>(files_the_gpu_takes(*probe).files.size());
  const auto index = resnet::index_image_folder(fixture("gpu/train"));
  const auto n = static_cast<int64_t>(index.files.size());
  ASSERT_GT(taken, 0);
  ASSERT_LT(taken, n);  // (gpu/ has files only the CPU decodes)
  constexpr int64_t kTimes = 12;
  const auto all = torch::arange(n).repeat({kTimes});
  const torch::Device cuda(torch::kCUDA, 0);
  const auto cpu = resnet::streaming_source(index, false)->gather(all, cuda);
  // (the share without fixed counts: with them the decoder would keep a count set up for within
  // the slack of the share's, here 6 images)
  for (const auto& [value, fixed, note, on_gpu] : std::vector<std::tuple<const char*, const char*, const char*, int64_t>>{
           {"gpu", "1", "every JPEG it takes", kTimes * taken}, {"0.5", "0", "50% of the JPEGs it takes", (kTimes * taken + 1) / 2}}) {
    const resnet::test::ScopedEnv split("RESNET_NVJPEG_SPLIT", value);
    const resnet::test::ScopedEnv counts("RESNET_NVJPEG_FIXED_COUNT", fixed);
    const auto gpu_source = resnet::streaming_source(index, false, 0);
    expect_contains(gpu_source->description(), note);
    for (int round = 0; round < 4; ++round) {
      const auto gpu = gpu_source->gather(all, cuda);
      EXPECT_EQ(gpu.decode.gpu_images, on_gpu) << value << ", round " << round;
      EXPECT_EQ(gpu.decode.cpu_images, kTimes * n - on_gpu) << value << ", round " << round;
      ASSERT_TRUE(torch::equal(cpu.sizes, gpu.sizes)) << value << ", round " << round;
      EXPECT_TRUE(torch::equal(cpu.labels.cpu(), gpu.labels.cpu())) << value << ", round " << round;
      const auto diff = (cpu.images.to(torch::kFloat) - gpu.images.to(torch::kFloat)).abs();
      EXPECT_LE(diff.mean().item<double>(), 8.0) << value << ", round " << round;
    }
  }
}

// --skip-bad-images with --gpu-decode: a file whose header reads but whose pixels do not (a PNG cut
// short: the CPU's to decode) loses its slot in the GPU's batch, which then equals the CPU path's.
TEST(GpuJpeg, AFileTheCpuFailsToDecodeLeavesTheGpuBatch) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  std::string why;
  if (!resnet::make_gpu_jpeg_decoder(0, why)) GTEST_SKIP() << why;
  resnet::test::TempDir dir;
  std::filesystem::copy(fixture("gpu/train"), dir.path(), std::filesystem::copy_options::recursive);
  {
    std::ifstream png(dir.path() / "b" / "png.JPEG", std::ios::binary);
    std::string head(60, '\0');
    png.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(dir.path() / "b" / "broken.JPEG", std::ios::binary) << head;
  }
  const auto index = resnet::index_image_folder(dir.path().string());
  const auto n = static_cast<int64_t>(index.files.size());
  const auto all = torch::arange(n);
  const torch::Device cuda(torch::kCUDA, 0);
  const auto cpu = resnet::streaming_source(index, true)->gather(all, cuda);
  ASSERT_EQ(cpu.images.size(0), n - 1);
  const auto gpu_source = resnet::streaming_source(index, true, 0);
  for (int round = 0; round < 3; ++round) {  // (from the second, some JPEGs are the CPU's too)
    const auto gpu = gpu_source->gather(all, cuda);
    ASSERT_EQ(gpu.images.size(0), n - 1) << "round " << round;
    ASSERT_TRUE(torch::equal(cpu.sizes, gpu.sizes)) << "round " << round;
    EXPECT_TRUE(torch::equal(cpu.labels.cpu(), gpu.labels.cpu())) << "round " << round;
    // Row by row over each image (the batch's rows are the files but broken.JPEG, in order): the
    // CPU's files bitwise, the JPEGs within the decoders' differences.
    int64_t row = 0;
    for (const auto& file : index.files) {
      const std::string name = std::filesystem::path(file).filename().string();
      if (name == "broken.JPEG") continue;
      const int64_t h = cpu.sizes[row][0].item<int64_t>(), w = cpu.sizes[row][1].item<int64_t>();
      const auto region = [&](const torch::Tensor& images) {
        return images[row].narrow(1, 0, h).narrow(2, 0, w).to(torch::kCPU, torch::kFloat);
      };
      const auto diff = (region(cpu.images) - region(gpu.images)).abs();
      if (name == "grey.JPEG" || name == "cmyk.JPEG" || name == "png.JPEG") {
        EXPECT_EQ(diff.max().item<double>(), 0.0) << name << ", round " << round;
      } else {
        EXPECT_LE(diff.mean().item<double>(), 8.0) << name << ", round " << round;
      }
      ++row;
    }
    EXPECT_EQ(row, n - 1);
  }
}

TEST(GpuJpeg, EachEpochSaysHowItsDecodingSplit) {
  // `train --gpu-decode` on gpu/train (8 files: 4 colour baseline JPEGs the engines take, and a
  // progressive, grey, CMYK and PNG-named file only the CPU decodes), 2 held out of the same
  // streamed source: each epoch's report counts its 6 training images once, between nvJPEG and the
  // CPU (the held-out test's decoding, from the same source, not among them), with times; and how
  // long the GPU sat between its 3 steps (at least the batches' transforms, less than the epoch),
  // and how much of that the transforms took (marked as each batch arrived).
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  std::string why;
  if (!resnet::make_gpu_jpeg_decoder(0, why)) GTEST_SKIP() << why;
  resnet::test::TempDir dir;
  fs::copy(fixture("gpu/train"), dir.path() / "train", fs::copy_options::recursive);
  resnet::TrainOptions o;
  o.model = "resnet18";
  o.data = dir.path().string();
  o.device = "cuda";
  o.gpu_decode = true;
  o.holdout = 2;
  o.epochs = 3;
  o.batch_size = 2;
  o.image_size = 32;
  o.checkpoint_dir = (dir.path() / "ck").string();
  o.restart = true;
  struct Epochs : resnet::TrainReporter {
    std::vector<resnet::EpochReport> seen;
    void epoch_end(const resnet::EpochReport& e) override { seen.push_back(e); }
  } epochs;
  resnet::train(o, epochs);
  ASSERT_EQ(epochs.seen.size(), 3u);
  for (const auto& e : epochs.seen) {
    const auto& d = e.decode;
    EXPECT_EQ(d.gpu_images + d.cpu_images, 6) << "epoch " << e.epoch;
    EXPECT_GE(d.cpu_images, 1) << "epoch " << e.epoch;  // (of the four only the CPU decodes, those held out aside)
    EXPECT_GT(d.cpu_s, 0.0) << "epoch " << e.epoch;
    EXPECT_GT(d.read_s, 0.0) << "epoch " << e.epoch;
    if (d.gpu_images > 0) {
      EXPECT_GT(d.gpu_s, 0.0) << "epoch " << e.epoch;
    }
    EXPECT_GT(e.gpu_between_steps, 0.0) << "epoch " << e.epoch;
    EXPECT_LT(e.gpu_between_steps, e.seconds) << "epoch " << e.epoch;
    EXPECT_GT(e.gpu_transforming, 0.0) << "epoch " << e.epoch;  // (each batch's transform, on the GPU)
    EXPECT_LE(e.gpu_transforming, e.gpu_between_steps) << "epoch " << e.epoch;
  }
  int64_t on_gpu = 0;
  for (const auto& e : epochs.seen) on_gpu += e.decode.gpu_images;
  EXPECT_GT(on_gpu, 0);
}

TEST(GpuJpeg, GathersAtOnceShareTheDecoders) {
  // With --gpu-decode the loader's five gathers at once each take a decoder of the source's pool:
  // every batch of two epochs is the CPU path's within the decoders' differences, in order, and
  // every image is counted once in the figures.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  const resnet::test::ScopedEnv default_count("RESNET_GATHERS_AT_ONCE", nullptr);
  std::string why;
  if (!resnet::make_gpu_jpeg_decoder(0, why)) GTEST_SKIP() << why;
  const auto index = resnet::index_image_folder(fixture("gpu/train"));
  const torch::Device cuda(torch::kCUDA, 0);
  resnet::LoaderOptions o;
  o.batch_size = 4;
  o.image_size = 32;
  o.seed = 9;
  const auto gpu_source = resnet::streaming_source(index, false, 0);
  EXPECT_EQ(gpu_source->gathers_at_once(), 5);  // (three when the CPU decodes: ImageFolder's test)
  const auto got = all_batches(gpu_source, o, cuda, 2);
  const auto want = all_batches(resnet::with_gathers_at_once(resnet::streaming_source(index, false), 1), o, cuda, 2);
  ASSERT_EQ(got.size(), want.size());
  for (size_t b = 0; b < got.size(); ++b) {
    EXPECT_TRUE(torch::equal(got[b].second, want[b].second)) << "batch " << b;
    EXPECT_LE((got[b].first - want[b].first).abs().mean().item<double>(), 0.15) << "batch " << b;
  }
  const auto stats = gpu_source->decode_stats();
  EXPECT_EQ(stats.gpu_images + stats.cpu_images, 2 * static_cast<int64_t>(index.files.size()));
  EXPECT_GT(stats.gpu_images, 0);
}
#endif

// ---- ImageNet's validation layout -----------------------------------------------------------

TEST(ImageNetVal, SortsTheFlatFolderByTheDevkitsGroundTruth) {
  // The devkit as scipy.io.savemat writes meta.mat (compressed in the folder, not in the archive):
  // ids 1-5 map to their WNIDs; the six images move into their class folders; a second run moves
  // nothing; a missing image stops it before anything moves.
  const auto kit_dir = fixture("imagenet/devkit");
  if (!std::filesystem::exists(kit_dir)) GTEST_SKIP() << "no devkit fixture (scipy was missing)";
  const auto kit = resnet::read_imagenet_devkit(kit_dir);
  const auto from_tar = resnet::read_imagenet_devkit(fixture("imagenet/devkit.tar.gz"));
  const std::map<int64_t, std::string> want{
      {1, "n02119789"}, {2, "n01440764"}, {3, "n04592741"}, {4, "n09999999"}, {5, "n00001740"}};
  EXPECT_EQ(kit.wnid_of_id, want);
  EXPECT_EQ(from_tar.wnid_of_id, want);
  EXPECT_EQ(kit.ground_truth, (std::vector<int64_t>{2, 1, 3, 1, 2, 4}));
  EXPECT_EQ(from_tar.ground_truth, kit.ground_truth);
  EXPECT_EQ(resnet::imagenet_val_name(7), "ILSVRC2012_val_00000007.JPEG");

  const auto val = std::filesystem::temp_directory_path() / ("resnet-val-" + std::to_string(::getpid()));
  std::filesystem::remove_all(val);
  std::filesystem::create_directories(val);
  for (int k = 1; k <= 5; ++k) std::ofstream(val / resnet::imagenet_val_name(k)) << k;
  try {  // image 6 is missing: nothing moves
    resnet::sort_imagenet_val(val.string(), kit);
    ADD_FAILURE() << "sorted with an image missing";
  } catch (const resnet::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("ILSVRC2012_val_00000006.JPEG: missing"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::filesystem::exists(val / resnet::imagenet_val_name(1)));
  std::ofstream(val / resnet::imagenet_val_name(6)) << 6;
  auto refused = [&](const std::string& want) {
    try {
      resnet::sort_imagenet_val(val.string(), kit);
      ADD_FAILURE() << "sorted despite: " << want;
    } catch (const resnet::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("nothing was moved"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(std::filesystem::exists(val / resnet::imagenet_val_name(1)));
  };
  std::ofstream(val / "n09999999") << "a file where a class folder goes";
  refused("n09999999: is a file where its class folder goes");
  std::filesystem::remove(val / "n09999999");
  const auto sorted = resnet::sort_imagenet_val(val.string(), kit);
  EXPECT_EQ(sorted.moved, 6);
  EXPECT_EQ(sorted.classes, 4);
  const char* where[] = {"n01440764", "n02119789", "n04592741", "n02119789", "n01440764", "n09999999"};
  for (int k = 1; k <= 6; ++k) {
    const auto moved = val / where[k - 1] / resnet::imagenet_val_name(k);
    ASSERT_TRUE(std::filesystem::exists(moved)) << moved;
    std::string content;
    std::ifstream(moved) >> content;
    EXPECT_EQ(content, std::to_string(k));
    EXPECT_FALSE(std::filesystem::exists(val / resnet::imagenet_val_name(k)));
  }
  const auto again = resnet::sort_imagenet_val(val.string(), kit);
  EXPECT_EQ(again.moved, 0);
  EXPECT_EQ(again.already, 6);
  std::ofstream(val / resnet::imagenet_val_name(1)) << "again";  // flat and sorted both: which is it?
  refused("ILSVRC2012_val_00000001.JPEG: also in");
  std::filesystem::remove(val / resnet::imagenet_val_name(1));
  // the split now reads as an image folder with the training split's class names
  EXPECT_EQ(resnet::index_image_folder(val.string()).classes,
            (std::vector<std::string>{"n01440764", "n02119789", "n04592741", "n09999999"}));
  std::filesystem::remove_all(val);
}

TEST(Mat5, ReadsCellsCharsAndNumbersAsScipyWritesThem) {
  // fuzz/corpus/mat5/cell.mat (scipy.io.savemat, fuzz/make_corpus.py): c = {'text', int16 [[0, 1],
  // [2, 3]], single 1.5} and u = uint8 7; numbers column-major, as MATLAB keeps them.
  const std::string path = std::string(RESNET_SOURCE_DIR) + "/fuzz/corpus/mat5/cell.mat";
  const auto vars = resnet::read_mat5(resnet::read_file_bytes(path), path);
  ASSERT_EQ(vars.count("c"), 1u);
  const auto& c = vars.at("c");
  EXPECT_EQ(c.kind, resnet::MatArray::Kind::kCell);
  EXPECT_EQ(c.dims, (std::vector<int64_t>{1, 3}));
  ASSERT_EQ(c.elements.size(), 3u);
  EXPECT_EQ(c.elements[0].kind, resnet::MatArray::Kind::kChar);
  EXPECT_EQ(c.elements[0].text, "text");
  EXPECT_EQ(c.elements[1].numbers, (std::vector<double>{0, 2, 1, 3}));
  EXPECT_EQ(c.elements[2].numbers, (std::vector<double>{1.5}));
  EXPECT_EQ(vars.at("u").numbers, (std::vector<double>{7}));
  EXPECT_EQ(vars.at("u").count(), 1);
}

TEST(Mat5, FormerFuzzFindingsAreRefusedInOurWords) {
  // fuzz/regressions/mat5/: a struct array whose dimensions element was empty (read as one element
  // while count() said none); now refused for lacking its two dimensions.
  const auto dir = std::filesystem::path(RESNET_SOURCE_DIR) / "fuzz/regressions/mat5";
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    ++files;
    try {
      for (const auto& [name, a] : resnet::read_mat5(resnet::read_file_bytes(entry.path().string()), "x.mat"))
        if (a.kind == resnet::MatArray::Kind::kStruct) {
          EXPECT_EQ(a.elements.size(), static_cast<size_t>(a.count()) * a.fields.size()) << entry.path();
        }
    } catch (const resnet::InputError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("x.mat: ", 0), 0u) << e.what();
    }
  }
  EXPECT_GE(files, 1);
}

TEST(ImageNetVal, BadDevkitsAreNamed) {
  const auto kit_dir = fixture("imagenet/plain");
  if (!std::filesystem::exists(kit_dir)) GTEST_SKIP() << "no devkit fixture (scipy was missing)";
  const auto meta = resnet::read_file_bytes(kit_dir + "/data/meta.mat");
  // every cut of the file is refused in our words, naming it (never a crash or a hang)
  for (size_t cut = 0; cut < meta.size(); cut += 7) {
    const std::vector<uint8_t> part(meta.begin(), meta.begin() + static_cast<std::ptrdiff_t>(cut));
    try {
      const auto vars = resnet::read_mat5(part, "cut.mat");
      EXPECT_FALSE(vars.count("synsets") && vars.at("synsets").count() == 5) << "cut at " << cut;
    } catch (const resnet::InputError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("cut.mat: ", 0), 0u) << e.what();
    }
  }
  try {
    resnet::read_imagenet_devkit(fixture("gpu"));
    ADD_FAILURE() << "a folder without meta.mat was read";
  } catch (const resnet::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("holds no data/meta.mat"), std::string::npos) << e.what();
  }
}

// ---- MD5 and archives -------------------------------------------------------------------------

TEST(Md5, KnownDigests) {
  // RFC 1321, appendix A.5
  auto md5 = [](const std::string& s) {
    resnet::Md5 m;
    m.update(s.data(), s.size());
    return m.hex_digest();
  };
  EXPECT_EQ(md5(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5("abc"), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(md5("12345678901234567890123456789012345678901234567890123456789012345678901234567890"),
            "57edf4a22be3c955ac49da2e2107b67a");
}

TEST(Archive, FormerFuzzCrashesAreRefusedInOurWords) {
  // Inputs fuzz/fuzz_archive found (fuzz/regressions/archive/): a damaged zip for which libarchive
  // has no error text (a NULL message once crashed the error's formatting).
  const std::filesystem::path dir = std::filesystem::path(RESNET_SOURCE_DIR) / "fuzz/regressions/archive";
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    ++files;
    resnet::test::TempDir out;
    const std::string path = entry.path().string();
    expect_contains(input_error_of([&] { resnet::extract_archive(path, (out.path() / "x").string()); }), path + ": ");
  }
  EXPECT_GT(files, 0);
}

TEST(Archive, UnpacksAGoodOneAndRefusesEscapesAndCorruption) {
  resnet::test::TempDir dir;
  resnet::extract_archive(fixture("archives/good.tar.gz"), (dir.path() / "good").string());
  EXPECT_TRUE(fs::exists(dir.path() / "good/cifar-10-batches-bin/test_batch.bin"));
  EXPECT_EQ(fs::file_size(dir.path() / "good/cifar-10-batches-bin/test_batch.bin"), 7u * 3073u);

  const auto dotdot = fixture("archives/dotdot.tar.gz");
  expect_contains(input_error_of([&] { resnet::extract_archive(dotdot, (dir.path() / "a/b").string()); }),
                  dotdot + ": refusing entry '../escape.txt'");
  EXPECT_FALSE(fs::exists(dir.path() / "a/escape.txt"));
  EXPECT_FALSE(fs::exists(dir.path() / "a/b"));  // refused before anything was written
  const auto absolute = fixture("archives/absolute.tar.gz");
  expect_contains(input_error_of([&] { resnet::extract_archive(absolute, (dir.path() / "c").string()); }),
                  "refusing entry '/tmp/resnet-absolute-entry.txt'");
  const auto corrupt = fixture("archives/corrupt.tar.gz");
  expect_contains(input_error_of([&] { resnet::extract_archive(corrupt, (dir.path() / "d").string()); }),
                  corrupt + ": corrupt archive");
  EXPECT_FALSE(fs::exists(dir.path() / "d"));
}
