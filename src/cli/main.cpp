// resnet: the command line. Parses flags and hands each subcommand to the library; maps errors
// to exit codes: 0 success, 1 bad input file or run-time failure, 2 bad usage (flags, names).
// Every error is one line (or a few) starting "error: ", CLI11's parse errors included.
#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include <filesystem>
#include <iostream>
#include <new>

#include "cli/commands.h"
#include "cli/console_reporter.h"
#include "cli/launch.h"
#include "cli/options.h"
#include "train/trainer.h"
#include "core/error.h"

namespace {

using resnet::cli::closest;

int usage_error(const std::string& message) {
  std::cerr << "error: " << message << "\n";
  return 2;
}

std::vector<std::string> command_names(CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
  return names;
}

std::string list(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  return out;
}

// "unknown command 'trian' (did you mean 'train'?)", or with the list of commands.
std::string unknown_command(CLI::App& app, const std::string& word) {
  const auto names = command_names(app);
  const std::string near = closest(word, names);
  return "unknown command '" + word + "' (" + (near.empty() ? "the commands are " + list(names) : "did you mean '" + near + "'?") +
         ")";
}

// "--epochs takes a whole number, not '1.5'" for CLI11's "Could not convert: --epochs = 1.5".
std::string conversion(CLI::App* command, const std::string& what) {
  const std::string prefix = "Could not convert: ";
  const size_t eq = what.find(" = ");
  if (command == nullptr || what.rfind(prefix, 0) != 0 || eq == std::string::npos) return what;
  const std::string flag = what.substr(prefix.size(), eq - prefix.size()), value = what.substr(eq + 3);
  std::string kind = "a value of another kind";
  for (const CLI::Option* option : command->get_options())
    if (option->get_name() == flag) {
      const std::string type = option->get_type_name();
      kind = type == "INT" || type == "UINT" ? "a whole number" : type == "FLOAT" ? "a number" : kind;
    }
  return flag + " takes " + kind + ", not '" + value + "'";
}

// A CLI11 parse error in our words; `command` is the subcommand on the line, if any.
// (CLI11's errors carry the app's name, not their kind, so the kind is told by type.)
std::string describe(CLI::App& app, CLI::App* command, const CLI::ParseError& e) {
  const std::string where = command != nullptr ? "resnet " + command->get_name() : "resnet";
  const std::string help = " (" + where + " --help lists what it takes)";
  const bool extras_or_required =
      dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr || dynamic_cast<const CLI::RequiredError*>(&e) != nullptr;
  std::vector<std::string> extras = command != nullptr ? command->remaining(false) : std::vector<std::string>{};
  for (const auto& extra : app.remaining(false)) extras.push_back(extra);
  if (extras_or_required && !extras.empty()) {
    // A misspelt flag first: its value, if any, is an extra too.
    for (const auto& extra : extras) {
      if (extra.size() < 2 || extra[0] != '-') continue;
      const std::string flag = extra.substr(0, extra.find('='));
      std::vector<std::pair<std::string, std::string>> spellings;
      if (command != nullptr) spellings = resnet::cli::option_spellings(*command);
      std::vector<std::string> names;
      for (const auto& [spelling, canonical] : spellings) names.push_back(spelling);
      std::string near = closest(flag, names);
      for (const auto& [spelling, canonical] : spellings)  // the name --help shows first
        if (!near.empty() && spelling == near) near = canonical;
      return "unknown flag " + flag + " for " + where + (near.empty() ? help : " (did you mean " + near + "?)");
    }
    if (command == nullptr) return unknown_command(app, extras.front());
    return "unexpected argument '" + extras.front() + "': " + where + " takes flags only" + help;
  }
  if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && command == nullptr)
    return "a command is required: " + list(command_names(app)) + " (resnet --help says what each does)";
  if (dynamic_cast<const CLI::ConversionError*>(&e) != nullptr) return conversion(command, e.what()) + help;
  return std::string(e.what()) + help;
}

}  // namespace

// LibTorch's messages can run to several lines (a C++ stack, a hint about allocator settings).
static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

int main(int argc, char** argv) {
  resnet::cli::set_command_line(argc, argv);
  resnet::set_log_sink(resnet::cli::console_log);
  CLI::App app{"resnet.cpp: train, test and serve ResNet image classifiers with LibTorch", "resnet"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "resnet.cpp 0.1.0");
  app.footer("resnet help COMMAND (or resnet COMMAND --help) lists the flags of COMMAND.");
  resnet::cli::add_data_command(app);
  resnet::cli::add_train_command(app);
  resnet::cli::add_test_command(app);
  resnet::cli::add_predict_command(app);
  resnet::cli::add_export_command(app);
  resnet::cli::add_bench_command(app);
  resnet::cli::add_plot_command(app);

  // The command comes first: `resnet help [COMMAND]`, or a word that is no command.
  CLI::App* command = nullptr;
  if (argc > 1 && argv[1][0] != '-') {
    const std::string word = argv[1];
    if (word == "help") {
      if (argc == 2) {
        const std::string help = app.help();
        std::cout << help << (help.empty() || help.back() != '\n' ? "\n" : "");
        return 0;
      }
      const std::string topic = argv[2];
      for (CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
        if (sub->get_name() == topic) {
          std::cout << sub->help(app.get_name());
          return 0;
        }
      return usage_error(unknown_command(app, topic));
    }
    try {
      command = app.get_subcommand(word);
    } catch (const CLI::OptionNotFound&) {
      return usage_error(unknown_command(app, word));
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    return usage_error(describe(app, command, e));
  } catch (const resnet::UsageError& e) {
    return usage_error(e.what());
  } catch (const resnet::Interrupted& e) {
    if (*e.what() != '\0') std::cerr << e.what() << "\n";
    return 128 + e.signal;
  } catch (const c10::OutOfMemoryError& e) {
    std::cerr << "error: out of GPU memory; try a smaller --batch-size (or --image-size). LibTorch said: "
              << first_line(e.what_without_backtrace()) << "\n";
    return 1;
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    if (what.find("can't allocate memory") != std::string::npos)
      std::cerr << "error: out of memory; try a smaller --batch-size (or --image-size). LibTorch said: "
                << first_line(what) << "\n";
    else  // our checks come first everywhere we know of: one reaching here is ours to fix
      std::cerr << "error: LibTorch refused an operation (" << first_line(what)
                << "); with valid input this is a bug in resnet.cpp: please report the command line\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "error: out of memory; try a smaller --batch-size (or --image-size)\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {  // the C++ library's wording: the path and the reason
    std::cerr << "error: " << (e.path1().empty() ? std::string("a file operation") : e.path1().string())
              << (e.path2().empty() ? "" : " -> " + e.path2().string()) << ": " << e.code().message()
              << " (check that the folder exists, has room and can be written)\n";
    return 1;
  } catch (const std::exception& e) {  // InputError, DownloadError and our other messages
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
