// Where the library's own messages go: warnings (a skipped image), progress lines (a download's
// bar) and information. The library never prints; it calls the sink, which a program sets once
// (the command line sets one that writes to the terminal). Without one, messages go to stderr.
// A sink may be called from several threads at once (decoding threads warn); the default one and
// set_log_sink are safe for that.
#pragma once

#include <functional>
#include <string>

namespace resnet {

enum class LogLevel {
  kInfo,
  kWarning,
  kProgress,  // replaces the previous progress line; an empty message ends it
};

using LogSink = std::function<void(LogLevel, const std::string&)>;

// Installs `sink` (an empty one restores the default) and returns the one it replaces.
LogSink set_log_sink(LogSink sink);

void log_message(LogLevel level, const std::string& message);
inline void log_info(const std::string& message) { log_message(LogLevel::kInfo, message); }
inline void log_warning(const std::string& message) { log_message(LogLevel::kWarning, message); }
inline void log_progress(const std::string& message) { log_message(LogLevel::kProgress, message); }

// Names the calling thread (its first 15 characters), for debuggers and bench/cuda_api_trace's
// report, which list threads by name.
void name_this_thread(const std::string& name);

}  // namespace resnet
