// How long the GPU sat between an epoch's training steps (CUDA only): an event as each batch is
// ready in the GPU's queue (its transform queued after the loader handed it over) and one after
// its step. The time from a step's end to the next batch's readiness is when the GPU had nothing
// of the training to do but that batch's transform: waiting for the loader, or for the loop's
// host work. The epoch line's "waiting for data" is the host's wait, which overlaps the GPU's work;
// this is the GPU's side. A third event as the loader hands each batch over, before its transform
// is queued, splits that time: the transform's share (with the host's queuing of it), and the rest:
// the loop's other work (the loss's sum, on log steps its read-back) and the GPU idle.
#pragma once

#include <c10/core/Device.h>

#include <memory>

namespace resnet {

class StepGaps {
 public:
  explicit StepGaps(const c10::Device& device);  // (a CPU device: records nothing, 0 s)
  ~StepGaps();
  StepGaps(const StepGaps&) = delete;
  StepGaps& operator=(const StepGaps&) = delete;
  void arrived();  // the loader handed a batch over; its transform is queued next (optional)
  void ready();    // a batch is in the queue of the current stream, its step next
  void done();     // its step is queued
  struct Seconds {
    double between = 0;       // from each step's end to the next batch's readiness
    double transforming = 0;  // of that, from the batch's arrival to its readiness (0: not marked)
  };
  // The seconds between the steps marked so far (after the first); waits for their events.
  Seconds seconds();

 private:
  struct Events;
  std::unique_ptr<Events> events_;
};

}  // namespace resnet
