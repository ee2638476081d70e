#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/console_reporter.h"
#include "cli/options.h"
#include "train/trainer.h"

namespace resnet::cli {

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  auto trace = std::make_shared<TraceFlag>();
  CLI::App* cmd = app.add_subcommand("train", "train a model (the sample's defaults: resnet50, CIFAR-10 at 224)");
  add_model_option(*cmd, o->model);
  cmd->add_option("--data,--path", o->data,
                  "CIFAR-10 binary folder or image folder (default data/cifar10, downloaded when missing)");
  add_device_option(*cmd, o->device);
  cmd->add_option("--epochs", o->epochs, "epochs to train")->capture_default_str();
  add_batch_size_option(*cmd, o->batch_size);
  cmd->add_option("--learning-rate,--learning_rate,--lr", o->learning_rate, "SGD learning rate")->capture_default_str();
  cmd->add_option("--momentum", o->momentum, "SGD momentum")->capture_default_str();
  cmd->add_option("--weight-decay,--weight_decay", o->weight_decay, "SGD weight decay")->capture_default_str();
  add_image_size_option(*cmd, o->image_size);
  cmd->add_option("--seed", o->seed, "seed for weights, shuffling and augmentation")->capture_default_str();
  cmd->add_option("--checkpoint-dir,--checkpoint_dir", o->checkpoint_dir, "checkpoints go to DIR/<model>/")
      ->capture_default_str();
  cmd->add_flag("--save-model,--save_model", o->save_model, "keep the best model in checkpoint.pth");
  cmd->add_flag("--restart", o->restart, "ignore resume.pt and start over");
  cmd->add_option("--checkpoint-every", o->checkpoint_every, "also write resume.pt every N steps (0: epoch ends)")
      ->capture_default_str();
  cmd->add_option("--max-steps", o->max_steps, "stop after N steps in all (0: no limit)")->capture_default_str();
  cmd->add_flag("--skip-bad-images", o->skip_bad_images, "warn about undecodable images instead of stopping");
  cmd->add_option("--log-every", o->log_every, "batches between 'loss:' lines")->capture_default_str();
  add_precision_options(*cmd, o->amp, o->channels_last, &o->cuda_graphs);
  add_trace_option(*cmd, *trace);
  cmd->callback([o, trace] {
    o->trace = trace->enabled();
    ConsoleReporter reporter;
    train(*o, reporter);
  });
}

}  // namespace resnet::cli
