// Single-thread microbench: one kernel table's matmul_act8 on L2-resident q4 weights.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>
#include "kernels/kernels.h"
#include "quant/format.h"
using namespace pensieve;
int main(int argc, char** argv) {
  const char* table = argc > 1 ? argv[1] : "avx512";
  int64_t rows = argc > 2 ? atoll(argv[2]) : 256, cols = argc > 3 ? atoll(argv[3]) : 3072, n = argc > 4 ? atoll(argv[4]) : 16;
  const CpuKernels* k = cpu_kernels_by_name(table);
  std::mt19937 rng(1);
  std::vector<uint32_t> words(rows * cols / 8);
  for (auto& w : words) w = rng();
  std::vector<uint16_t> sc(rows * cols / 64, 0x3c00), bi(rows * cols / 64, 0x3c00);
  WeightMatrix w; w.dtype = DType::q4; w.rows = rows; w.cols = cols; w.data = words.data();
  w.scales = sc.data(); w.biases = bi.data(); w.scale_dtype = DType::f16; w.group_size = 64;
  std::vector<float> x(n * cols);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  std::vector<int8_t> q(n * cols); std::vector<float> d(n * cols / 32), g(n * cols / 64);
  ActQ8 a{q.data(), d.data(), g.data(), n, cols, 4, 64};
  k->quantize_act(a, x.data(), cols, 0, n);
  std::vector<float> y(n * rows);
  double best = 1e9;
  for (int rep = 0; rep < 7; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    int iters = 200;
    for (int i = 0; i < iters; ++i) k->matmul_act8(y.data(), rows, a, w, 0, rows);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
    if (s < best) best = s;
  }
  printf("%s rows %ld cols %ld n %ld: %.1f us, %.1f GMAC/s\n", table, rows, cols, n, best * 1e6, rows * cols * n / best * 1e-9);
}
