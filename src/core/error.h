// Errors the command line turns into exit codes and one-line messages.
//
// UsageError: the user asked for something that cannot be (unknown model, bad flag value);
// the CLI prints the message and exits with 2, as argparse and CLI11 do for bad flags.
// InputError: a file or data set is missing or malformed; the message names it; exit 1.
#pragma once

#include <cstdint>
#include <sstream>
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

// Checks of flag values, for the library and the command line alike: UsageError worded
// "--log-every must be at least 1 (got 0)", naming the flag as --help lists it.
inline void require_at_least(int64_t value, int64_t least, const std::string& flag) {
  if (value < least)
    throw UsageError(flag + " must be at least " + std::to_string(least) + " (got " + std::to_string(value) + ")");
}

// "--momentum must not be negative (got -5)"; NaN is refused too.
inline void require_not_negative(double value, const std::string& flag) {
  if (!(value >= 0)) {
    std::ostringstream got;
    got << value;
    throw UsageError(flag + " must not be negative (got " + got.str() + ")");
  }
}

}  // namespace resnet
