// What the readers produce and the loader consumes.
//
// A split of a data set is an ImageSource: N labelled images and the class names. `gather`
// returns a RawBatch: the chosen images as uint8, padded to the largest in the batch, with each
// image's own size, on the device asked for. The transforms (transforms.h) turn a RawBatch into
// the model's float input in one batched operation.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace resnet {

enum class Split { kTrain, kTest };

const char* split_name(Split split);

// What a streamed source's GPU decoding did so far (data_bench loader reports it): the images each
// side decoded and the seconds it took (the two sides run at once), and the seconds spent reading
// files and headers before them. All zero for other sources.
struct DecodeStats {
  int64_t gpu_images = 0, cpu_images = 0;
  double gpu_s = 0, cpu_s = 0, read_s = 0;
  double headers_s = 0;  // with --gpu-decode: the headers read (one thread), after read_s's reading
  int64_t gpu_setups = 0;  // times a GPU decoder set nvJPEG up again (GpuJpegDecoder::setups)
  // With --gpu-decode, the rest of a gather: the batch zeroed on the GPU before nvJPEG writes it;
  // after nvJPEG's call, waiting for the CPU's part to end; the CPU's rows (and the labels) uploaded
  double zeros_s = 0, cpu_wait_s = 0, upload_s = 0;

  DecodeStats& operator+=(const DecodeStats& o) {
    gpu_images += o.gpu_images, cpu_images += o.cpu_images;
    gpu_s += o.gpu_s, cpu_s += o.cpu_s, read_s += o.read_s, headers_s += o.headers_s;
    gpu_setups += o.gpu_setups;
    zeros_s += o.zeros_s, cpu_wait_s += o.cpu_wait_s, upload_s += o.upload_s;
    return *this;
  }
};

struct RawBatch {
  RawBatch() = default;
  RawBatch(torch::Tensor images_, torch::Tensor sizes_, torch::Tensor labels_)
      : images(std::move(images_)), sizes(std::move(sizes_)), labels(std::move(labels_)) {}
  torch::Tensor images;  // uint8 [B, 3, Hmax, Wmax]; image b fills [:, :h_b, :w_b], zeros beyond
  torch::Tensor sizes;   // int64 [B, 2]: (h_b, w_b), on the CPU
  torch::Tensor labels;  // int64 [B], on the images' device
  // Where a source decoded only what a CropPlan asked for, all on the CPU: `regions` float64
  // [B, 3], image b being its file's pixels from (top, left) at scale s (decode.h's DecodedRegion);
  // `crops` int64 [B, 4], the plan's box (top, left, height, width) in the file's pixels; and
  // `file_sizes` int64 [B, 2]. Undefined: each image whole, at scale 1 (sizes are the files').
  torch::Tensor regions, crops, file_sizes;
  DecodeStats decode;  // what gathering this batch took, where the source says (zero elsewhere)
  // When the Loader asked for this batch, and when a gathering thread started and finished it
  // (seconds on the Loader's clock; for RESNET_LOADER_TRACE); zero from a source called directly.
  struct Times {
    double asked = 0, started = 0, finished = 0;
  } times;
};

// A box of an image's pixels (the training crop; transforms.h).
struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

// What the training transform will cut from each image of a batch, for a source that can decode
// only that (streamed image folders): the crop of the batch's row `row` for an image of height x
// width, drawn as the transform will draw it, and the size the crop is then resized to.
struct CropPlan {
  std::function<CropBox(int64_t row, int64_t height, int64_t width)> box;
  int64_t output_size = 0;
};

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual int64_t size() const = 0;
  virtual const std::vector<std::string>& classes() const = 0;
  virtual torch::Tensor labels() const = 0;  // int64 [N], CPU
  // `indices`: int64 [B] on the CPU, each in [0, size()). A source may use `plan` to decode only
  // the crops (RawBatch's regions); others ignore it.
  virtual RawBatch gather(const torch::Tensor& indices, const torch::Device& device, const CropPlan* plan = nullptr) = 0;
  // Where it came from, for messages ("data/cifar10/cifar-10-batches-bin (CIFAR-10 binary)").
  virtual std::string description() const = 0;
  virtual DecodeStats decode_stats() const { return {}; }
  // How many gather() calls the Loader keeps running at once, on threads of their own (this source
  // must then be safe to call so): more than one where a batch's gathering has stretches that
  // leave the cores or the GPU's JPEG engines idle (a streamed folder: reading, the last slow
  // images of a batch), which another batch's gathering fills.
  virtual int gathers_at_once() const { return 1; }
};

// A whole split decoded in memory: uint8 [N, 3, H, W] (all images one size), labels int64 [N].
struct LabeledImages {
  torch::Tensor images;
  torch::Tensor labels;
  std::vector<std::string> classes;
};

// An ImageSource over images already decoded in memory. `device` is where the pixels live
// (the GPU, when they fit there: then a batch never crosses the bus).
std::shared_ptr<ImageSource> in_memory_source(LabeledImages data, const torch::Device& device,
                                              std::string description);

// `source` with the Loader's gathers at once set to `gathers` (at least 1; at most what `source`
// is safe for, which the caller knows): for benchmarks and tests of the pipelining.
std::shared_ptr<ImageSource> with_gathers_at_once(std::shared_ptr<ImageSource> source, int gathers);

// A split parted in two for model selection (`train --holdout N`): {the rest, the held-out part},
// each an ImageSource over the same images (nothing copied). `count` images are held out, each
// class in proportion to its share of the split (largest remainders, ties to the lower class
// index), chosen by a fixed generator: the same images on every run, whatever --seed, so runs
// with different settings are compared on one validation set. Both parts keep the split's order.
// UsageError unless 0 < count < size.
std::pair<std::shared_ptr<ImageSource>, std::shared_ptr<ImageSource>> hold_out(std::shared_ptr<ImageSource> source,
                                                                               int64_t count);

}  // namespace resnet
