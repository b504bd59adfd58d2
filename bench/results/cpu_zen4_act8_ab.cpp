// Single-thread A/B of two versions of kernels/x86/matmul_act8_avx512.cpp against each other
// (cpu_epyc2_act8_harness.cpp compares one version with the library): both built as objects with
// renamed entry points, x quantized once by the library, outputs checked bitwise equal, then
// both timed in turn (calls of 256 rows, as ops::matmul splits a matrix), median GMAC/s printed.
// Build (from the repository root, after a Release build in build/; A.cpp / B.cpp: the versions,
// e.g. `git show d0592a0:kernels/x86/matmul_act8_avx512.cpp > A.cpp`):
//   F="-O3 -DNDEBUG -ffp-contract=off -std=c++20 -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512bf16 -mfma -mf16c -I."
//   g++ $F -Dmatmul_act8_avx512=matmul_act8_va -Dquantize_act_avx512=quantize_act_va -c A.cpp -o a.o
//   g++ $F -Dmatmul_act8_avx512=matmul_act8_vb -Dquantize_act_avx512=quantize_act_vb -c B.cpp -o b.o
//   g++ $F bench/results/cpu_zen4_act8_ab.cpp a.o b.o -o ab build/kernels/libpensieve_kernels.a \
//       build/quant/libpensieve_quant.a build/tensor/libpensieve_tensor.a -lpthread
// Run: ./ab ROWS COLS TOKENS [COPIES (>1: weights from DRAM)] [REPS]
//   ./ab 256 3072 512        (L2-resident)     ./ab 3072 8192 512 2   (DRAM)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>
#include "kernels/kernels.h"
#include "quant/format.h"
namespace pensieve {
void matmul_act8_va(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1);
void matmul_act8_vb(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1);
}
using namespace pensieve;
int main(int argc, char** argv) {
  int64_t rows = atoll(argv[1]), cols = atoll(argv[2]), n = atoll(argv[3]);
  int copies = argc > 4 ? atoi(argv[4]) : 1, reps = argc > 5 ? atoi(argv[5]) : 15;
  const CpuKernels* k = cpu_kernels_by_name("avx512");
  std::mt19937 rng(1);
  std::vector<uint32_t*> words(copies);
  std::vector<std::vector<uint16_t>> sc(copies, std::vector<uint16_t>(rows * cols / 64)), bi(copies, std::vector<uint16_t>(rows * cols / 64));
  std::vector<WeightMatrix> w(copies);
  for (int c = 0; c < copies; ++c) {
    words[c] = static_cast<uint32_t*>(aligned_alloc(64, rows * cols / 2));
    for (int64_t i = 0; i < rows * cols / 8; ++i) words[c][i] = rng();
    for (auto& s : sc[c]) s = 0x2000 + (rng() & 0x3ff);
    for (auto& s : bi[c]) s = 0xa000 + (rng() & 0x3ff);
    w[c].dtype = DType::q4; w[c].rows = rows; w[c].cols = cols; w[c].data = words[c];
    w[c].scales = sc[c].data(); w[c].biases = bi[c].data(); w[c].scale_dtype = DType::f16; w[c].group_size = 64;
  }
  std::vector<float> x(n * cols);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  int8_t* q = static_cast<int8_t*>(aligned_alloc(64, n * cols));
  std::vector<float> d(n * cols / 32), g(n * cols / 64);
  ActQ8 a{q, d.data(), g.data(), n, cols, 4, 64};
  k->quantize_act(a, x.data(), cols, 0, n);
  std::vector<float> ya(n * rows), yb(n * rows);
  auto call = [&](int v, int c, float* out) {
    for (int64_t r = 0; r < rows; r += 256) {
      int64_t r1 = std::min(rows, r + 256);
      if (v) matmul_act8_vb(out, rows, a, w[c], r, r1); else matmul_act8_va(out, rows, a, w[c], r, r1);
    }
  };
  call(0, 0, ya.data()); call(1, 0, yb.data());
  printf("outputs %s\n", memcmp(ya.data(), yb.data(), ya.size() * 4) ? "DIFFER" : "bitwise equal");
  std::vector<double> t[2];
  int iters = std::max<int64_t>(2, int64_t(2e9 / (rows * cols * n)));
  for (int rep = 0; rep < reps; ++rep)
    for (int v = 0; v < 2; ++v) {
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) call(v, i % copies, v ? yb.data() : ya.data());
      t[v].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters);
    }
  for (int v = 0; v < 2; ++v) {
    std::sort(t[v].begin(), t[v].end());
    printf("%s: median %.1f GMAC/s (best %.1f, worst %.1f)\n", v ? "B" : "A", rows * cols * n / t[v][t[v].size() / 2] * 1e-9,
           rows * cols * n / t[v][0] * 1e-9, rows * cols * n / t[v].back() * 1e-9);
  }
}
