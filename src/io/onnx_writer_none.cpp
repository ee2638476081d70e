// A build without libonnx-dev / protobuf: ONNX export says what to install.
#include <stdexcept>

#include "io/onnx_graph.h"

namespace resnet {

bool onnx_supported() { return false; }

std::string serialize_onnx(const OnnxGraph&, int64_t, const std::string&) {
  throw std::runtime_error("this build cannot write ONNX files (it found no libonnx-dev and protobuf; "
                           "scripts/install-deps installs them, then rebuild)");
}

}  // namespace resnet
