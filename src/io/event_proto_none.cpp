// A build without protobuf (libprotobuf-dev, protobuf-compiler) or Python's tensorboard package:
// no event files; train says so where they were asked for.
#include <stdexcept>

#include "io/event_proto.h"

namespace resnet {
namespace {

[[noreturn]] void missing() { throw std::runtime_error(kNoTensorBoard); }

}  // namespace

bool tensorboard_supported() { return false; }
std::string event_file_version(double) { missing(); }
std::string event_scalar(double, int64_t, const std::string&, float) { missing(); }
std::string event_text(double, int64_t, const std::string&, const std::string&) { missing(); }
std::string event_session_start(double, int64_t) { missing(); }

}  // namespace resnet
