#include "train/step_gaps.h"

#include <algorithm>
#include <vector>

#ifdef RESNET_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#endif

namespace resnet {

struct StepGaps::Events {
#ifdef RESNET_WITH_CUDA
  std::vector<at::cuda::CUDAEvent> ready, done;  // (timing events: cudaEventDefault)
  static void mark(std::vector<at::cuda::CUDAEvent>& events) {  // one more, on the current stream
    events.emplace_back(cudaEventDefault);
    events.back().record();
  }
#endif
};

StepGaps::StepGaps(const c10::Device& device) {
  if (device.is_cuda()) events_ = std::make_unique<Events>();
}

StepGaps::~StepGaps() = default;

void StepGaps::ready() {
#ifdef RESNET_WITH_CUDA
  if (events_) Events::mark(events_->ready);
#endif
}

void StepGaps::done() {
#ifdef RESNET_WITH_CUDA
  if (events_) Events::mark(events_->done);
#endif
}

double StepGaps::seconds() {
  double ms = 0;
#ifdef RESNET_WITH_CUDA
  if (!events_) return 0;
  const size_t n = std::min(events_->ready.size(), events_->done.size());
  if (n < 2) return 0;
  events_->done[n - 1].synchronize();  // (one stream: the earlier events are complete then too)
  for (size_t k = 1; k < n; ++k) ms += static_cast<double>(events_->done[k - 1].elapsed_time(events_->ready[k]));
#endif
  return ms / 1000.0;
}

}  // namespace resnet
