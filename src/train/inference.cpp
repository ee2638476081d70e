#include "train/inference.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "core/device.h"
#include "core/error.h"
#include "data/decode.h"
#include "data/imagenet_classes.h"
#include "data/loader.h"
#include "data/open.h"
#include "data/transforms.h"
#include "io/state_dict.h"
#include "io/torch_save.h"
#include "models/registry.h"
#include "train/profile.h"

namespace resnet {

TrainedModel load_trained_model(const std::string& checkpoint_path, const c10::Device& device) {
  if (!std::filesystem::exists(checkpoint_path))
    throw InputError(checkpoint_path + ": no such checkpoint (run `resnet train --save-model` first, or pass --checkpoint)");
  TrainedModel t;
  t.info = read_best_model_info(checkpoint_path);
  t.model = create_model(t.info.arch, static_cast<int64_t>(t.info.classes.size()));
  load_state_dict(*t.model, load_tensor_dict(checkpoint_path), checkpoint_path);
  t.model->to(device);
  t.model->eval();
  return t;
}

std::vector<std::string> read_class_names(const std::string& path, int64_t expected) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open the class list (--classes)");
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;
    names.push_back(line.substr(first, line.find_last_not_of(" \t\r") - first + 1));
  }
  if (static_cast<int64_t>(names.size()) != expected)
    throw InputError(path + ": holds " + std::to_string(names.size()) + " class names, but the model has " +
                     std::to_string(expected) + " classes (--classes: one name a line)");
  return names;
}

namespace {

// The classifier's output size: fc.weight [classes, features] for ResNets, classifier.1.weight
// [classes, 512, 1, 1] for SqueezeNets.
int64_t classes_in(const NamedTensors& tensors, const std::string& path) {
  for (const auto& [name, t] : tensors)
    if ((name == "fc.weight" && t.dim() == 2) || (name == "classifier.1.weight" && t.dim() == 4)) return t.size(0);
  throw InputError(path + ": has neither fc.weight (ResNets) nor classifier.1.weight (SqueezeNets): not the state dict "
                          "of an architecture resnet knows (`resnet bench --help` lists them)");
}

// Registered architectures whose state dict has exactly these names and shapes.
std::vector<std::string> matching_architectures(const NamedTensors& tensors, int64_t classes) {
  std::map<std::string, std::vector<int64_t>> given;
  for (const auto& [name, t] : tensors) given[name] = t.sizes().vec();
  std::vector<std::string> out;
  torch::NoGradGuard no_grad;
  for (const auto& arch : model_names()) {
    const NamedTensors own = state_dict(*create_model(arch, classes));
    bool same = own.size() == given.size();
    for (size_t i = 0; same && i < own.size(); ++i) {
      const auto it = given.find(own[i].first);
      same = it != given.end() && it->second == own[i].second.sizes().vec();
    }
    if (same) out.push_back(arch);
  }
  return out;
}

std::string guess_architecture(const NamedTensors& tensors, int64_t classes, const std::string& path) {
  const auto found = matching_architectures(tensors, classes);
  if (found.size() == 1) return found.front();
  std::string names;
  for (const auto& n : found) names += (names.empty() ? "" : ", ") + n;
  throw InputError(path + (found.empty() ? ": matches no architecture resnet knows by its names and shapes; pass "
                                           "--model to see what differs"
                                         : ": matches " + names + "; pass --model to say which"));
}

}  // namespace

NamedTensors read_weights(const std::string& path) {
  if (!std::filesystem::exists(path)) throw InputError(path + ": no such file (--weights)");
  return load_tensor_dict(path);
}

std::string architecture_of(const std::string& path) {
  const NamedTensors tensors = read_weights(path);
  return guess_architecture(tensors, classes_in(tensors, path), path);
}

TrainedModel load_weights(const std::string& path, const std::string& arch, const std::string& classes_file,
                          int64_t image_size, const c10::Device& device) {
  const NamedTensors tensors = read_weights(path);
  const int64_t classes = classes_in(tensors, path);
  TrainedModel t;
  t.info.arch = arch.empty() ? guess_architecture(tensors, classes, path) : arch;
  t.info.image_size = image_size;
  if (!classes_file.empty()) {
    t.info.classes = read_class_names(classes_file, classes);
  } else if (classes == 1000) {
    t.info.classes = imagenet_classes();
  } else {
    for (int64_t i = 0; i < classes; ++i) t.info.classes.push_back(std::to_string(i));
  }
  t.model = create_model(t.info.arch, classes);
  load_state_dict(*t.model, tensors, path);
  t.model->to(device);
  t.model->eval();
  return t;
}

std::vector<Prediction> predict_files(const TrainedModel& trained, const std::vector<std::string>& files, int64_t k,
                                      const c10::Device& device, StepOptions step_options) {
  std::vector<Prediction> out;
  step_options.cuda_graphs = false;  // one image at a time: nothing to replay
  if (step_options.channels_last) to_channels_last(*trained.model);
  EvalStep step(*trained.model, step_options, device);
  torch::InferenceMode guard;
  k = std::min<int64_t>(k, static_cast<int64_t>(trained.info.classes.size()));
  for (const auto& file : files) {
    const auto image = decode_image_file(file);
    RawBatch batch{image.unsqueeze(0).to(device), torch::tensor({image.size(1), image.size(2)}).view({1, 2}),
                   torch::zeros({1}, torch::kLong)};
    const auto input = test_transform(batch, trained.info.image_size, {}, trained.info.test_crop_pct);
    const auto probs = torch::softmax(step.logits(input), 1)[0].cpu();
    const auto [values, indices] = probs.topk(k);
    Prediction p;
    p.file = file;
    for (int64_t i = 0; i < k; ++i)
      p.top.emplace_back(trained.info.classes.at(indices[i].item<int64_t>()), values[i].item<double>());
    out.push_back(std::move(p));
  }
  return out;
}

TestReport test_model(TrainedModel& trained, const TestSettings& settings, const c10::Device& device) {
  TestReport report;
  check_test_views(settings.views, trained.info.image_size);
  std::shared_ptr<ImageSource> source;
  if (settings.holdout > 0) {  // decoded as train decodes its training split (the CPU's decoding)
    DataOptions train_options;
    train_options.decode_keep_side = kDecodeKeepSides * trained.info.image_size;
    source = hold_out(open_split(settings.data, Split::kTrain, device, train_options), settings.holdout).second;
  } else {
    source = open_split(settings.data, Split::kTest, device);
  }
  if (settings.classes_from_data) {
    if (source->classes().size() != trained.info.classes.size())
      throw InputError(settings.data + ": has " + std::to_string(source->classes().size()) +
                       " classes, the weights " + std::to_string(trained.info.classes.size()));
    trained.info.classes = source->classes();
  }
  if (source->classes() != trained.info.classes)
    throw InputError(settings.data + ": its classes differ from those the model was trained on");
  Loader loader(source,
                {settings.batch_size, trained.info.image_size, /*train=*/false, 0, 0, 1, {}, {}, trained.info.test_crop_pct},
                device);
  enable_cudnn_autotuning();
  if (settings.step.channels_last) to_channels_last(*trained.model);
  StepOptions step_options = settings.step;
  step_options.main_batch = settings.batch_size;
  EvalStep step(*trained.model, step_options, device);
  if (settings.trace_path.empty()) {
    report.result = evaluate(step, loader, nullptr, settings.views);
    return report;
  }
  // Profiled: a first pass autotunes cuDNN (and captures the graph); the second is measured, eager
  // so that the table shows operators rather than one graph launch.
  evaluate(step, loader, nullptr, settings.views);
  step_options.cuda_graphs = false;
  EvalStep eager(*trained.model, step_options, device);
  Profiler profiler(device.is_cuda());
  report.result = evaluate(eager, loader, nullptr, settings.views);
  report.trace_table = profiler.finish(settings.trace_path);
  return report;
}

}  // namespace resnet
