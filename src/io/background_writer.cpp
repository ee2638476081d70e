#include "io/background_writer.h"

#include <iostream>

namespace resnet {

BackgroundWriter::BackgroundWriter() : thread_([this] { loop(); }) {}

BackgroundWriter::~BackgroundWriter() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return jobs_.empty() && !running_; });
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
  if (error_) {
    try {
      std::rethrow_exception(error_);
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << std::endl;
    } catch (...) {
      std::cerr << "error: a background write failed" << std::endl;
    }
  }
}

void BackgroundWriter::rethrow_locked(std::unique_lock<std::mutex>&) {
  if (!error_) return;
  std::exception_ptr e = error_;
  error_ = nullptr;
  std::rethrow_exception(e);
}

void BackgroundWriter::submit(std::function<void()> job) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return jobs_.empty() || error_; });  // one waits behind the one running
  rethrow_locked(lock);
  jobs_.push_back(std::move(job));
  lock.unlock();
  changed_.notify_all();
}

void BackgroundWriter::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return (jobs_.empty() && !running_) || error_; });
  rethrow_locked(lock);
}

void BackgroundWriter::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, nothing left
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    running_ = true;
    lock.unlock();
    changed_.notify_all();  // a submit() waiting for room
    std::exception_ptr failed;
    try {
      job();
    } catch (...) {
      failed = std::current_exception();
    }
    lock.lock();
    running_ = false;
    if (failed) {
      if (!error_) error_ = failed;
      jobs_.clear();  // the files they would replace stay as they were
    }
    changed_.notify_all();
  }
}

}  // namespace resnet
