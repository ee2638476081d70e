// What `resnet train` prints: the original sample's log ("Epoch 1", "loss: ...  [  0/50000]",
// "Test Error: ..."), plus throughput, top-5 accuracy and, on a terminal, a progress bar with an
// ETA between the loss lines (piped output gets the lines alone).
#pragma once

#include "core/log.h"
#include "train/report.h"

namespace resnet::cli {

// The library's log sink for the terminal: information on stdout, warnings ("warning: ...") and
// progress bars on stderr. main() installs it.
void console_log(LogLevel level, const std::string& message);

class ConsoleReporter : public TrainReporter {
 public:
  ConsoleReporter();
  void message(const std::string& line) override;
  void epoch_start(int64_t epoch) override;
  void log_step(const StepReport& step) override;
  void progress(const StepReport& step) override;
  void epoch_end(const EpochReport& epoch) override;
  void trace(const std::string& table, const std::string& path) override;

 private:
  void end_bar();  // moves past a progress bar drawn on the current line

  bool tty_;
  bool bar_drawn_ = false;
};

}  // namespace resnet::cli
