// Helpers shared by the tests: normalised error (as ggml's test-backend-ops and llm.c compare),
// temporary folders, and running the `resnet` binary.
#pragma once

#include <torch/types.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "core/error.h"
#include "models/classifier.h"

namespace resnet::test {

// ||a - b|| / ||b||, in float64; infinite when shapes differ or a value is not finite.
inline double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) return std::numeric_limits<double>::infinity();
  auto x = a.detach().to(torch::kCPU, torch::kDouble);
  auto y = b.detach().to(torch::kCPU, torch::kDouble);
  if (!torch::isfinite(x).all().item<bool>()) return std::numeric_limits<double>::infinity();
  const double denom = y.norm().item<double>();
  const double diff = (x - y).norm().item<double>();
  return denom == 0.0 ? diff : diff / denom;
}

// An environment variable set (or, with nullptr, unset) for a scope; its value before back at the
// end, also when an assertion returns early. Only while no other thread reads the environment
// (setenv is not safe beside getenv): before a loader or decoder starts its threads.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* before = std::getenv(name);
    if (before) before_ = before;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (before_) setenv(name_.c_str(), before_->c_str(), 1);
    else unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> before_;
};

// A fresh, empty folder under the system's temporary folder, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "resnet-test-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// cuDNN deterministic and not autotuned for a scope (GPU parity tests that compare two runs),
// the previous settings back at its end, also when an assertion returns early.
class DeterministicCudnn {
 public:
  DeterministicCudnn()
      : benchmark_(at::globalContext().benchmarkCuDNN()), deterministic_(at::globalContext().deterministicCuDNN()) {
    at::globalContext().setBenchmarkCuDNN(false);
    at::globalContext().setDeterministicCuDNN(true);
  }
  ~DeterministicCudnn() {
    at::globalContext().setDeterministicCuDNN(deterministic_);
    at::globalContext().setBenchmarkCuDNN(benchmark_);
  }
  DeterministicCudnn(const DeterministicCudnn&) = delete;
  DeterministicCudnn& operator=(const DeterministicCudnn&) = delete;

 private:
  bool benchmark_, deterministic_;
};

// The message of the InputError that `f` throws, or "(no InputError)".
inline std::string input_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const resnet::InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line and captures what it prints (add 2>&1 for stderr too).
inline CommandResult run_shell(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// Runs `resnet <args>` through the shell and captures what it prints.
inline CommandResult run_resnet(const std::string& args) {
  return run_shell(std::string(RESNET_BINARY) + " " + args + " 2>&1");
}

// A model that sees where things are, for tests of test-time views (8 x 8 images or larger): one
// logit a region's mean (the left 3 columns, the top 2 rows, the pixel at row 4, column 4), so a
// shift or a mirror changes the logits.
struct RegionsModel : Classifier {
  RegionsModel() : Classifier("regions", 3) {}
  torch::Tensor forward(torch::Tensor x) override {
    const auto left = x.narrow(3, 0, 3).mean({1, 2, 3}), top = x.narrow(2, 0, 2).mean({1, 2, 3});
    const auto middle = x.narrow(2, 4, 1).narrow(3, 4, 1).mean({1, 2, 3});
    return torch::stack({left * 3, top * 3, middle * 3}, 1);
  }
};

}  // namespace resnet::test
