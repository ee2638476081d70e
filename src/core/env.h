// Settings read from environment variables.
#pragma once

#include <string>

namespace resnet {

// `value` (of environment variable `name`) as a whole number from `least` to `most`; for anything
// else (empty, not a number, out of range) a UsageError: "environment variable NAME must be WHAT
// (got 'VALUE')".
int whole_number_from_env(const char* name, const char* value, long least, long most, const std::string& what);

}  // namespace resnet
