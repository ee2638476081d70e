// Work spread over the CPU's cores with LibTorch's intra-op thread pool (at::parallel_for).
//
// at::parallel_for is a header template: with LibTorch's OpenMP backend its `#pragma omp parallel`
// compiles into the caller's translation unit. A file built without -fopenmp runs it on one
// thread, silently (measured: the image decoder ran at one core's speed on a 16-core machine). So
// every file that includes this header is built with OpenMP (RESNET_OPENMP_SOURCES in
// CMakeLists.txt), and the check below stops a build that leaves one out. Call at::parallel_for
// only through here.
#pragma once

#include <ATen/Config.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#error "this file calls at::parallel_for, which needs -fopenmp here: add it to RESNET_OPENMP_SOURCES in CMakeLists.txt"
#endif

namespace resnet {

// job(i) for each i of `which` on all cores; errors[i] (sized by the caller) holds the message of
// what job(i) threw, so one bad item does not stop the others. Each thread takes the next item
// when it is done with one (jobs that differ in length, as images of different sizes, then end
// together; at::parallel_for alone would give each thread an equal run of items up front).
template <typename Job>
void each_on_all_cores(const std::vector<int64_t>& which, std::vector<std::string>& errors, Job&& job) {
  const auto n = static_cast<int64_t>(which.size());
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), n);
  at::parallel_for(0, workers, /*grain_size=*/1, [&](int64_t begin, int64_t end) {
    for (int64_t worker = begin; worker < end; ++worker) {  // (more than one only where run serially)
      for (int64_t k = next++; k < n; k = next++) {
        try {
          job(which[k]);
        } catch (const std::exception& e) {
          errors[which[k]] = e.what();
        }
      }
    }
  });
}

}  // namespace resnet
