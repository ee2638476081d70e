// Files written on a thread of their own while the caller goes on (train's per-epoch checkpoints:
// the copies off the GPU are made at once, the zip, checksums and fsync run beside the next
// epoch). Jobs run one at a time in the order given; at most one waits behind the one running, so
// a disk slower than training holds training back rather than piling up copies in memory.
// A job that throws: its error is thrown again by the next submit() or wait(), and the jobs
// behind it do not run (the files they would have replaced stay as they were).
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace resnet {

class BackgroundWriter {
 public:
  BackgroundWriter();
  // Waits for the jobs; an error none of them reported yet goes to stderr (the caller is already
  // on its way out, perhaps with an error of its own).
  ~BackgroundWriter();
  BackgroundWriter(const BackgroundWriter&) = delete;
  BackgroundWriter& operator=(const BackgroundWriter&) = delete;

  void submit(std::function<void()> job);
  // Until every job submitted has run; rethrows the first failure (once).
  void wait();

 private:
  void loop();
  void rethrow_locked(std::unique_lock<std::mutex>& lock);

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::function<void()>> jobs_;
  bool running_ = false, stopping_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: started once the rest is ready
};

}  // namespace resnet
