// What a training run tells its user, as calls on a reporter that the caller supplies: the
// library prints nothing itself. The command line's reporter (src/cli/console_reporter.h) draws
// the sample's log lines and a progress bar; tests and other programs can collect the calls.
#pragma once

#include <cstdint>
#include <string>

#include "train/evaluate.h"

namespace resnet {

struct StepReport {
  int64_t epoch = 0;              // 1-based
  int64_t batch = 0;              // batches done in this epoch, counting those before a resume
  int64_t batches = 0;            // batches per epoch
  int64_t resumed_batches = 0;    // batches of this epoch done before this run (took no time here)
  int64_t images_seen = 0;        // images of this epoch done, before this batch
  int64_t dataset_size = 0;
  double seconds = 0;             // since this epoch started in this run
  double loss = 0;                // this batch's loss; only in log_step (reading it waits for the GPU)
  double img_per_s = 0;           // since the previous log line; only in log_step
};

struct EpochReport {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0;
  bool tested = true;  // false: --eval-every skipped this epoch's test (`test` is empty)
  EvalResult test;
  double best_accuracy = 0;
  double img_per_s = 0;
  double seconds = 0;
  double data_wait = 0;  // of `seconds`, those the steps waited for the loader's batches
  double data_wait_first = 0;  // of those, the wait for the epoch's first batch
  // On a GPU: of `seconds`, those the GPU spent between the training steps (train/step_gaps.h)
  double gpu_between_steps = 0;
  double gpu_transforming = 0;  // of those, the batches' transforms (the rest: the loop's other work, the GPU idle)
  // With --gpu-decode on a streamed folder: how this epoch's training gathers split the decoding
  // between nvJPEG and the CPU, and each part's seconds; the gathers overlap, so their seconds add
  // up to more than the epoch's. All zero otherwise.
  DecodeStats decode;
  double elapsed = 0;  // wall seconds since the run started (its resumes' time added), test included
};

class TrainReporter {
 public:
  virtual ~TrainReporter() = default;
  virtual void message(const std::string& line) { (void)line; }  // one line of information
  virtual void epoch_start(int64_t epoch) { (void)epoch; }         // 1-based
  virtual void log_step(const StepReport& step) { (void)step; }    // every --log-every batches
  virtual void progress(const StepReport& step) { (void)step; }    // after every batch
  virtual void epoch_end(const EpochReport& epoch) { (void)epoch; }
  // The profiler's operator table and where the Chrome trace went (--trace).
  virtual void trace(const std::string& table, const std::string& path) { (void)table, (void)path; }
};

}  // namespace resnet
