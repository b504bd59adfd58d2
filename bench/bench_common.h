// Shared state of pensieve-kernel-bench: the thread pool and kernel context every benchmark
// uses, the read-bandwidth probe of this run, and helpers for random weights and timing.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "kernels/ops.h"
#include "quant/quantize.h"

namespace pensieve::bench {

struct Env {
  int threads = 1;
  ThreadPool* pool = nullptr;
  KernelContext* ctx = nullptr;
  double read_bw_1 = 0;  // bytes/s, best pass of the probe with 1 thread
  double read_bw_n = 0;  // bytes/s, best pass with `threads` threads
};
Env& env();

// Best of `passes` vectorised sums over `bytes` of memory with `threads` threads (bytes/s).
double read_bandwidth(int threads, size_t bytes, int passes);

// Working sets at least this large come from DRAM, not the 32 MiB L3 of the test machine.
inline constexpr int64_t kColdBytes = int64_t(256) << 20;

// A random q4 (or q8) matrix with its own buffers: random words and small scales of both
// signs, as MLX writes them (timing does not depend on the values).
struct RandomQuant {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> scales, biases;
  WeightMatrix w;
};
std::unique_ptr<RandomQuant> random_quant(int64_t rows, int64_t cols, int bits, int group, uint64_t seed);

// Times one call of fn in seconds (wall clock: the work runs on the pool's threads).
template <class F>
double time_call(F&& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void register_matmul_benchmarks();
void register_op_benchmarks();
void register_peak_benchmarks();

// Standard counters. bytes: bytes read per iteration; flops: per iteration.
void set_counters(benchmark::State& st, double seconds, double bytes, double flops, bool pct_of_bw);

}  // namespace pensieve::bench
