#include "core/env.h"

#include <cstdlib>

#include "core/error.h"

namespace resnet {

int whole_number_from_env(const char* name, const char* value, long least, long most, const std::string& what) {
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  if (*value == '\0' || *end != '\0' || n < least || n > most)
    throw UsageError(std::string("environment variable ") + name + " must be " + what + " (got '" + value + "')");
  return static_cast<int>(n);
}

}  // namespace resnet
