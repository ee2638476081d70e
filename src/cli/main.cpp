// resnet: the command line. Parses flags and hands each subcommand to the library; maps errors
// to exit codes: 0 success, 1 bad input file or run-time failure, 2 bad usage (flags, names).
#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include <iostream>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"resnet.cpp: train, test and serve ResNet image classifiers with LibTorch", "resnet"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "resnet.cpp 0.1.0");
  resnet::cli::add_data_command(app);
  resnet::cli::add_train_command(app);
  resnet::cli::add_test_command(app);
  resnet::cli::add_predict_command(app);
  resnet::cli::add_bench_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const resnet::UsageError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {  // InputError, DownloadError, file system errors
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
