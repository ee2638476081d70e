// Shared by the libFuzzer targets (fuzz/README.md): each feeds one reader of outside data the
// fuzzer's bytes. A reader may refuse them with InputError or UsageError (a message for the
// user); anything else, an exception of another type escaping, a crash, a sanitizer finding, a
// hang or an allocation beyond the fuzzer's limit, is a bug the fuzzer reports.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"

namespace resnet::fuzz {

// A folder of this process's own under /tmp, made once and emptied by clear_scratch().
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("resnet-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline void clear_scratch() {
  for (const auto& entry : std::filesystem::directory_iterator(scratch())) std::filesystem::remove_all(entry.path());
}

// Writes the input to scratch()/name and returns its path.
inline std::string write_input(const uint8_t* data, size_t size, const std::string& name) {
  const auto path = scratch() / name;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path.string();
}

// Runs `read`; our errors for bad input are the expected outcome.
template <typename F>
void expect_clean(F&& read) {
  try {
    read();
  } catch (const InputError&) {
  } catch (const UsageError&) {
  }
}

}  // namespace resnet::fuzz
