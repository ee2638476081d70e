#include "io/onnx_export.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <stdexcept>

#include "core/error.h"
#include "io/file.h"
#include "io/onnx_graph.h"
#include "models/resnet.h"
#include "models/squeezenet.h"

namespace resnet {
namespace {

namespace nn = torch::nn;

OnnxAttribute ints(const std::string& name, std::vector<int64_t> v) {
  OnnxAttribute a;
  a.kind = OnnxAttribute::Kind::kInts;
  a.name = name;
  a.ints = std::move(v);
  return a;
}
OnnxAttribute integer(const std::string& name, int64_t v) {
  OnnxAttribute a;
  a.name = name;
  a.i = v;
  return a;
}
OnnxAttribute real(const std::string& name, float v) {
  OnnxAttribute a;
  a.kind = OnnxAttribute::Kind::kFloat;
  a.name = name;
  a.f = v;
  return a;
}

std::vector<int64_t> pair(const torch::ExpandingArray<2>& v) { return {(*v)[0], (*v)[1]}; }

// Builds the graph in the forward pass's order; each add_* returns the name of its output.
class GraphBuilder {
 public:
  explicit GraphBuilder(OnnxGraph& g) : g_(g) {}

  std::string node(const std::string& op, std::vector<std::string> inputs, std::vector<OnnxAttribute> attributes = {}) {
    const std::string out = op + "_" + std::to_string(g_.nodes.size());
    g_.nodes.push_back({op, std::move(inputs), {out}, std::move(attributes)});
    return out;
  }

  std::string constant(const std::string& name, const torch::Tensor& t) {
    const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
    g_.initializers.push_back({name, c.sizes().vec(), std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel())});
    return name;
  }

  std::string conv(const std::string& name, nn::Conv2dImpl& c, const std::string& x) {
    const auto& o = c.options;
    const auto* padding = std::get_if<torch::ExpandingArray<2>>(&o.padding());
    if (!padding) throw UsageError("ONNX export: convolution " + name + " has a padding mode it does not know");
    std::vector<std::string> in{x, constant(name + ".weight", c.weight)};
    if (c.bias.defined()) in.push_back(constant(name + ".bias", c.bias));
    const auto p = pair(*padding);
    return node("Conv", in,
                {ints("kernel_shape", pair(o.kernel_size())), ints("strides", pair(o.stride())),
                 ints("pads", {p[0], p[1], p[0], p[1]}), ints("dilations", pair(o.dilation())), integer("group", o.groups())});
  }

  std::string batch_norm(const std::string& name, nn::BatchNorm2dImpl& bn, const std::string& x) {
    return node("BatchNormalization",
                {x, constant(name + ".weight", bn.weight), constant(name + ".bias", bn.bias),
                 constant(name + ".running_mean", bn.running_mean), constant(name + ".running_var", bn.running_var)},
                {real("epsilon", static_cast<float>(bn.options.eps()))});
  }

  std::string relu(const std::string& x) { return node("Relu", {x}); }

  std::string max_pool(nn::MaxPool2dImpl& p, const std::string& x) {
    const auto pad = pair(p.options.padding());
    return node("MaxPool", {x},
                {ints("kernel_shape", pair(p.options.kernel_size())), ints("strides", pair(p.options.stride())),
                 ints("pads", {pad[0], pad[1], pad[0], pad[1]}), integer("ceil_mode", p.options.ceil_mode() ? 1 : 0)});
  }

  // ResNet blocks: conv-bn(-relu) chains, the shortcut, the add and the ReLU.
  std::string block(const std::string& name, nn::Module& b, const std::string& x) {
    auto children = b.named_children();
    const bool bottleneck = children.contains("conv3");
    std::string out = x;
    const int convs = bottleneck ? 3 : 2;
    for (int i = 1; i <= convs; ++i) {
      const std::string k = std::to_string(i);
      out = conv(name + ".conv" + k, *children["conv" + k]->as<nn::Conv2dImpl>(), out);
      out = batch_norm(name + ".bn" + k, *children["bn" + k]->as<nn::BatchNorm2dImpl>(), out);
      if (i < convs) out = relu(out);
    }
    std::string identity = x;
    if (children.contains("downsample")) {
      auto ds = children["downsample"]->named_children();
      identity = conv(name + ".downsample.0", *ds["0"]->as<nn::Conv2dImpl>(), x);
      identity = batch_norm(name + ".downsample.1", *ds["1"]->as<nn::BatchNorm2dImpl>(), identity);
    }
    return relu(node("Add", {out, identity}));
  }

  // Sequential containers of SqueezeNet (and ResNet's layers).
  std::string sequential(const std::string& prefix, nn::Module& seq, std::string x) {
    for (const auto& item : seq.named_children()) {
      const std::string name = prefix + "." + item.key();
      nn::Module& m = *item.value();
      if (auto* c = m.as<nn::Conv2dImpl>()) x = conv(name, *c, x);
      else if (m.as<nn::ReLUImpl>()) x = relu(x);
      else if (auto* p = m.as<nn::MaxPool2dImpl>()) x = max_pool(*p, x);
      else if (m.as<nn::DropoutImpl>()) continue;  // identity at inference
      else if (auto* a = m.as<nn::AdaptiveAvgPool2dImpl>()) {
        const auto size = a->options.output_size();
        if ((*size)[0] != 1 || (*size)[1] != 1) throw UsageError("ONNX export: adaptive pooling to other than 1x1");
        x = node("GlobalAveragePool", {x});
      } else if (m.as<FireImpl>()) {
        auto f = m.named_children();
        const std::string s = relu(conv(name + ".squeeze", *f["squeeze"]->as<nn::Conv2dImpl>(), x));
        const std::string e1 = relu(conv(name + ".expand1x1", *f["expand1x1"]->as<nn::Conv2dImpl>(), s));
        const std::string e3 = relu(conv(name + ".expand3x3", *f["expand3x3"]->as<nn::Conv2dImpl>(), s));
        x = node("Concat", {e1, e3}, {integer("axis", 1)});
      } else if (m.as<BasicBlockImpl>() || m.as<BottleneckImpl>()) {
        x = block(name, m, x);
      } else {
        throw UsageError("ONNX export: " + name + " is a layer the exporter does not know (" + m.name() + ")");
      }
    }
    return x;
  }

 private:
  OnnxGraph& g_;
};

}  // namespace

void export_onnx(Classifier& model, int64_t image_size, const std::string& path) {
  if (!onnx_supported())
    throw UsageError("this build cannot write ONNX files: it found no libonnx-dev and protobuf (scripts/install-deps "
                     "installs them; then rebuild)");
  torch::NoGradGuard no_grad;
  OnnxGraph g;
  g.name = model.arch();
  g.input = "images";
  g.output = "logits";
  g.input_dims = {-1, 3, image_size, image_size};
  g.output_dims = {-1, model.num_classes()};
  GraphBuilder b(g);
  auto children = model.named_children();
  std::string x = g.input;
  if (dynamic_cast<ResNet*>(&model)) {
    x = b.conv("conv1", *children["conv1"]->as<nn::Conv2dImpl>(), x);
    x = b.relu(b.batch_norm("bn1", *children["bn1"]->as<nn::BatchNorm2dImpl>(), x));
    x = b.max_pool(*children["maxpool"]->as<nn::MaxPool2dImpl>(), x);
    for (const char* layer : {"layer1", "layer2", "layer3", "layer4"}) x = b.sequential(layer, *children[layer], x);
    x = b.node("Flatten", {b.node("GlobalAveragePool", {x})}, {integer("axis", 1)});
    auto* fc = children["fc"]->as<nn::LinearImpl>();
    x = b.node("Gemm", {x, b.constant("fc.weight", fc->weight), b.constant("fc.bias", fc->bias)}, {integer("transB", 1)});
  } else if (dynamic_cast<SqueezeNet*>(&model)) {
    x = b.sequential("features", *children["features"], x);
    x = b.sequential("classifier", *children["classifier"], x);
    x = b.node("Flatten", {x}, {integer("axis", 1)});
  } else {
    throw UsageError("ONNX export: " + model.arch() + " is not a model the exporter knows");
  }
  g.nodes.back().outputs = {g.output};
  std::string bytes;
  try {
    bytes = serialize_onnx(g, kOnnxOpset, "0.1.0");
  } catch (const std::runtime_error& e) {
    throw UsageError(e.what());
  }
  write_file_atomically(path, bytes);
}

}  // namespace resnet
