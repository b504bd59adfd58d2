// Int8DotPeak: the int8 multiply-accumulate ceiling of this CPU, measured with the instruction
// the fast q4 matmul is built on (kernels/x86/matmul_act8_*.cpp), so its batch figures can be read
// against a physical limit as batch 1 is read against the bandwidth probe.
//
//   avx512: vpdpbusd zmm (64 u8 x s8 products per instruction), on CPUs with AVX-512 VNNI
//   (not written for the AVX2 and NEON tables yet).
//
// Ten independent chains per thread, every pool thread at once. Counters: GMAC_per_s (all
// threads), and b16_ceiling_x: the most a batch-16 q4 g64 matmul (f16 scales and biases: 0.5625
// bytes per weight) can reach in rows x tokens per second over batch 1 reading weights at the
// probe's bandwidth, = peak MAC/s / (read bandwidth / 0.5625). A target above it needs more
// integer throughput than the cores have, whatever the kernel does.
#include <cstring>

#include "bench/bench_common.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pensieve::bench {
namespace {

#if defined(__x86_64__)
// Ten accumulators, each a named variable (an array of them was kept in memory by GCC, which
// measured the store-to-load forwarding instead of the multiplier), made opaque to the compiler
// after every round by an empty asm, so it can neither hoist nor merge the products.
#define CHAINS(M) M(a0) M(a1) M(a2) M(a3) M(a4) M(a5) M(a6) M(a7) M(a8) M(a9)
#define KEEP()                                                                                                  \
  asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8), \
                    "+v"(a9))

template <class V>
int64_t sum_lanes(const V& v) {
  int32_t lanes[sizeof(V) / 4];
  std::memcpy(lanes, &v, sizeof(V));
  int64_t r = 0;
  for (int32_t x : lanes) r += x;
  return r;
}

// Returns a value that depends on every chain, so nothing is optimised away.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) int64_t dot_loop_avx512(int64_t iters, int8_t seed) {
  const __m512i b = _mm512_set1_epi8(seed), c = _mm512_set1_epi8(int8_t(seed + 1));
#define INIT(x) __m512i x = _mm512_set1_epi32(seed);
  CHAINS(INIT)
#undef INIT
  for (int64_t n = 0; n < iters; ++n) {
#define STEP(x) x = _mm512_dpbusd_epi32(x, b, c);
    CHAINS(STEP)
#undef STEP
    KEEP();
  }
  int64_t r = 0;
#define SUM(x) r += sum_lanes(x);
  CHAINS(SUM)
#undef SUM
  return r;
}

volatile int8_t g_seed = 1;   // read at run time: the chains' inputs are not constants
volatile int64_t g_sink = 0;

void BM_Int8DotPeak(benchmark::State& st) {
  const int64_t iters = 20'000'000;  // per thread: ~25 ms
  const double macs_per_iter = 10.0 * 64;
  ThreadPool& pool = *env().pool;
  const int threads = pool.size();
  double seconds = 0;
  for (auto _ : st) {
    const int8_t seed = g_seed;
    double t = time_call([&] {
      pool.parallel_for(threads, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) g_sink = dot_loop_avx512(iters, seed);
      });
    });
    st.SetIterationTime(t);
    seconds += t;
  }
  const double macs = macs_per_iter * double(iters) * threads * double(st.iterations());
  st.counters["GMAC_per_s"] = macs / seconds / 1e9;
  if (env().read_bw_n > 0) st.counters["b16_ceiling_x"] = macs / seconds / (env().read_bw_n / 0.5625);
}
#endif  // __x86_64__

}  // namespace

void register_peak_benchmarks() {
#if defined(__x86_64__)
  const bool vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
  if (vnni) benchmark::RegisterBenchmark("Int8DotPeak/avx512_vpdpbusd", BM_Int8DotPeak)->UseManualTime()->Iterations(5);
#endif
}

}  // namespace pensieve::bench
