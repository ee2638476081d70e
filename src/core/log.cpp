#include "core/log.h"

#include <pthread.h>

#include <cstdio>
#include <mutex>

namespace resnet {
namespace {

std::mutex& sink_mutex() {
  static std::mutex m;
  return m;
}

LogSink& current_sink() {
  static LogSink sink;
  return sink;
}

void default_sink(LogLevel level, const std::string& message) {
  switch (level) {
    case LogLevel::kInfo: std::fprintf(stderr, "%s\n", message.c_str()); break;
    case LogLevel::kWarning: std::fprintf(stderr, "warning: %s\n", message.c_str()); break;
    case LogLevel::kProgress: std::fprintf(stderr, message.empty() ? "\n" : "\r%s", message.c_str()); break;
  }
  std::fflush(stderr);
}

}  // namespace

LogSink set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  LogSink old = std::move(current_sink());
  current_sink() = std::move(sink);
  return old;
}

void log_message(LogLevel level, const std::string& message) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  if (current_sink())
    current_sink()(level, message);
  else
    default_sink(level, message);
}

void name_this_thread(const std::string& name) { pthread_setname_np(pthread_self(), name.substr(0, 15).c_str()); }

}  // namespace resnet
