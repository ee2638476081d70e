// A TensorBoard event file (events.out.tfevents.<seconds>.<host>.<pid>), written as a run goes:
// every event is flushed at once, so a TensorBoard watching the folder shows it live. What
// `train --logdir` writes (rank 0 only). Needs a build with tensorboard_supported() (event_proto.h).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace resnet {

class EventWriter {
 public:
  // A new file in `dir` (made if missing); InputError naming the folder or file when it cannot.
  explicit EventWriter(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void scalar(const std::string& tag, double value, int64_t step);
  void text(const std::string& tag, const std::string& markdown, int64_t step);
  // A run whose first step is `step` (TensorBoard's SessionLog START): what earlier files hold at
  // that step or later is dropped, so a run resumed from its checkpoint logs no step twice.
  void start(int64_t step);
  const std::string& path() const { return path_; }

 private:
  void write(const std::string& event);

  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace resnet
