// `resnet plot`: a run's curves (loss and accuracy against the epoch and wall time) as a PNG, from
// the metrics.csv train writes.
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "plot/chart.h"
#include "plot/curves.h"

namespace resnet::cli {

namespace {

struct PlotOptions {
  std::string metrics, output, checkpoint_dir = "checkpoints", model = "resnet50";
};

void run_plot(const PlotOptions& o) {
  if (!plotting_supported()) throw UsageError(kNoCharts);
  const std::filesystem::path metrics =
      o.metrics.empty() ? std::filesystem::path(o.checkpoint_dir) / o.model / "metrics.csv"
                        : std::filesystem::path(o.metrics);
  if (!std::filesystem::exists(metrics))
    throw InputError(metrics.string() + ": no such file (train writes metrics.csv into --checkpoint-dir/<model>/; " +
                     "or pass --metrics FILE)");
  const std::string output = o.output.empty() ? (metrics.parent_path() / "curves.png").string() : o.output;
  const auto panels = run_curves(metrics.string());
  write_line_charts(output, panels, 2);
  std::cout << "Curves of " << metrics.string() << ": " << output << std::endl;
}

}  // namespace

void add_plot_command(CLI::App& app) {
  auto o = std::make_shared<PlotOptions>();
  CLI::App* cmd = app.add_subcommand("plot", "draw a run's curves (loss, accuracy) from its metrics.csv as a PNG");
  cmd->add_option("--metrics", o->metrics, "the metrics.csv to draw (default: DIR/<model>/metrics.csv)");
  cmd->add_option("--checkpoint-dir,--checkpoint_dir", o->checkpoint_dir, "where train wrote the run")
      ->capture_default_str();
  cmd->add_option("--model,-m", o->model, "the run's model (its folder under --checkpoint-dir)")->capture_default_str();
  cmd->add_option("--output,-o", o->output, "the PNG to write (default: curves.png beside metrics.csv)");
  cmd->callback([o] { run_plot(*o); });
}

}  // namespace resnet::cli
