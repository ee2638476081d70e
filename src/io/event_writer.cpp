#include "io/event_writer.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/event_proto.h"
#include "io/tfrecord.h"

namespace resnet {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

EventWriter::EventWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw InputError(dir + ": cannot make the TensorBoard folder (--logdir): " + ec.message());
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  const double now = now_seconds();
  path_ = (std::filesystem::path(dir) / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) + "." +
                                         host + "." + std::to_string(getpid())))
              .string();
  file_ = std::fopen(path_.c_str(), "ab");
  if (!file_) throw InputError(path_ + ": cannot open for writing (--logdir): " + std::strerror(errno));
  write(event_file_version(now));
}

EventWriter::~EventWriter() {
  if (file_) std::fclose(file_);
}

void EventWriter::write(const std::string& event) {
  const std::string record = tfrecord(event);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() || std::fflush(file_) != 0)
    throw InputError(path_ + ": write failed (disk full?): " + std::strerror(errno));
}

void EventWriter::scalar(const std::string& tag, double value, int64_t step) {
  write(event_scalar(now_seconds(), step, tag, static_cast<float>(value)));
}

void EventWriter::text(const std::string& tag, const std::string& markdown, int64_t step) {
  write(event_text(now_seconds(), step, tag, markdown));
}

void EventWriter::start(int64_t step) { write(event_session_start(now_seconds(), step)); }

}  // namespace resnet
