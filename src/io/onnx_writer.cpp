#include <onnx/onnx_pb.h>

#include <stdexcept>

#include "io/onnx_graph.h"

namespace resnet {
namespace {

void set_shape(onnx::ValueInfoProto* value, const std::string& name, const std::vector<int64_t>& dims) {
  value->set_name(name);
  auto* tensor = value->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = tensor->mutable_shape();
  for (int64_t d : dims) {
    auto* dim = shape->add_dim();
    if (d < 0) dim->set_dim_param("batch");
    else dim->set_dim_value(d);
  }
}

}  // namespace

bool onnx_supported() { return true; }

std::string serialize_onnx(const OnnxGraph& g, int64_t opset, const std::string& producer_version) {
  onnx::ModelProto model;
  model.set_ir_version(8);  // ONNX 1.10+; opset 17 needs IR 8
  model.set_producer_name("resnet.cpp");
  model.set_producer_version(producer_version);
  model.add_opset_import()->set_version(opset);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name(g.name);
  set_shape(graph->add_input(), g.input, g.input_dims);
  set_shape(graph->add_output(), g.output, g.output_dims);
  for (const auto& init : g.initializers) {
    onnx::TensorProto* t = graph->add_initializer();
    t->set_name(init.name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : init.dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(init.values.data()), init.values.size() * sizeof(float)));
  }
  int index = 0;
  for (const auto& n : g.nodes) {
    onnx::NodeProto* node = graph->add_node();
    node->set_op_type(n.op);
    node->set_name(n.op + "_" + std::to_string(index++));
    for (const auto& i : n.inputs) node->add_input(i);
    for (const auto& o : n.outputs) node->add_output(o);
    for (const auto& a : n.attributes) {
      onnx::AttributeProto* attr = node->add_attribute();
      attr->set_name(a.name);
      switch (a.kind) {
        case OnnxAttribute::Kind::kInt: attr->set_type(onnx::AttributeProto::INT); attr->set_i(a.i); break;
        case OnnxAttribute::Kind::kFloat: attr->set_type(onnx::AttributeProto::FLOAT); attr->set_f(a.f); break;
        case OnnxAttribute::Kind::kInts:
          attr->set_type(onnx::AttributeProto::INTS);
          for (int64_t v : a.ints) attr->add_ints(v);
          break;
      }
    }
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) throw std::runtime_error("the ONNX model does not serialize");
  return bytes;
}

}  // namespace resnet
