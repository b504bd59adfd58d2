// Throughput of f16 -> f32 conversion forms on one core: 8 independent add chains per loop,
// each fed by one 16-value conversion, in core cycles (TSC x 12 / 8.54: on the Zen 4 VM, 12
// independent 512-bit FMAs took 8.54 TSC cycles, i.e. one FMA per core clock at ~3.65 GHz).
// Build: g++ -O2 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c bench/results/cpu_zen4_cvt_throughput.cpp -o cvt
#include <immintrin.h>
#include <x86intrin.h>
#include <cstdio>
#include <cstdint>
#include <algorithm>
alignas(64) uint16_t h[16 * 256];
template <int MODE>
__attribute__((noinline)) float run(long iters, __mmask16 m) {
  __m512 acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = _mm512_setzero_ps();
  for (long it = 0; it < iters; ++it) {
    const uint16_t* p = h + 16 * 8 * (it & 15);
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      __m512 x;
      if constexpr (MODE == 0) x = _mm512_cvtph_ps(_mm256_load_si256((const __m256i*)(p + 16 * k)));
      else if constexpr (MODE == 1) x = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + 16 * k));
      else if constexpr (MODE == 2) x = _mm512_maskz_cvtph_ps(m, _mm256_load_si256((const __m256i*)(p + 16 * k)));
      else if constexpr (MODE == 3) {  // ymm converts: 2 x 8
        __m256 a = _mm256_cvtph_ps(_mm_load_si128((const __m128i*)(p + 16 * k)));
        __m256 b = _mm256_cvtph_ps(_mm_load_si128((const __m128i*)(p + 16 * k + 8)));
        x = _mm512_insertf32x8(_mm512_castps256_ps512(a), b, 1);
      } else if constexpr (MODE == 4) {  // integer: f16 -> f32 via shifts (normal numbers only)
        __m512i w = _mm512_cvtepu16_epi32(_mm256_load_si256((const __m256i*)(p + 16 * k)));
        x = _mm512_castsi512_ps(w);
      } else {  // plain f32 load
        x = _mm512_castsi512_ps(_mm512_load_si512(p + 16 * k));
      }
      acc[k] = _mm512_add_ps(acc[k], x);
    }
  }
  __m512 s = acc[0];
  for (int i = 1; i < 8; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}
template <int MODE> void bench(const char* name) {
  const long iters = 5000000;
  double best = 1e30;
  for (int r = 0; r < 5; ++r) {
    uint64_t t0 = __rdtsc(); volatile float f = run<MODE>(iters, 0xffff); (void)f; uint64_t t1 = __rdtsc();
    best = std::min(best, double(t1 - t0) / iters * 12 / 8.54);
  }
  printf("%-32s %.2f core cycles per 8 vectors\n", name, best);
}
int main() {
  bench<0>("cvtph2ps zmm, m256");
  bench<1>("masked vmovdqu16 + cvtph2ps");
  bench<2>("maskz cvtph2ps from mem");
  bench<3>("2x ymm cvt + insert");
  bench<4>("vpmovzxwd (int widen)");
  bench<5>("f32 load");
}
