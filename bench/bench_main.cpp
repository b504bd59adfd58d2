// pensieve-kernel-bench: CPU kernel microbenchmarks (Google Benchmark).
//
//   pensieve-kernel-bench [--threads=N] [--probe_mib=M] [benchmark flags...]
//     --threads=N      threads in the pool (default: PENSIEVE_THREADS, else all CPUs)
//     --probe_mib=M    size of the read-bandwidth probe (default 1024 MiB)
//   PENSIEVE_CPU=ref|avx2|avx512|neon|dotprod picks the kernel table (default: the best).
//   Standard flags work: --benchmark_filter=REGEX, --benchmark_format=json, ...
//
// Before any benchmark runs, the probe measures the machine's read bandwidth (best of several
// passes of a vectorised sum with 1 and N threads) in this same process; matvec and attention
// decode report pct_of_read_bw against the N-thread figure. Int8DotPeak (bench_peak.cpp) measures
// the other ceiling, the cores' int8 multiply-accumulate rate, which bounds batched matmuls.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bench/bench_common.h"

namespace pensieve::bench {

Env& env() {
  static Env e;
  return e;
}

namespace {

// The probe's inner loop: four independent vector accumulators (GCC vector extension: 64-byte
// vectors split into whatever registers the target has). The AVX-512 clone is taken when the
// CPU has it, so the probe reads as fast as the widest kernels can.
typedef float v16 __attribute__((vector_size(64)));
#if defined(__x86_64__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
float sum_floats(const float* p, int64_t n) {
  v16 a{}, b{}, c{}, d{};
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    v16 x, y, z, w;
    std::memcpy(&x, p + i, 64);
    std::memcpy(&y, p + i + 16, 64);
    std::memcpy(&z, p + i + 32, 64);
    std::memcpy(&w, p + i + 48, 64);
    a += x;
    b += y;
    c += z;
    d += w;
  }
  a += b + c + d;
  float s = 0;
  for (int i = 0; i < 16; ++i) s += a[i];
  return s;
}

std::vector<float>& probe_buffer() {
  static std::vector<float> buf;
  return buf;
}

// One pass of the probe: the buffer split into 16 chunks per thread, taken dynamically so
// every thread keeps reading until the end.
double probe_pass(ThreadPool& pool) {
  const std::vector<float>& buf = probe_buffer();
  const int64_t chunks = 16 * pool.size(), per = int64_t(buf.size()) / chunks;
  std::vector<float> part(static_cast<size_t>(chunks));
  double s = time_call([&] {
    pool.parallel_for(chunks, 1, [&](int64_t c0, int64_t) { part[size_t(c0)] = sum_floats(buf.data() + c0 * per, per); });
  });
  volatile float sink = 0;
  for (float v : part) sink = sink + v;
  return double(chunks * per) * 4 / s;
}

// Passes of the probe as a benchmark (bytes_per_second over them; best_GBps is the figure
// pct_of_read_bw uses).
void BM_ReadBandwidth(benchmark::State& st) {
  const int threads = int(st.range(0));
  ThreadPool pool(threads);
  double seconds = 0;
  for (auto _ : st) {
    double bw = probe_pass(pool);
    double s = double(probe_buffer().size()) * 4 / bw;
    st.SetIterationTime(s);
    seconds += s;
  }
  st.SetBytesProcessed(int64_t(double(probe_buffer().size()) * 4 * double(st.iterations())));
  st.counters["best_GBps"] = (threads == 1 ? env().read_bw_1 : env().read_bw_n) / 1e9;
}

}  // namespace

double read_bandwidth(int threads, size_t bytes, int passes) {
  std::vector<float>& buf = probe_buffer();
  if (buf.size() * 4 < bytes) buf.assign(bytes / 4, 1.0f);
  ThreadPool pool(threads);
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) best = std::max(best, probe_pass(pool));
  return best;
}

std::unique_ptr<RandomQuant> random_quant(int64_t rows, int64_t cols, int bits, int group, uint64_t seed) {
  auto q = std::make_unique<RandomQuant>();
  q->packed.resize(size_t(rows * cols * bits / 32));
  q->scales.resize(size_t(rows * cols / group));
  q->biases.resize(q->scales.size());
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&s] {  // xorshift64*
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  };
  for (uint32_t& v : q->packed) v = uint32_t(next() >> 32);
  for (size_t i = 0; i < q->scales.size(); ++i) {
    float sc = 0.002f + float(next() >> 40) * (0.01f / 16777216.0f);
    if (next() & 1) sc = -sc;
    q->scales[i] = f32_to_f16(sc);
    q->biases[i] = f32_to_f16(-7.5f * sc);
  }
  auto m = make_quant_matrix(bits, group, rows, cols, q->packed.data(), int64_t(q->packed.size()) * 4, q->scales.data(),
                             int64_t(q->scales.size()) * 2, q->biases.data(), int64_t(q->biases.size()) * 2, DType::f16);
  if (!m.ok()) {
    std::fprintf(stderr, "random_quant: %s\n", m.error().c_str());
    std::exit(1);
  }
  q->w = *m;
  return q;
}

void set_counters(benchmark::State& st, double seconds, double bytes, double flops, bool pct_of_bw) {
  const double iters = double(st.iterations());
  st.SetBytesProcessed(int64_t(bytes * iters));
  if (seconds <= 0) return;
  if (flops > 0) st.counters["GFLOP/s"] = flops * iters / seconds / 1e9;
  if (pct_of_bw && env().read_bw_n > 0) st.counters["pct_of_read_bw"] = 100.0 * bytes * iters / seconds / env().read_bw_n;
}

}  // namespace pensieve::bench

int main(int argc, char** argv) {
  using namespace pensieve;
  using namespace pensieve::bench;
  int threads = ThreadPool::default_threads();
  size_t probe_mib = 1024;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) threads = std::max(1, std::atoi(argv[i] + 10));
    else if (std::strncmp(argv[i], "--probe_mib=", 12) == 0) probe_mib = size_t(std::max(16, std::atoi(argv[i] + 12)));
    else args.push_back(argv[i]);
  }
  int n_args = int(args.size());
  benchmark::Initialize(&n_args, args.data());
  if (benchmark::ReportUnrecognizedArguments(n_args, args.data())) return 1;

  ThreadPool pool(threads);
  KernelContext ctx(pool);
  env().threads = threads;
  env().pool = &pool;
  env().ctx = &ctx;
  env().read_bw_1 = read_bandwidth(1, probe_mib << 20, 5);
  env().read_bw_n = threads == 1 ? env().read_bw_1 : read_bandwidth(threads, probe_mib << 20, 5);
  std::fprintf(stderr, "pensieve-kernel-bench: kernels %s, %d threads, read bandwidth %.1f GB/s (1 thread), %.1f GB/s (%d)\n",
               ctx.k().name, threads, env().read_bw_1 / 1e9, env().read_bw_n / 1e9, threads);
  benchmark::AddCustomContext("pensieve_kernels", ctx.k().name);
  benchmark::AddCustomContext("pensieve_threads", std::to_string(threads));
  benchmark::AddCustomContext("read_bw_1thread_GBps", std::to_string(env().read_bw_1 / 1e9));
  benchmark::AddCustomContext("read_bw_GBps", std::to_string(env().read_bw_n / 1e9));

  auto* probe = benchmark::RegisterBenchmark("ReadBandwidth", BM_ReadBandwidth)->Arg(1)->UseManualTime()->Iterations(5);
  if (threads > 1) probe->Arg(threads);
  register_peak_benchmarks();
  register_matmul_benchmarks();
  register_op_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
