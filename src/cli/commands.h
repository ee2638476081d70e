// One function per subcommand: each adds its flags to the app and a callback that calls the
// library. Files: src/cli/<name>_command.cpp.
#pragma once

#include <CLI/CLI.hpp>

namespace resnet::cli {

void add_bench_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_test_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_plot_command(CLI::App& app);

}  // namespace resnet::cli
