#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "io/onnx_export.h"
#include "io/state_dict.h"
#include "io/torch_save.h"

namespace resnet::cli {

void add_export_command(CLI::App& app) {
  struct Options {
    CheckpointFlags checkpoint;
    std::string format = "onnx", output;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("export", "write a model for serving: ONNX, or a torchvision state dict");
  add_checkpoint_options(*cmd, o->checkpoint, "export");
  cmd->add_option("--format", o->format, "onnx (opset 17, dynamic batch) or torchvision (the state dict alone)")
      ->capture_default_str();
  cmd->add_option("--output,-o", o->output, "the file to write")->required();
  cmd->callback([o] {
    if (o->format != "onnx" && o->format != "torchvision")
      throw UsageError("--format takes onnx or torchvision (got '" + o->format + "')");
    TrainedModel trained = load_model_to_use(o->checkpoint, model_source(o->checkpoint), c10::Device(c10::kCPU));
    if (o->format == "torchvision") {
      save_state_dict(o->output, state_dict(*trained.model));
      std::cout << "Wrote " << o->output << ": the state dict of " << trained.info.arch << " ("
                << trained.info.classes.size() << " classes), for torchvision.models." << trained.info.arch
                << "(num_classes=" << trained.info.classes.size() << ").load_state_dict(torch.load(path))" << std::endl;
      return;
    }
    export_onnx(*trained.model, trained.info.image_size, o->output);
    std::cout << "Wrote " << o->output << ": " << trained.info.arch << " as ONNX (opset " << kOnnxOpset
              << "); input \"images\" float32 [batch, 3, " << trained.info.image_size << ", " << trained.info.image_size
              << "] normalised as the test transform does, output \"logits\" float32 [batch, "
              << trained.info.classes.size() << "]" << std::endl;
  });
}

}  // namespace resnet::cli
