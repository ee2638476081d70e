#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/console_reporter.h"
#include "cli/options.h"
#include "core/error.h"
#include "models/registry.h"
#include "train/inference.h"
#include "train/recipe.h"
#include "train/trainer.h"

namespace resnet::cli {

namespace {

namespace fs = std::filesystem;

struct ResumeFlag {
  std::string path;
  CLI::Option* model_option = nullptr;
  CLI::Option* dir_option = nullptr;
};

// `--resume PATH` (PyTorch's ImageNet example, timm): the trainer resumes from
// <checkpoint-dir>/<model>/resume.pt by itself, so PATH picks the model and the folder.
void apply_resume(const ResumeFlag& flag, TrainOptions& o) {
  if (o.restart) throw UsageError("--resume and --restart contradict each other; pass one of them");
  fs::path path = flag.path;
  if (fs::is_directory(path)) path /= "resume.pt";
  if (!fs::is_regular_file(path)) throw InputError(path.string() + ": no such file (--resume)");
  const std::string where = "--resume takes the resume.pt that train wrote, <checkpoint-dir>/<model>/resume.pt";
  if (path.filename() != "resume.pt")
    throw UsageError(path.string() + ": " + where + "; a run continues only from there (copy the file to such a place)");
  const fs::path folder = path.parent_path();
  const std::string model = folder.filename().string();
  const auto names = model_names();
  if (std::find(names.begin(), names.end(), model) == names.end())
    throw UsageError(path.string() + ": " + where + ", and '" + model + "' is no model's name");
  if (flag.model_option->count() > 0 && o.model != model)
    throw UsageError("--model " + o.model + " contradicts --resume " + flag.path + " (a " + model + " run)");
  const fs::path dir = folder.parent_path().empty() ? fs::path(".") : folder.parent_path();
  if (flag.dir_option->count() > 0 && fs::weakly_canonical(dir) != fs::weakly_canonical(o.checkpoint_dir))
    throw UsageError("--checkpoint-dir " + o.checkpoint_dir + " contradicts --resume " + flag.path +
                     " (which is in " + dir.string() + ")");
  o.model = model;
  o.checkpoint_dir = dir.string();
}

// --recipe: the recipe's settings for the flags the command line leaves out, parsed as CLI11
// parses the user's (the user's own value wins, and a setting that a given flag excludes, such
// as --zero-init-residual beside --weights, is left out). Returns the flags it set.
std::vector<std::string> apply_recipe(CLI::App& cmd, const std::string& name) {
  std::vector<std::string> applied;
  for (const RecipeSetting& setting : recipe_settings(name)) {
    CLI::Option* option = cmd.get_option(setting.flag);
    if (option->count() > 0) continue;
    const auto& excludes = option->get_excludes();
    if (std::any_of(excludes.begin(), excludes.end(), [](const CLI::Option* other) { return other->count() > 0; }))
      continue;
    option->add_result(setting.value.empty() ? std::string("true") : setting.value);
    option->run_callback();
    applied.push_back(setting.flag);
  }
  return applied;
}

extern "C" void on_stop_signal(int sig) {
  static std::atomic<int> signals{0};
  if (signals.fetch_add(1) > 0 && sig == SIGINT) ::_exit(130);  // a second Ctrl-C: at once
  request_stop(sig);
}

// SIGINT (Ctrl-C) and SIGTERM: train writes resume.pt at the next step boundary and stops
// (main prints how to resume and exits with 128 + the signal); a second SIGINT exits at once.
void stop_on_signals() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  auto trace = std::make_shared<TraceFlag>();
  auto resume = std::make_shared<ResumeFlag>();
  CLI::App* cmd = app.add_subcommand("train", "train a model (the sample's defaults: resnet50, CIFAR-10 at 224)");
  resume->model_option = add_model_option(*cmd, o->model);
  cmd->add_option("--data,--path", o->data,
                  "CIFAR-10 binary folder or image folder (default data/cifar10, downloaded when missing)");
  add_device_option(*cmd, o->device);
  add_max_image_pixels_option(*cmd);
  cmd->add_option("--recipe", o->recipe,
                  "a named set of settings that flags given beside it override: sample (the PyTorch sample's "
                  "job) or fast (toward 94% on CIFAR-10 in 15 minutes on one GPU; docs/RECIPES.md)")
      ->capture_default_str();
  cmd->add_option("--epochs", o->epochs, "epochs to train")->capture_default_str();
  add_batch_size_option(*cmd, o->batch_size);
  cmd->add_option("--learning-rate,--learning_rate,--lr", o->learning_rate, "SGD learning rate")->capture_default_str();
  cmd->add_option("--lr-schedule", o->schedule.kind,
                  "the rate over the run: constant, step, multistep, cosine, onecycle (per step)")
      ->capture_default_str();
  cmd->add_option("--warmup-epochs", o->schedule.warmup_epochs,
                  "linear warm-up to the rate over these epochs (fractions allowed)")
      ->capture_default_str();
  cmd->add_option("--warmup-start-factor", o->schedule.warmup_start_factor,
                  "the warm-up starts at this fraction of the rate")
      ->capture_default_str();
  cmd->add_option("--lr-step-size", o->schedule.step_size, "step: epochs between decays")->capture_default_str();
  cmd->add_option("--lr-gamma", o->schedule.gamma, "step, multistep: factor of each decay")->capture_default_str();
  cmd->add_option("--lr-milestones", o->schedule.milestones, "multistep: epochs of the decays, e.g. 30,60,80")
      ->delimiter(',');
  cmd->add_option("--min-lr", o->schedule.min_lr, "cosine: the rate at the end")->capture_default_str();
  cmd->add_option("--onecycle-pct-start", o->schedule.pct_start, "onecycle: share of the run spent rising")
      ->capture_default_str();
  cmd->add_option("--onecycle-div-factor", o->schedule.div_factor, "onecycle: it starts at the rate / this")
      ->capture_default_str();
  cmd->add_option("--onecycle-final-div-factor", o->schedule.final_div_factor,
                  "onecycle: it ends at its start / this")
      ->capture_default_str();
  cmd->add_option("--lr-scale-batch", o->lr_scale_batch,
                  "scale the rate by (batch size x processes) / this (the linear scaling rule; 0: off)")
      ->capture_default_str();
  cmd->add_option("--label-smoothing", o->label_smoothing,
                  "train against (1 - e) x one-hot + e / classes (e.g. 0.1; the test loss stays plain)")
      ->capture_default_str();
  cmd->add_option("--mixup", o->mix.mixup_alpha,
                  "Mixup: blend each batch with a shuffled copy, weight ~ Beta(alpha, alpha) (e.g. 0.2; 0: off)")
      ->capture_default_str();
  cmd->add_option("--cutmix", o->mix.cutmix_alpha,
                  "CutMix: paste a box of a shuffled copy into each batch, its area ~ Beta(alpha, alpha) (e.g. 1; 0: "
                  "off; with --mixup: one or the other per batch)")
      ->capture_default_str();
  cmd->add_option("--mixup-off-epoch", o->mixup_off_epoch,
                  "Mixup and CutMix only in the first N epochs, the rest on the images as they are (0: to the end)")
      ->capture_default_str();
  cmd->add_option("--clip-grad-norm", o->clip_grad_norm,
                  "clip the gradients' total L2 norm to this before each step (0: off)")
      ->capture_default_str();
  cmd->add_option("--holdout", o->holdout,
                  "hold N training images out of training and test each epoch on them instead of the test split "
                  "(the same N on every run; for choosing settings without the test set; 0: off)")
      ->capture_default_str();
  cmd->add_flag("--tta-flip", o->tta_flip,
                "test each epoch with test-time augmentation: the logits of each image and its mirror averaged");
  add_tta_shift_option(*cmd, o->tta_shift);
  cmd->add_option("--momentum", o->momentum, "SGD momentum")->capture_default_str();
  cmd->add_flag("--nesterov", o->nesterov, "Nesterov momentum");
  cmd->add_option("--target-accuracy", o->target_accuracy,
                  "stop after the first epoch whose test top-1 reaches this percentage (0: all --epochs)")
      ->capture_default_str();
  cmd->add_option("--ema-decay", o->ema_decay,
                  "keep a moving average of the weights with this decay per step (e.g. 0.999; 0: none); the "
                  "per-epoch test and checkpoint.pth use it")
      ->capture_default_str();
  cmd->add_option("--crop-scale", o->crop_scale,
                  "MIN,MAX: the share of an image's area a training crop covers (RandomResizedCrop's scale)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--crop-pad", o->crop_pad,
                  "train on the whole image shifted by up to P source pixels each way, edges repeated "
                  "(CIFAR's pad-and-crop: torchvision's RandomCrop(padding=P, padding_mode=\"edge\")) instead of "
                  "RandomResizedCrop; --crop-scale is then unused (0: off)")
      ->capture_default_str();
  cmd->add_option("--progressive-resize", o->progressive_resize,
                  "START,FRACTION: train on START-pixel images first, growing in steps of 32 pixels to --image-size "
                  "by FRACTION of the epochs (e.g. 128,0.75; tests always at --image-size)")
      ->delimiter(',');
  cmd->add_option("--test-crop-pct", o->test_crop_pct,
                  "the per-epoch test resizes to image size / this and keeps the centre (0.875: the sample's 256 "
                  "then 224; 1: the whole image)")
      ->capture_default_str();
  cmd->add_option("--random-erase", o->random_erase,
                  "RandomErasing: the share of training images that get a random box (2-33% of the image) set to 0 "
                  "after normalisation (e.g. 0.25; 0: off)")
      ->capture_default_str();
  cmd->add_flag("--trivial-augment", o->trivial_augment,
                "TrivialAugmentWide: one of 14 operations (none, shear x/y, translate x/y, rotate, brightness, "
                "colour, contrast, sharpness, posterize, solarize, autocontrast, equalize) at a random strength on "
                "each training image");
  cmd->add_flag("--no-decay-bn-bias", o->no_decay_bn_bias, "no weight decay for batch norms and biases");
  cmd->add_option("--weight-decay,--weight_decay,--wd", o->weight_decay, "SGD weight decay")->capture_default_str();
  add_image_size_option(*cmd, o->image_size);
  cmd->add_option("--seed", o->seed, "seed for weights, shuffling and augmentation")->capture_default_str();
  resume->dir_option =
      cmd->add_option("--checkpoint-dir,--checkpoint_dir", o->checkpoint_dir, "checkpoints go to DIR/<model>/")
          ->capture_default_str();
  cmd->add_flag("--save-model,--save_model", o->save_model, "keep the best model in checkpoint.pth");
  cmd->add_flag("--restart", o->restart, "ignore resume.pt and start over");
  cmd->add_option("--resume", resume->path,
                  "continue the run that wrote this DIR/<model>/resume.pt (sets --model and --checkpoint-dir; "
                  "a run resumes from its own resume.pt without it)");
  cmd->add_option("--checkpoint-every", o->checkpoint_every, "also write resume.pt every N steps (0: epoch ends)")
      ->capture_default_str();
  cmd->add_option("--max-steps", o->max_steps, "stop after N steps in all (0: no limit)")->capture_default_str();
  cmd->add_flag("--skip-bad-images", o->skip_bad_images, "warn about undecodable images instead of stopping");
  cmd->add_flag("--gpu-decode", o->gpu_decode,
                "image folders of mixed sizes (ImageNet), streamed to a CUDA device: decode colour JPEGs on the GPU "
                "with nvJPEG (its hardware engines where the GPU has them), the other files on the CPU");
  cmd->add_option("--skip-nonfinite", o->skip_nonfinite,
                  "skip the update of up to N steps whose loss is NaN or infinite before stopping (0: the first "
                  "stops the run)")
      ->capture_default_str();
  cmd->add_option("--log-every,--print-freq,-p", o->log_every, "batches between 'loss:' lines")->capture_default_str();
  cmd->add_option("--eval-every", o->eval_every,
                  "test after every N epochs and after the last (1: every epoch; the best model is chosen among the "
                  "tested epochs)")
      ->capture_default_str();
  add_precision_options(*cmd, o->amp, o->channels_last, &o->cuda_graphs);
  add_fused_option(*cmd, o->fused);
  cmd->add_option("--weights", o->weights,
                  "fine-tune: start from this state dict saved by torch.save (either format; the classifier is "
                  "replaced when the data has another number of classes; the architecture from --model, or "
                  "from the weights when --model is not given)");
  cmd->add_flag("--freeze-backbone,--freeze_backbone", o->freeze_backbone, "train the classifier alone (with --weights)")
      ->needs("--weights");
  // a fresh model's initialisation: --weights' batch norms would replace its zeros
  cmd->add_flag("--zero-init-residual", o->zero_init_residual,
                "start the last batch norm of each residual block at zero weight, so that every block begins as its "
                "shortcut (torchvision's zero_init_residual; not with --weights)")
      ->excludes("--weights");
  add_trace_option(*cmd, *trace);
  auto dist = std::make_shared<DistFlags>();
  add_dist_options(*cmd, *dist);
  cmd->add_flag("--sync-bn,--sync_bn", o->sync_bn, "with several processes: batch-norm statistics over all of them");
  auto logdir = std::make_shared<std::string>();
  CLI::Option* logdir_option = cmd->add_option(
      "--logdir", *logdir,
      "write TensorBoard event files here (default: the checkpoint folder, DIR/<model>/; '': none)");
  cmd->callback([cmd, o, trace, resume, dist, logdir, logdir_option] {
    if (logdir_option->count() > 0) o->logdir = *logdir;
    o->recipe_applied = apply_recipe(*cmd, o->recipe);
    o->dist_timeout_s = dist->timeout_s;
    validate(*o);  // before --resume looks at files: a bad number is the first thing to hear about
    o->dist = join_or_launch(*dist);
    if (!resume->path.empty()) apply_resume(*resume, *o);
    if (!o->weights.empty() && resume->path.empty() && resume->model_option->count() == 0)
      o->model = architecture_of(o->weights);
    o->trace = trace->enabled();
    ConsoleReporter reporter;
    stop_on_signals();
    train(*o, reporter);
  });
}

}  // namespace resnet::cli
