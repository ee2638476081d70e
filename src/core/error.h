// Errors the command line turns into exit codes and one-line messages.
//
// UsageError: the user asked for something that cannot be (unknown model, bad flag value);
// the CLI prints the message and exits with 2, as argparse and CLI11 do for bad flags.
// InputError: a file or data set is missing or malformed; the message names it; exit 1.
#pragma once

#include <stdexcept>
#include <string>

namespace resnet {

class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& message) : std::runtime_error(message) {}
};

class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace resnet
