#include "train/inference.h"

#include <ATen/Context.h>

#include <filesystem>

#include "core/error.h"
#include "data/decode.h"
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
    throw InputError(checkpoint_path + ": no such checkpoint (train with --save-model first, or pass --checkpoint)");
  TrainedModel t;
  t.info = read_best_model_info(checkpoint_path);
  t.model = create_model(t.info.arch, static_cast<int64_t>(t.info.classes.size()));
  load_state_dict(*t.model, load_tensor_dict(checkpoint_path), checkpoint_path);
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
    const auto input = test_transform(batch, trained.info.image_size);
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
  auto source = open_split(settings.data, Split::kTest, device);
  if (source->classes() != trained.info.classes)
    throw InputError(settings.data + ": its classes differ from those the model was trained on");
  Loader loader(source, {settings.batch_size, trained.info.image_size, /*train=*/false, 0}, device);
  at::globalContext().setBenchmarkCuDNN(true);
  if (settings.step.channels_last) to_channels_last(*trained.model);
  StepOptions step_options = settings.step;
  step_options.main_batch = settings.batch_size;
  EvalStep step(*trained.model, step_options, device);
  if (settings.trace_path.empty()) {
    report.result = evaluate(step, loader);
    return report;
  }
  // Profiled: a first pass autotunes cuDNN (and captures the graph); the second is measured, eager
  // so that the table shows operators rather than one graph launch.
  evaluate(step, loader);
  step_options.cuda_graphs = false;
  EvalStep eager(*trained.model, step_options, device);
  Profiler profiler(device.is_cuda());
  report.result = evaluate(eager, loader);
  report.trace_table = profiler.finish(settings.trace_path);
  return report;
}

}  // namespace resnet
