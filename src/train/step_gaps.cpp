#include "train/step_gaps.h"

#include <algorithm>
#include <vector>

#ifdef RESNET_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#endif

namespace resnet {

struct StepGaps::Events {
#ifdef RESNET_WITH_CUDA
  std::vector<at::cuda::CUDAEvent> arrived, ready, done;  // (timing events: cudaEventDefault)
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

void StepGaps::arrived() {
#ifdef RESNET_WITH_CUDA
  if (events_) Events::mark(events_->arrived);
#endif
}

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

StepGaps::Seconds StepGaps::seconds() {
  Seconds s;
#ifdef RESNET_WITH_CUDA
  if (!events_) return s;
  const size_t n = std::min(events_->ready.size(), events_->done.size());
  if (n < 2) return s;
  events_->done[n - 1].synchronize();  // (one stream: the earlier events are complete then too)
  // (arrivals count only where every batch's was marked: then the k-th belongs to the k-th ready)
  const bool split = events_->arrived.size() >= n;
  double between = 0, transforming = 0;
  for (size_t k = 1; k < n; ++k) {
    between += static_cast<double>(events_->done[k - 1].elapsed_time(events_->ready[k]));
    if (split) transforming += static_cast<double>(events_->arrived[k].elapsed_time(events_->ready[k]));
  }
  s.between = between / 1000.0, s.transforming = transforming / 1000.0;
#endif
  return s;
}

}  // namespace resnet
