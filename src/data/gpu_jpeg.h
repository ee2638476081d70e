// JPEG decoding on the GPU with nvJPEG (issue 15): batched, with the GPU's hardware JPEG engines
// where it has them (A100, H100, H200: NVJPEG_BACKEND_HARDWARE), else nvJPEG's hybrid decoder
// (Huffman on the CPU, the rest on the GPU). Images it does not take (CMYK/YCCK, grey, PNG, and
// for the hardware engines progressive or 4:1:0/4:1:1 files) stay with the CPU path
// (data/decode.h), so every file the CPU path decodes still decodes.
//
// Built where nvJPEG's header and library were found (PyPI's nvidia-nvjpeg; scripts/install-deps
// installs it for a CUDA wheel); elsewhere make_gpu_jpeg_decoder gives none.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace resnet {

class GpuJpegDecoder {
 public:
  virtual ~GpuJpegDecoder() = default;
  // Whether this decoder takes the file `bytes` (a whole JPEG, ending in its EOI marker, of a
  // kind it decodes), and its size. Not thread-safe: one caller at a time.
  virtual bool accepts(const std::vector<uint8_t>& bytes, int64_t& height, int64_t& width) = 0;
  // Decodes files[i] (each accepted) into images[slots[i]], at its top left: `images` is uint8
  // [B, 3, H, W], contiguous, on this decoder's GPU, with H and W at least each file's. Runs on
  // `stream` (a cudaStream_t) and waits for it. "" when done; else nvJPEG's reason (such as a
  // file whose header passed but whose data is bad), and nothing is known of the images.
  virtual std::string decode(const std::vector<const std::vector<uint8_t>*>& files, const std::vector<int64_t>& slots,
                             torch::Tensor& images, void* stream) = 0;
  // "hardware" (the GPU's JPEG engines), "gpu-hybrid" or "hybrid" (GpuJpegSettings::backend)
  virtual std::string backend() const = 0;
  // Whether nvJPEG's buffers are set up ahead for the images to come (the hardware decoder, unless
  // make_gpu_jpeg_decoder was asked not to), so that decoding takes and frees none: each free waits
  // for all the GPU's queued work, the training step's included.
  virtual bool preallocates() const = 0;
  // The image size they are set up for now (0 x 0: none yet): the largest seen, rounded up.
  struct ImageSize {
    int64_t height = 0, width = 0;
  };
  virtual ImageSize preallocated() const = 0;
  // How many files decode() was last set up for (0: none yet). Without fixed counts, a call with
  // another count sets nvJPEG's state up again (nvjpegDecodeBatchedInitialize, which frees and
  // takes its buffers); with them, only a call with more files does (and, with shrinks(), one
  // after a run of calls that were mostly fillers).
  virtual int64_t prepared_for() const = 0;
  // Whether a call with fewer files than prepared_for() is filled up to it with tiny images (whose
  // pixels go to a buffer of the decoder's own) rather than setting nvJPEG up again (shrinks() aside).
  virtual bool fixed_count() const = 0;
  // Whether nvJPEG's hardware decoder runs with its pipeline (GpuJpegSettings::pipeline, or where
  // nvJPEG refused the flag that turns it off); false for the other backends, which have none.
  virtual bool pipelined() const = 0;
  // Whether, with fixed counts, the decoder sets itself up again for fewer files where many calls
  // in a row were mostly fillers (GpuJpegSettings::shrink; false without fixed counts).
  virtual bool shrinks() const = 0;

  int64_t images_decoded() const { return images_decoded_; }
  int64_t batches_refused() const { return batches_refused_; }
  // How often decode() set nvJPEG up again: for another count of files, or its buffers for larger
  // images (each frees and takes nvJPEG's buffers, which waits for all the GPU's queued work).
  int64_t setups() const { return setups_; }

 protected:
  int64_t images_decoded_ = 0, batches_refused_ = 0, setups_ = 0;
};

// Whether this build has nvJPEG.
bool gpu_jpeg_built();

// How many of a batch's `eligible` JPEGs (ones the GPU decoder takes) to decode on the CPU instead,
// beside the `forced` files only the CPU decodes, so that both sides, running at once, finish
// together at their measured rates (images a second: the CPU's with all its cores, the GPU
// decoder's). Where a rate is not measured yet (0): none, or an eighth of `eligible` when `forced`
// is 0, so that the CPU's rate gets measured. The hardware engines alone decode about as fast as
// the CPU cores of a GPU machine, so each side roughly doubles the other.
int64_t jpegs_for_the_cpu(int64_t eligible, int64_t forced, double cpu_rate, double gpu_rate);

// How many of a batch's `eligible` JPEGs the GPU decoder takes: `ideal` (eligible less the CPU's
// share above), or `prepared` (the count the decoder is set up for, decode()'s prepared_for) where
// that is within `slack` of `ideal` and at most `eligible`, so that the decoder keeps its count
// from batch to batch (the CPU's share varies with each batch's files) and is not set up again
// for each.
int64_t jpegs_for_the_gpu(int64_t eligible, int64_t ideal, int64_t prepared, int64_t slack);

// Which nvJPEG backend decodes, how the decoder keeps nvJPEG from freeing and taking buffers
// from batch to batch (each such free waits for all the GPU's queued work, the training step's
// included), and how a batch's JPEGs are split between it and the CPU. The environment variables
// RESNET_NVJPEG_BACKEND, RESNET_NVJPEG_PREALLOCATE=0, RESNET_NVJPEG_FIXED_COUNT=0,
// RESNET_NVJPEG_PIPELINE=1, RESNET_NVJPEG_SHRINK=1 and RESNET_NVJPEG_SPLIT=gpu|SHARE set them, to
// measure what each gives (PREALLOCATE, FIXED_COUNT, PIPELINE and SHRINK: "0" is off, any other
// value on).
struct GpuJpegSettings {
  bool preallocate = true;  // the hardware decoder's buffers set up ahead for the largest images seen
  bool fixed_count = true;  // batches filled up to the count set up for (fixed_count())
  // With fixed counts, set up again for fewer files after 8 calls of a decoder in a row that each
  // left a quarter or more of the count to fillers: for their largest count plus an eighth. (The
  // balanced split gave nvJPEG 95-107 real images of a count of 224-256 beside the training step,
  // the rest fillers, each an image to nvJPEG's per-image work; to measure: off by default.)
  bool shrink = false;
  // nvJPEG's hardware decoder with its pipeline (off: NVJPEG_FLAGS_HW_DECODE_NO_PIPELINE). Without
  // it, beside the training step, a gather's GPU part decoded 3-5x more images a second and
  // `resnet train --gpu-decode` ran 9-11% faster (H200, 2026-12-02; docs/PERFORMANCE.md)
  bool pipeline = false;
  // "" (the hardware engines where the GPU has them, else "hybrid"), "hardware", "gpu-hybrid"
  // (Huffman decoding on the GPU's cores for batches of over 50 baseline files) or "hybrid"
  // (Huffman decoding on the CPU, the rest on the GPU)
  std::string backend;
  // Which JPEGs the GPU decodes (RESNET_NVJPEG_SPLIT): kBalanced, a share sized so that the GPU and
  // the CPU finish together at their measured rates (jpegs_for_the_cpu); kGpu, every JPEG the
  // decoder takes, the CPU only the files it refuses. (With fixed counts, beside the training step,
  // a call of the hardware decoder took about as long whatever the images it had among its
  // fillers: 92-118 ms, median, for 25 or for 150 of them with five gathers at once; the balanced
  // split, reading that as a slow GPU, gave it 29-38% of the images, and the CPU's 16 cores
  // decoded the rest. H200, 2026-12-02.) kShare (RESNET_NVJPEG_SPLIT=0.6, say): that share of the
  // JPEGs the decoder takes, the rest to the CPU. (The gpu split trained 9-10% slower than the
  // balanced one, its nvJPEG call taking 161-169 ms, median, for 90% of the images against 109-117
  // ms for 37-42%: beside the step, the engines' path slows with its images too; H200,
  // 2026-12-02, sixth session.)
  enum class Split { kBalanced, kGpu, kShare };
  Split split = Split::kBalanced;
  double gpu_share = 1;  // kShare's share, in (0, 1]
  // The settings the environment gives; a UsageError naming the variable for a value it does not
  // know (RESNET_NVJPEG_SPLIT: "balanced", "gpu" or a share over 0 and at most 1).
  static GpuJpegSettings from_environment();
};

// How many of a batch's `eligible` JPEGs go to the CPU, the last ones, by `how`'s split: with
// Split::kGpu none; with kBalanced jpegs_for_the_cpu's share at the measured rates; with kShare the
// rest of the GPU's share; the last two less what keeps the decoder at the count it is `prepared`
// for (jpegs_for_the_gpu, within `slack`).
int64_t jpegs_moved_to_the_cpu(const GpuJpegSettings& how, int64_t eligible, int64_t forced, double cpu_rate,
                               double gpu_rate, int64_t prepared, int64_t slack);

// A decoder for CUDA device `device_index`, or none (nullptr) where this build lacks nvJPEG or
// nvJPEG cannot start on that GPU (the reason in `why`). No settings given: from_environment().
std::unique_ptr<GpuJpegDecoder> make_gpu_jpeg_decoder(int device_index, std::string& why,
                                                      std::optional<GpuJpegSettings> settings = std::nullopt);

}  // namespace resnet
