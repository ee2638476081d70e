#include "train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "core/error.h"
#include "io/file.h"
#include "io/state_dict.h"
#include "io/torch_save.h"

#ifdef RESNET_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/detail/CUDAHooks.h>
#endif

namespace resnet {
namespace fs = std::filesystem;

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : "\n") + s;
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}


}  // namespace

std::function<void()> resume_writer(const std::string& path, const TrainState& s, const Classifier& model,
                                    Sgd& optimizer, const NamedTensors& extra) {
  SaveEntries e = {{"format_version", kResumeFormatVersion},
                   {"arch", model.arch()},
                   {"num_classes", model.num_classes()},
                   {"epoch", s.epoch},
                   {"batch", s.batch},
                   {"step", s.step},
                   {"best_accuracy", s.best_accuracy},
                   {"epoch_loss_sum", s.epoch_loss_sum},
                   {"loss_scale", s.loss_scale},
                   {"loss_scale_growth", s.loss_scale_growth},
                   {"epoch_skipped", s.epoch_skipped},
                   {"skipped_steps", s.skipped_steps},
                   {"elapsed_s", s.elapsed_s},
                   {"settings", s.settings.dump()},
                   {"classes", join(s.classes)}};
  for (const auto& [name, tensor] : state_dict(model)) e.emplace_back("model." + name, tensor);
  const auto params = model.named_parameters();
  auto& buffers = optimizer.momentum_buffers();
  for (size_t i = 0; i < params.size(); ++i)
    if (buffers[i].defined()) e.emplace_back("momentum." + params[i].key(), buffers[i]);
  for (const auto& [name, tensor] : extra) e.emplace_back(name, tensor);
  e.emplace_back("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
#ifdef RESNET_WITH_CUDA
  for (int64_t d = 0; d < static_cast<int64_t>(torch::cuda::device_count()); ++d)
    e.emplace_back("rng.cuda." + std::to_string(d), at::cuda::detail::getDefaultCUDAGenerator(d).get_state());
#endif
  auto file = std::make_shared<const TorchFile>(e, /*ordered=*/false);
  return [path, file] { file->write(path); };
}

void save_resume(const std::string& path, const TrainState& state, const Classifier& model, Sgd& optimizer,
                 const NamedTensors& extra) {
  resume_writer(path, state, model, optimizer, extra)();
}

ResumeFile::ResumeFile(const std::string& path)
    : path_(path), entries_(load_torch_dict(path)), values_(entries_.begin(), entries_.end()) {
  const int64_t version = need("format_version").toInt();
  if (version != kResumeFormatVersion)
    throw InputError(path + ": format version " + std::to_string(version) + ", this build reads version " +
                     std::to_string(kResumeFormatVersion) + "; pass --restart to start over");
}

const c10::IValue& ResumeFile::need(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw InputError(path_ + ": has no '" + key + "' (not a resume.pt of resnet.cpp?)");
  return it->second;
}

TrainState ResumeFile::state() const {
  TrainState s;
  s.epoch = need("epoch").toInt();
  s.batch = need("batch").toInt();
  s.step = need("step").toInt();
  s.best_accuracy = need("best_accuracy").toDouble();
  s.epoch_loss_sum = need("epoch_loss_sum").toDouble();
  // Absent in files written before fp16 training existed: no scale.
  if (auto it = values_.find("loss_scale"); it != values_.end()) s.loss_scale = it->second.toDouble();
  if (auto it = values_.find("loss_scale_growth"); it != values_.end()) s.loss_scale_growth = it->second.toInt();
  // Absent before --skip-nonfinite: none skipped.
  if (auto it = values_.find("epoch_skipped"); it != values_.end()) s.epoch_skipped = it->second.toInt();
  if (auto it = values_.find("skipped_steps"); it != values_.end()) s.skipped_steps = it->second.toInt();
  // Absent before metrics.csv's elapsed_s: the time of those runs is unknown (counted as 0).
  if (auto it = values_.find("elapsed_s"); it != values_.end()) s.elapsed_s = it->second.toDouble();
  s.settings = nlohmann::json::parse(need("settings").toStringRef());
  s.classes = split_lines(need("classes").toStringRef());
  return s;
}

NamedTensors ResumeFile::tensors_with_prefix(const std::string& prefix) const {
  NamedTensors out;
  for (const auto& [key, value] : entries_)
    if (key.rfind(prefix, 0) == 0 && value.isTensor()) out.emplace_back(key.substr(prefix.size()), value.toTensor());
  return out;
}

TrainState ResumeFile::restore(Classifier& model, Sgd& optimizer) const {
  const std::string arch = need("arch").toStringRef();
  const int64_t classes = need("num_classes").toInt();
  if (arch != model.arch() || classes != model.num_classes())
    throw InputError(path_ + ": holds " + arch + " with " + std::to_string(classes) + " classes, this run trains " +
                     model.arch() + " with " + std::to_string(model.num_classes()) +
                     "; pass --restart to start over or another --checkpoint-dir");
  TrainState s = state();

  NamedTensors weights;
  for (const auto& [key, value] : entries_)
    if (key.rfind("model.", 0) == 0) weights.emplace_back(key.substr(6), value.toTensor());
  load_state_dict(model, weights, path_);
  const auto params = model.named_parameters();
  auto& buffers = optimizer.momentum_buffers();
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = values_.find("momentum." + params[i].key());
    // In its parameter's layout (channels-last too): the fused SGD kernel needs them to match.
    buffers[i] =
        it == values_.end() ? torch::Tensor() : torch::empty_like(params[i].value()).copy_(it->second.toTensor());
  }
  at::Generator cpu_gen = at::detail::getDefaultCPUGenerator();  // shares the default generator
  cpu_gen.set_state(need("rng.cpu").toTensor());
#ifdef RESNET_WITH_CUDA
  for (int64_t d = 0; d < static_cast<int64_t>(torch::cuda::device_count()); ++d) {
    auto it = values_.find("rng.cuda." + std::to_string(d));
    if (it == values_.end()) continue;
    at::Generator gen = at::cuda::detail::getDefaultCUDAGenerator(d);
    gen.set_state(it->second.toTensor());
  }
#endif
  return s;
}

TrainState load_resume(const std::string& path, Classifier& model, Sgd& optimizer) {
  return ResumeFile(path).restore(model, optimizer);
}

std::function<void()> best_model_writer(const std::string& dir, const Classifier& model, const BestModelInfo& info) {
  const std::string pth = (fs::path(dir) / "checkpoint.pth").string();
  SaveEntries weights;
  for (const auto& [name, tensor] : state_dict(model)) weights.emplace_back(name, tensor);
  auto file = std::make_shared<const TorchFile>(weights, /*ordered=*/true);
  nlohmann::json j = {{"arch", info.arch},
                      {"num_classes", model.num_classes()},
                      {"classes", info.classes},
                      {"image_size", info.image_size},
                      {"test_crop_pct", info.test_crop_pct},
                      {"accuracy", info.accuracy},
                      {"epoch", info.epoch}};
  if (info.holdout >= 0) j["holdout"] = info.holdout;
  return [pth, file, text = j.dump(1) + "\n"] {
    file->write(pth);
    write_file_atomically(best_model_info_path(pth), text);
  };
}

void save_best_model(const std::string& dir, const Classifier& model, const BestModelInfo& info) {
  best_model_writer(dir, model, info)();
}

}  // namespace resnet
