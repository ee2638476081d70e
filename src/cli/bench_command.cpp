#include <iostream>
#include <memory>

#include "bench/throughput.h"
#include "cli/commands.h"
#include "cli/options.h"

namespace resnet::cli {

void add_bench_command(CLI::App& app) {
  auto options = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "time training (or inference) steps on synthetic data; prints one JSON line");
  add_model_option(*cmd, options->model);
  add_num_classes_option(*cmd, options->num_classes);
  add_batch_size_option(*cmd, options->batch_size);
  add_image_size_option(*cmd, options->image_size);
  add_device_option(*cmd, options->device);
  cmd->add_option("--steps", options->steps, "timed steps")->capture_default_str();
  cmd->add_option("--warmup", options->warmup, "untimed steps first (cuDNN autotuning, allocator)")
      ->capture_default_str();
  add_precision_options(*cmd, options->amp, options->channels_last, &options->cuda_graphs);
  add_fused_option(*cmd, options->fused);
  cmd->add_flag("--inference", options->inference, "time the forward pass alone (eval mode, no autograd)");
  cmd->add_option("--seed", options->seed, "seed for the synthetic data and weights")->capture_default_str();
  cmd->add_option("--trace", options->trace,
                  "after the timed steps, profile 5 more (eagerly) and write a Chrome trace to this file; the "
                  "operator table and the time per kind of operator go to standard error");
  auto dist = std::make_shared<DistFlags>();
  add_dist_options(*cmd, *dist);
  cmd->callback([options, dist] {
    options->dist_timeout_s = dist->timeout_s;
    options->dist = join_or_launch(*dist);
    const BenchResult result = run_bench(*options);
    if (result.rank == 0) std::cout << to_json(result).dump() << std::endl;  // one line for the job
    if (result.rank == 0 && !result.profile.empty()) std::cerr << result.profile;
  });
}

}  // namespace resnet::cli
