// The batch-norm kernels of the fused fp16 ResNet-50 step (ops/batch_norm_kernels.cuh) on every
// shape they see at one batch size, timed under the grid and unroll their launchers use today and
// under other settings: blocks per multiprocessor (the grid's size) and rows a thread loads before
// it uses them (the unroll). One JSON line per kernel, shape and setting on stdout's log (--log),
// then a table: each kernel and shape now and at its best setting, in ms and TB/s, and the sum over
// the step (each shape counted as often as ResNet-50 runs it). Needs no LibTorch.
//
//   bn_tiling_probe [--batch-size 256] [--runs 20] [--log FILE]
//
// The kernels (what the fused step calls them for):
//   end_add      bn_apply, ReLU, residual added: an identity block's end
//   end_norm     bn_apply, ReLU, residual normalised and added: a downsample block's end
//   end_reduce   bn_backward_reduce + finalize: an identity block's end, backward sums
//   end_apply    bn_backward_apply, ReLU, residual's gradient written: its input gradients
//   pair_reduce  bn_pair_backward_reduce + two finalizes: a downsample block's end, backward sums
//   pair_apply   bn_pair_backward_apply: both input gradients
//   grad_apply   bn_grad_apply: bn1's and bn2's input gradients after cuDNN's dgrad
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ops/batch_norm_kernels.cuh"

namespace {

using resnet::cuda::Tiling;
using resnet::cuda::tiling;
namespace k = resnet::cuda;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bn_tiling_probe: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

enum Kind { kEndAdd, kEndNorm, kEndReduce, kEndApply, kPairReduce, kPairApply, kGradApply };
const char* const kKindNames[] = {"end_add", "end_norm", "end_reduce", "end_apply", "pair_reduce", "pair_apply",
                                  "grad_apply"};
// 16-bit tensors of rows x C each kernel reads and writes (the fp32 per-channel vectors aside)
const int kTensorsMoved[] = {3, 3, 3, 5, 4, 6, 3};
// The launchers' settings today (batch_norm_kernels.cu): blocks per SM and unroll.
int current_blocks_per_sm(Kind kind) {
  return kind == kEndReduce || kind == kPairReduce ? k::kStatsBlocksPerSm : k::kApplyBlocksPerSm;
}
int current_unroll(Kind) { return k::kUnroll; }

struct Shape {
  Kind kind;
  int64_t pixels;  // H x W per image
  int C;
  int count;  // times a ResNet-50 step runs it
};

// ResNet-50 (torchvision v1.5: the stride on conv2): block ends at layer1..4 (3, 4, 6, 3 blocks,
// the first of each a downsample block); bn1 and bn2 of every block.
std::vector<Shape> resnet50_shapes() {
  std::vector<Shape> s;
  const int64_t side[] = {56, 28, 14, 7};
  const int width[] = {64, 128, 256, 512}, blocks[] = {3, 4, 6, 3};
  for (int l = 0; l < 4; ++l) {
    const int64_t px = side[l] * side[l];
    const int out = 4 * width[l];
    s.push_back({kEndAdd, px, out, blocks[l] - 1});
    s.push_back({kEndNorm, px, out, 1});
    s.push_back({kEndReduce, px, out, blocks[l] - 1});
    s.push_back({kEndApply, px, out, blocks[l] - 1});
    s.push_back({kPairReduce, px, out, 1});
    s.push_back({kPairApply, px, out, 1});
    // bn1 of the first block runs at the layer's input size (the stride comes at conv2)
    const int64_t in_px = l == 0 ? px : side[l - 1] * side[l - 1];
    s.push_back({kGradApply, in_px, width[l], 1});
    s.push_back({kGradApply, px, width[l], 2 * blocks[l] - 1});
  }
  return s;
}

struct Buffers {
  __half *a, *b, *c, *d, *e, *f;  // 16-bit tensors, each as large as the largest shape
  float *vec[8];                  // per-channel vectors (scale/shift, means, coefficients...)
  float* partial;                 // chunk sums
};

__global__ void fill(__half* p, int64_t n, uint32_t seed, float offset) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    p[i] = __float2half(static_cast<float>(h & 0xffff) / 32768.f - 1.f + offset);
  }
}

__global__ void fill_vector(float* p, int n, float value) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) p[i] = value;
}

template <int U>
void launch(Kind kind, const Tiling& t, int64_t rows, int C, Buffers& m) {
  const int chunks = static_cast<int>(t.grid.x);
  float* p1 = m.partial;
  float* p2 = m.partial + 2 * static_cast<int64_t>(chunks) * C;
  const dim3 fin((C + 31) / 32), fin_block(32, 8);
  switch (kind) {
    case kEndAdd:
      k::bn_apply<__half, true, k::kAddResidual, U><<<t.grid, t.block>>>(m.a, m.b, m.c, rows, C, t.chunk, m.vec[0],
                                                                          nullptr);
      break;
    case kEndNorm:
      k::bn_apply<__half, true, k::kAddNormalisedResidual, U><<<t.grid, t.block>>>(m.a, m.b, m.c, rows, C, t.chunk,
                                                                                    m.vec[0], m.vec[1]);
      break;
    case kEndReduce:
      k::bn_backward_reduce<__half, true, U><<<t.grid, t.block>>>(m.a, m.b, m.c, rows, C, t.chunk, m.vec[2], p1);
      k::bn_finalize_backward<<<fin, fin_block>>>(p1, chunks, rows, C, m.vec[3], m.vec[4], m.vec[5], m.vec[6],
                                                  m.vec[7]);
      break;
    case kEndApply:
      k::bn_backward_apply<__half, true, true, U><<<t.grid, t.block>>>(m.a, m.b, m.c, m.d, m.e, rows, C, t.chunk,
                                                                        m.vec[7], m.vec[2]);
      break;
    case kPairReduce:
      k::bn_pair_backward_reduce<__half, true, U><<<t.grid, t.block>>>(m.a, m.b, m.c, m.d, rows, C, t.chunk, m.vec[2],
                                                                        m.vec[3], p1, p2);
      k::bn_finalize_backward<<<fin, fin_block>>>(p1, chunks, rows, C, m.vec[3], m.vec[4], m.vec[5], m.vec[6],
                                                  m.vec[7]);
      k::bn_finalize_backward<<<fin, fin_block>>>(p2, chunks, rows, C, m.vec[3], m.vec[4], m.vec[5], m.vec[6],
                                                  m.vec[1]);
      break;
    case kPairApply:
      k::bn_pair_backward_apply<__half, true, U><<<t.grid, t.block>>>(m.a, m.b, m.c, m.d, m.e, m.f, rows, C, t.chunk,
                                                                       m.vec[7], m.vec[1], m.vec[2], m.vec[3]);
      break;
    case kGradApply:
      k::bn_grad_apply<__half, U><<<t.grid, t.block>>>(m.a, m.b, m.c, rows, C, t.chunk, m.vec[7]);
      break;
  }
}

void launch_unrolled(int unroll, Kind kind, const Tiling& t, int64_t rows, int C, Buffers& m) {
  switch (unroll) {
    case 1: launch<1>(kind, t, rows, C, m); break;
    case 2: launch<2>(kind, t, rows, C, m); break;
    case 4: launch<4>(kind, t, rows, C, m); break;
    default: launch<8>(kind, t, rows, C, m); break;
  }
}

template <int U>
const void* kernel_of(Kind kind) {
  switch (kind) {
    case kEndAdd: return reinterpret_cast<const void*>(k::bn_apply<__half, true, k::kAddResidual, U>);
    case kEndNorm: return reinterpret_cast<const void*>(k::bn_apply<__half, true, k::kAddNormalisedResidual, U>);
    case kEndReduce: return reinterpret_cast<const void*>(k::bn_backward_reduce<__half, true, U>);
    case kEndApply: return reinterpret_cast<const void*>(k::bn_backward_apply<__half, true, true, U>);
    case kPairReduce: return reinterpret_cast<const void*>(k::bn_pair_backward_reduce<__half, true, U>);
    case kPairApply: return reinterpret_cast<const void*>(k::bn_pair_backward_apply<__half, true, U>);
    default: return reinterpret_cast<const void*>(k::bn_grad_apply<__half, U>);
  }
}

// Registers a thread and blocks a multiprocessor holds at once, per kernel and unroll.
void print_occupancy() {
  std::printf("registers / resident blocks per SM, unroll 1 2 4 8:\n");
  for (int kind = kEndAdd; kind <= kGradApply; ++kind) {
    std::printf("  %-12s", kKindNames[kind]);
    for (const void* f : {kernel_of<1>(Kind(kind)), kernel_of<2>(Kind(kind)), kernel_of<4>(Kind(kind)),
                          kernel_of<8>(Kind(kind))}) {
      cudaFuncAttributes attr{};
      int blocks = 0;
      check(cudaFuncGetAttributes(&attr, f), "attributes");
      check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, f, k::kThreads, 0), "occupancy");
      std::printf(" %3d/%d", attr.numRegs, blocks);
    }
    std::printf("\n");
  }
}

// Milliseconds a launch (mean over `runs`, after two untimed).
float time_ms(int unroll, Kind kind, const Tiling& t, int64_t rows, int C, Buffers& m, int runs) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  for (int i = 0; i < 2; ++i) launch_unrolled(unroll, kind, t, rows, C, m);
  check(cudaEventRecord(start), "record");
  for (int i = 0; i < runs; ++i) launch_unrolled(unroll, kind, t, rows, C, m);
  check(cudaEventRecord(stop), "record");
  check(cudaEventSynchronize(stop), "synchronize");
  check(cudaGetLastError(), kKindNames[kind]);
  float ms = 0.f;
  check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / static_cast<float>(runs);
}

struct Result {
  float ms;
  int blocks_per_sm, unroll;
};

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 256;
  int runs = 20;
  const char* log_path = nullptr;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (!std::strcmp(argv[i], "--batch-size") && has_value) batch = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--runs") && has_value) runs = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--log") && has_value) log_path = argv[++i];
    else {
      std::fprintf(stderr, "usage: bn_tiling_probe [--batch-size N] [--runs N] [--log FILE]\n");
      return 2;
    }
  }
  if (batch < 1 || runs < 1) {
    std::fprintf(stderr, "bn_tiling_probe: --batch-size and --runs must be at least 1\n");
    return 2;
  }
  int device = 0, sm_count = 0;
  check(cudaGetDevice(&device), "device");
  check(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device), "attribute");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "properties");
  FILE* log = log_path ? std::fopen(log_path, "w") : nullptr;
  if (log_path && !log) {
    std::fprintf(stderr, "bn_tiling_probe: cannot write %s\n", log_path);
    return 1;
  }

  const std::vector<Shape> shapes = resnet50_shapes();
  int64_t most = 0;
  for (const Shape& s : shapes) most = std::max(most, batch * s.pixels * s.C);
  const int blocks_per_sm[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32};
  const int unrolls[] = {1, 2, 4, 8};
  Buffers m{};
  for (__half** p : {&m.a, &m.b, &m.c, &m.d, &m.e, &m.f}) check(cudaMalloc(p, most * sizeof(__half)), "malloc");
  uint32_t seed = 1;
  for (__half* p : {m.a, m.b, m.c, m.d, m.e, m.f}) fill<<<1024, 256>>>(p, most, seed++, 0.25f);
  for (float*& v : m.vec) {
    check(cudaMalloc(&v, 3 * 2048 * sizeof(float)), "malloc");
    fill_vector<<<24, 256>>>(v, 3 * 2048, 0.5f);
  }
  const int64_t most_chunks = int64_t{sm_count} * 32 + 1024;
  check(cudaMalloc(&m.partial, 4 * most_chunks * 2048 * sizeof(float)), "malloc");
  check(cudaDeviceSynchronize(), "fill");
  std::printf("%s, %d SMs, batch %lld, %d runs a setting\n", prop.name, sm_count, static_cast<long long>(batch), runs);

  print_occupancy();
  std::printf("%-12s %8s %5s %5s | %8s %7s | %8s %7s %4s %3s | %6s\n", "kernel", "rows", "C", "count", "now ms",
              "TB/s", "best ms", "TB/s", "bpsm", "unr", "gain");
  double step_now = 0, step_best = 0;
  for (const Shape& s : shapes) {
    const int64_t rows = batch * s.pixels;
    const double bytes = static_cast<double>(kTensorsMoved[s.kind]) * rows * s.C * sizeof(__half);
    const Tiling now_tiling = tiling(rows, s.C, sm_count, current_blocks_per_sm(s.kind));
    const Result now{time_ms(current_unroll(s.kind), s.kind, now_tiling, rows, s.C, m, runs),
                     current_blocks_per_sm(s.kind), current_unroll(s.kind)};
    Result best = now;
    for (int bps : blocks_per_sm)
      for (int u : unrolls) {
        const Tiling t = tiling(rows, s.C, sm_count, bps);
        const float ms = time_ms(u, s.kind, t, rows, s.C, m, runs);
        if (log)
          std::fprintf(log,
                       "{\"kernel\": \"%s\", \"rows\": %lld, \"C\": %d, \"blocks_per_sm\": %d, \"unroll\": %d, "
                       "\"grid\": [%u, %u], \"block\": [%u, %u], \"ms\": %.5f, \"tb_s\": %.3f}\n",
                       kKindNames[s.kind], static_cast<long long>(rows), s.C, bps, u, t.grid.x, t.grid.y, t.block.x,
                       t.block.y, ms, bytes / ms * 1e-9);
        if (ms < best.ms) best = {ms, bps, u};
      }
    step_now += s.count * now.ms;
    step_best += s.count * best.ms;
    std::printf("%-12s %8lld %5d %5d | %8.4f %7.2f | %8.4f %7.2f %4d %3d | %5.1f%%\n", kKindNames[s.kind],
                static_cast<long long>(rows), s.C, s.count, now.ms, bytes / now.ms * 1e-9, best.ms,
                bytes / best.ms * 1e-9, best.blocks_per_sm, best.unroll, 100.0 * (now.ms - best.ms) / now.ms);
  }
  std::printf("step total in these kernels: %.3f ms now, %.3f ms at each one's best setting\n", step_now, step_best);
  if (log) std::fclose(log);
  return 0;
}
