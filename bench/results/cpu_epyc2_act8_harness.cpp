// Single-thread A/B harness: the library's avx512 matmul_act8 against a variant (a copy of
// kernels/x86/matmul_act8_avx512.cpp built as its own object with renamed entry points); checks
// that the two agree bitwise and that the variant is batch-invariant, then times both, alternating.
// Build (from the repository root, after a Release build in build/):
//   F="-O3 -DNDEBUG -ffp-contract=off -std=c++20 -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512bf16 -mfma -mf16c -I."
//   g++ $F -Dmatmul_act8_avx512=matmul_act8_variant -Dquantize_act_avx512=quantize_act_variant -c variant.cpp -o v.o
//   g++ $F bench/results/cpu_epyc2_act8_harness.cpp v.o -o h build/kernels/libpensieve_kernels.a \
//       build/quant/libpensieve_quant.a build/tensor/libpensieve_tensor.a -lpthread
// Run: ./h ROWS COLS TOKENS [COPIES (>1: weights from DRAM)] [MISALIGN bytes]; HUGE=1 madvises 2 MiB pages.
//   ./h 256 3072 16        (L2-resident)     ./h 9216 3072 16 15 16   (DRAM, as the benchmark)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>
#include <sys/mman.h>
template <class T> struct A64 { using value_type = T; A64() = default; template <class U> A64(const A64<U>&) {} T* allocate(size_t n) { return static_cast<T*>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64)); } void deallocate(T* p, size_t) { std::free(p); } bool operator==(const A64&) const { return true; } };
template <class T> using avec = std::vector<T, A64<T>>;
#include "kernels/kernels.h"
#include "quant/format.h"
namespace pensieve {
void matmul_act8_variant(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1);
void quantize_act_variant(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1);
}
using namespace pensieve;
int main(int argc, char** argv) {
  int64_t rows = argc > 1 ? atoll(argv[1]) : 256, cols = argc > 2 ? atoll(argv[2]) : 3072, n = argc > 3 ? atoll(argv[3]) : 16;
  int copies = argc > 4 ? atoi(argv[4]) : 1;   // > 1: rotate over copies (DRAM)
  int mis = argc > 5 ? atoi(argv[5]) : 0;  // byte offset of the weights from 64-byte alignment
  int64_t chunk = 256;
  const CpuKernels* k = cpu_kernels_by_name("avx512");
  std::mt19937 rng(1);
  std::vector<avec<uint32_t>> words(copies, avec<uint32_t>(rows * cols / 8 + 16));
  if (getenv("HUGE")) for (auto& c : words) { uintptr_t p = (uintptr_t(c.data()) + 4095) & ~uintptr_t(4095); madvise((void*)p, c.size() * 4 - 8192, MADV_HUGEPAGE); }
  for (auto& c : words) for (auto& w : c) w = rng();
  std::vector<std::vector<uint16_t>> scv(copies, std::vector<uint16_t>(rows * cols / 64)), biv(copies, std::vector<uint16_t>(rows * cols / 64));
  for (auto& sc : scv) for (auto& s : sc) s = 0x2000 + (rng() & 0x3ff);  // small positive f16
  for (auto& bi : biv) for (auto& s : bi) s = 0xa000 + (rng() & 0x3ff);
  std::vector<WeightMatrix> w(copies);
  for (int c = 0; c < copies; ++c) {
    w[c].dtype = DType::q4; w[c].rows = rows; w[c].cols = cols; w[c].data = reinterpret_cast<char*>(words[c].data()) + mis;
    w[c].scales = scv[c].data(); w[c].biases = biv[c].data(); w[c].scale_dtype = DType::f16; w[c].group_size = 64;
  }
  std::vector<float> x(n * cols);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  avec<int8_t> q(n * cols); avec<float> d(n * cols / 32), g(n * cols / 64);
  ActQ8 a{q.data(), d.data(), g.data(), n, cols, 4, 64};
  k->quantize_act(a, x.data(), cols, 0, n);
  avec<int8_t> q2(n * cols); avec<float> d2(n * cols / 32), g2(n * cols / 64);
  ActQ8 a2{q2.data(), d2.data(), g2.data(), n, cols, 4, 64};
  quantize_act_variant(a2, x.data(), cols, 0, n);
  std::vector<float> y(n * rows), y2(n * rows), y1(rows);
  auto call = [&](bool var, int c, float* out) {
    for (int64_t r = 0; r < rows; r += chunk) {
      int64_t r1 = std::min(rows, r + chunk);
      if (var) matmul_act8_variant(out, rows, a2, w[c], r, r1); else k->matmul_act8(out, rows, a, w[c], r, r1);
    }
  };
  call(false, 0, y.data()); call(true, 0, y2.data());
  int bad = 0;
  for (size_t i = 0; i < y.size(); ++i) if (memcmp(&y[i], &y2[i], 4)) { if (bad < 3) printf("diff at %zu: %g vs %g\n", i, y[i], y2[i]); ++bad; }
  // batch invariance of the variant: token t alone == token t in the batch
  for (int64_t t = 0; t < n; t += 5) {
    ActQ8 one{q2.data() + t * cols, d2.data() + t * cols / 32, g2.data() + t * cols / 64, 1, cols, 4, 64};
    matmul_act8_variant(y1.data(), rows, one, w[0], 0, rows);
    for (int64_t r = 0; r < rows; ++r) if (memcmp(&y1[r], &y2[t * rows + r], 4)) { if (bad < 6) printf("batch variance t %ld r %ld\n", t, r); ++bad; }
  }
  printf("mismatches: %d\n", bad);
  double best[2] = {1e9, 1e9};
  int iters = std::max<int64_t>(3, int64_t(4e9 / (rows * cols * n)));
  for (int rep = 0; rep < 8; ++rep)
    for (int v = 0; v < 2; ++v) {
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) call(v, i % copies, v ? y2.data() : y.data());
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
      best[v] = std::min(best[v], s);
    }
  for (int v = 0; v < 2; ++v)
    printf("%s rows %ld cols %ld n %ld copies %d: %.1f us, %.1f GMAC/s\n", v ? "variant" : "library", rows, cols, n, copies, best[v] * 1e6,
           rows * cols * n / best[v] * 1e-9);
}
