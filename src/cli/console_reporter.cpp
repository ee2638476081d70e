#include "cli/console_reporter.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

namespace resnet::cli {

void console_log(LogLevel level, const std::string& message) {
  switch (level) {
    case LogLevel::kInfo: std::cout << message << std::endl; break;
    case LogLevel::kWarning: std::cerr << "warning: " << message << std::endl; break;
    case LogLevel::kProgress: std::cerr << (message.empty() ? "\n" : "\r" + message) << std::flush; break;
  }
}

ConsoleReporter::ConsoleReporter() : tty_(::isatty(STDOUT_FILENO) != 0) {}

void ConsoleReporter::end_bar() {
  if (bar_drawn_) std::printf("\r%70s\r", "");
  bar_drawn_ = false;
}

void ConsoleReporter::message(const std::string& line) {
  end_bar();
  std::cout << line << std::endl;
}

void ConsoleReporter::epoch_start(int64_t epoch) {
  end_bar();
  std::cout << "Epoch " << epoch << "\n-------------------------------" << std::endl;
}

void ConsoleReporter::log_step(const StepReport& s) {
  end_bar();
  // The sample's line, then this stretch's throughput (blank for the first line of an epoch).
  std::printf("loss: %7f  [%5lld/%5lld]", s.loss, static_cast<long long>(s.images_seen),
              static_cast<long long>(s.dataset_size));
  if (s.img_per_s > 0 && s.batch - 1 > s.resumed_batches) std::printf("  %.1f img/s", s.img_per_s);
  std::printf("\n");
  std::fflush(stdout);
}

void ConsoleReporter::progress(const StepReport& s) {
  if (!tty_) return;
  constexpr int kWidth = 30;
  const int64_t done_here = s.batch - s.resumed_batches;
  const double eta = done_here > 0 ? s.seconds * static_cast<double>(s.batches - s.batch) / static_cast<double>(done_here) : 0;
  const double f = static_cast<double>(s.batch) / static_cast<double>(s.batches);
  std::string bar(static_cast<size_t>(f * kWidth), '#');
  bar.resize(kWidth, '.');
  std::printf("\r[%s] %lld/%lld batches, ETA %.0fs ", bar.c_str(), static_cast<long long>(s.batch),
              static_cast<long long>(s.batches), eta);
  std::fflush(stdout);
  bar_drawn_ = true;
}

void ConsoleReporter::epoch_end(const EpochReport& e) {
  end_bar();
  const DecodeStats& d = e.decode;
  if (d.gpu_images + d.cpu_images > 0) {  // --gpu-decode: where the decoding went, and how fast
    const double all = static_cast<double>(d.gpu_images + d.cpu_images);
    std::printf(" Decoding: nvJPEG %.0f%% of the images at %.0f img/s a gather, the CPU %.0f%% at %.0f img/s; "
                "reading %.1f s, headers %.1f s (over the gathers)\n",
                100.0 * static_cast<double>(d.gpu_images) / all, d.gpu_s > 0 ? static_cast<double>(d.gpu_images) / d.gpu_s : 0.0,
                100.0 * static_cast<double>(d.cpu_images) / all, d.cpu_s > 0 ? static_cast<double>(d.cpu_images) / d.cpu_s : 0.0,
                d.read_s, d.headers_s);
  }
  // where the loader held the steps back for more than 2% of the epoch: how long (and how much of
  // that for the first batch, before any step), and how long the GPU then sat between steps (the
  // host's wait overlaps the GPU's work), of which the batches' transforms took some
  char waited[200] = "", first[48] = "", transforming[48] = "";
  if (e.data_wait_first >= 0.05) std::snprintf(first, sizeof first, ", %.2f s for the first batch", e.data_wait_first);
  if (e.gpu_transforming > 0)
    std::snprintf(transforming, sizeof transforming, ", %.2f s of that transforming", e.gpu_transforming);
  if (e.data_wait > 0.02 * e.seconds && e.gpu_between_steps > 0)
    std::snprintf(waited, sizeof waited, " (%.1f s of it waiting for data%s; the GPU %.1f s between steps%s)", e.data_wait,
                  first, e.gpu_between_steps, transforming);
  else if (e.data_wait > 0.02 * e.seconds)
    std::snprintf(waited, sizeof waited, " (%.1f s of it waiting for data%s)", e.data_wait, first);
  if (!e.tested) {
    std::printf(" Not tested this epoch (--eval-every); train loss: %.6f, %.1f img/s, %.1f s%s\n\n", e.train_loss,
                e.img_per_s, e.seconds, waited);
    std::fflush(stdout);
    return;
  }
  std::cout << "current highest_accuracy:  " << e.best_accuracy << "\n" << format_test_error(e.test);
  std::printf(" Top-5 accuracy: %.1f%%, train loss: %.6f, %.1f img/s, %.1f s%s\n\n", 100.0 * e.test.top5, e.train_loss,
              e.img_per_s, e.seconds, waited);
  std::fflush(stdout);
}

void ConsoleReporter::trace(const std::string& table, const std::string& path) {
  end_bar();
  std::cout << table << "Chrome trace (open in ui.perfetto.dev): " << path << std::endl;
}

}  // namespace resnet::cli
