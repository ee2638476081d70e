// An inference graph to be written as an ONNX model, in plain C++ types: this header and
// onnx_writer.cpp (the only file that sees protobuf) include nothing of LibTorch, whose include
// folder carries an older protobuf of its own. onnx_export.cpp builds the graph from a model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace resnet {

struct OnnxAttribute {
  enum class Kind { kInt, kFloat, kInts } kind = Kind::kInt;
  std::string name;
  int64_t i = 0;
  float f = 0;
  std::vector<int64_t> ints;
};

struct OnnxNode {
  std::string op;  // "Conv", "Relu", ...
  std::vector<std::string> inputs, outputs;
  std::vector<OnnxAttribute> attributes;
};

struct OnnxInitializer {  // float32 constants: weights and statistics
  std::string name;
  std::vector<int64_t> dims;
  std::vector<float> values;
};

struct OnnxGraph {
  std::string name;
  std::string input, output;                        // one float32 input and one output
  std::vector<int64_t> input_dims, output_dims;     // -1: the dynamic batch dimension ("batch")
  std::vector<OnnxNode> nodes;                      // in topological order
  std::vector<OnnxInitializer> initializers;
};

// Whether this build can write ONNX files (libonnx-dev and protobuf were found).
bool onnx_supported();

// `graph` as the bytes of an ONNX model (opset `opset`, the default domain). std::runtime_error
// when the build has no ONNX support.
std::string serialize_onnx(const OnnxGraph& graph, int64_t opset, const std::string& producer_version);

}  // namespace resnet
