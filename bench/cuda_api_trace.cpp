// Where a CUDA program's threads wait, and what its streams run: a CUPTI injection library for
// the GPU machine, which has no Nsight Systems (issue 15: nvJPEG's share of a gather slows 16x
// beside the training step, and only the calls it makes into CUDA can say why).
//
//   CUDA_INJECTION64_PATH=build/libcuda_api_trace.so RESNET_CUDA_TRACE=trace.txt <program> ...
//
// CUDA loads the library at the program's first CUDA call and calls InitializeInjection. Then:
// - every CUDA runtime and driver call is timed on the host and summed per thread and function
//   (count, total, longest): a call that waits for the whole GPU shows as a long one on the
//   thread that made it;
// - every kernel and copy the GPU runs is summed per stream (count, time running, and the time
//   from its launch to its start: long where the work queued behind other work).
// The report is written when the program exits (to RESNET_CUDA_TRACE, else stderr). Only threads
// and streams above RESNET_CUDA_TRACE_MIN_MS (default 5) of time are listed, each thread's
// RESNET_CUDA_TRACE_TOP (default 12) longest functions. Its own cost: a few
// microseconds a call, so read it for waits of milliseconds, not for the program's speed.
#include <cupti.h>
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Total {
  uint64_t count = 0, ns = 0, max_ns = 0;
  void add(uint64_t t) {
    ++count;
    ns += t;
    max_ns = std::max(max_ns, t);
  }
};

struct ThreadCalls {
  std::string name;  // the thread's name when it first called CUDA (pthread_getname_np)
  int index = 0;     // in the order threads first called CUDA
  std::map<std::string, Total> calls;  // "runtime:cudaFoo" or "driver:cuBar"
  std::mutex mutex;                    // (the report reads it from another thread)
};

struct StreamWork {
  Total kernels, copies, waited;  // waited: launch to start, each kernel and copy
  std::map<std::string, Total> by_name;
};

std::mutex g_mutex;
std::vector<std::unique_ptr<ThreadCalls>> g_threads;
std::map<uint32_t, StreamWork> g_streams;  // by CUPTI's stream id (under g_mutex)
CUpti_SubscriberHandle g_subscriber;

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

ThreadCalls& this_thread() {
  thread_local ThreadCalls* mine = nullptr;
  if (!mine) {
    auto t = std::make_unique<ThreadCalls>();
    char name[32] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    t->name = name;
    std::lock_guard<std::mutex> lock(g_mutex);
    t->index = static_cast<int>(g_threads.size());
    mine = t.get();
    g_threads.push_back(std::move(t));
  }
  return *mine;
}

void CUPTIAPI on_call(void*, CUpti_CallbackDomain domain, CUpti_CallbackId, const void* data) {
  const auto* info = static_cast<const CUpti_CallbackData*>(data);
  if (info->callbackSite == CUPTI_API_ENTER) {
    *info->correlationData = now_ns();
    return;
  }
  const uint64_t took = now_ns() - *info->correlationData;
  ThreadCalls& t = this_thread();
  std::string key = (domain == CUPTI_CB_DOMAIN_RUNTIME_API ? "runtime:" : "driver:");
  key += info->functionName ? info->functionName : "?";
  std::lock_guard<std::mutex> lock(t.mutex);
  t.calls[key].add(took);
}

constexpr size_t kBufferBytes = 8 << 20;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* record = nullptr;
  std::lock_guard<std::mutex> lock(g_mutex);
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) {
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
      StreamWork& s = g_streams[k->streamId];
      s.kernels.add(k->end - k->start);
      if (k->queued != 0 && k->start > k->queued) s.waited.add(k->start - k->queued);
      s.by_name[k->name ? k->name : "?"].add(k->end - k->start);
    } else if (record->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      const auto* c = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
      StreamWork& s = g_streams[c->streamId];
      s.copies.add(c->end - c->start);
      s.by_name["(copy " + std::to_string(c->copyKind) + ")"].add(c->end - c->start);
    }
  }
  std::free(buffer);
}

double ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

template <class Map>
std::vector<typename Map::const_iterator> largest(const Map& m, size_t n) {
  std::vector<typename Map::const_iterator> v;
  for (auto it = m.begin(); it != m.end(); ++it) v.push_back(it);
  std::sort(v.begin(), v.end(), [](auto a, auto b) { return a->second.ns > b->second.ns; });
  if (v.size() > n) v.resize(n);
  return v;
}

void report() {
  cuptiActivityFlushAll(1);
  const char* path = std::getenv("RESNET_CUDA_TRACE");
  FILE* f = path ? std::fopen(path, "w") : nullptr;
  if (!f) f = stderr;
  const char* min_env = std::getenv("RESNET_CUDA_TRACE_MIN_MS");
  const double min_ms = min_env ? std::atof(min_env) : 5.0;
  const char* top_env = std::getenv("RESNET_CUDA_TRACE_TOP");
  const size_t top = top_env ? static_cast<size_t>(std::max(1, std::atoi(top_env))) : 12;
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(f, "# CUDA calls per thread (host time in the call; threads over %.1f ms)\n", min_ms);
  for (auto& t : g_threads) {
    std::lock_guard<std::mutex> tlock(t->mutex);
    uint64_t total = 0;
    for (auto& [name, c] : t->calls) total += c.ns;
    if (ms(total) < min_ms) continue;
    std::fprintf(f, "thread %d (%s): %.1f ms in CUDA calls\n", t->index, t->name.c_str(), ms(total));
    for (auto it : largest(t->calls, top))
      std::fprintf(f, "  %-48s %8llu calls %10.1f ms  longest %8.2f ms\n", it->first.c_str(),
                   static_cast<unsigned long long>(it->second.count), ms(it->second.ns), ms(it->second.max_ns));
  }
  std::fprintf(f, "# GPU work per stream (streams over %.1f ms running)\n", min_ms);
  for (auto& [id, s] : g_streams) {
    if (ms(s.kernels.ns + s.copies.ns) < min_ms) continue;
    std::fprintf(f,
                 "stream %u: %llu kernels %.1f ms, %llu copies %.1f ms; launch to start: mean %.3f ms, "
                 "longest %.2f ms\n",
                 id, static_cast<unsigned long long>(s.kernels.count), ms(s.kernels.ns),
                 static_cast<unsigned long long>(s.copies.count), ms(s.copies.ns),
                 s.waited.count ? ms(s.waited.ns) / static_cast<double>(s.waited.count) : 0.0, ms(s.waited.max_ns));
    for (auto it : largest(s.by_name, 6))
      std::fprintf(f, "  %-72.72s %8llu x %10.1f ms  longest %8.3f ms\n", it->first.c_str(),
                   static_cast<unsigned long long>(it->second.count), ms(it->second.ns), ms(it->second.max_ns));
  }
  if (f != stderr) std::fclose(f);
}

bool ok(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return true;
  const char* text = nullptr;
  cuptiGetResultString(r, &text);
  std::fprintf(stderr, "cuda_api_trace: %s: %s\n", what, text ? text : "?");
  return false;
}

}  // namespace

extern "C" int InitializeInjection() {
  if (!ok(cuptiSubscribe(&g_subscriber, reinterpret_cast<CUpti_CallbackFunc>(on_call), nullptr), "subscribe") ||
      !ok(cuptiEnableDomain(1, g_subscriber, CUPTI_CB_DOMAIN_RUNTIME_API), "runtime calls") ||
      !ok(cuptiEnableDomain(1, g_subscriber, CUPTI_CB_DOMAIN_DRIVER_API), "driver calls"))
    return 0;
  if (ok(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "activity buffers")) {
    ok(cuptiActivityEnableLatencyTimestamps(1), "launch timestamps");
    ok(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "kernels");
    ok(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY), "copies");
  }
  std::atexit(report);
  return 1;
}
