// q4 matmul of every CPU table against OpenBLAS sgemm on the dequantized weights, at real Phi
// shapes and batch sizes. An independent implementation (blocked, vectorised, its own summation
// order) on the same f32 weights: agreement within rounding bounds means our kernels multiply
// by the weights MLX meant, whatever their internal layout.
#include <cblas.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "kernels/ops.h"
#include "tests/test_util.h"

namespace pensieve {
namespace {

constexpr double kU = 1.0 / (1 << 24);

TEST(MatmulVsBlas, Q4EveryTableEveryPrecision) {
  struct Case { int64_t rows, cols, n; int group; };
  // Phi-3 o_proj (3072 -> 3072) at decode and a batch, down_proj (8192 -> 3072), a group-32/128 pair.
  const std::vector<Case> cases = {{3072, 3072, 1, 64}, {3072, 3072, 16, 64}, {1000, 8192, 5, 64}, {515, 3072, 7, 32},
                                   {515, 3072, 7, 128}};
  const CpuKernels* tables[8];
  const int n_tables = cpu_kernel_tables(tables, 8);
  ThreadPool pool(2);
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    const uint64_t seed = test::base_seed() + 10 + ci;
    std::mt19937_64 rng(seed);
    test::TestWeights tw = test::make_weights(rng, DType::q4, c.rows, c.cols, c.group, DType::f16);
    std::vector<float> x = test::activations(rng, c.n, c.cols);
    // Dequantized weights, and per output the magnitude that bounds rounding: the kernels may
    // compute scale·Σq·x + bias·Σx per group, whose terms are at most (|scale·q| + |bias|)·|x|.
    std::vector<float> wd(size_t(c.rows * c.cols));
    for (int64_t r = 0; r < c.rows; ++r) dequantize_row(tw.view(), r, &wd[size_t(r * c.cols)]);
    std::vector<float> want(size_t(c.n * c.rows));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(c.n), int(c.rows), int(c.cols), 1.0f, x.data(), int(c.cols),
                wd.data(), int(c.cols), 0.0f, want.data(), int(c.rows));
    std::vector<double> mag(want.size());
    const uint16_t* sc = static_cast<const uint16_t*>(tw.view().scales);
    const uint16_t* bi = static_cast<const uint16_t*>(tw.view().biases);
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t t = 0; t < c.n; ++t) {
        double m = 0;
        for (int64_t k = 0; k < c.cols; ++k) {
          int64_t g = r * (c.cols / c.group) + k / c.group;
          double s = f16_to_f32(sc[g]), b = f16_to_f32(bi[g]);
          double w = wd[size_t(r * c.cols + k)];
          m += (std::fabs(w - b) + std::fabs(b) + std::fabs(w)) * std::fabs(x[size_t(t * c.cols + k)]);
          (void)s;
        }
        mag[size_t(t * c.rows + r)] = m;
      }
    for (int ti = 0; ti < n_tables; ++ti) {
      KernelContext ctx(pool, *tables[ti]);
      for (Precision p : {Precision::exact, Precision::fast}) {
        std::vector<float> got(want.size());
        ops::matmul(ctx, got.data(), x.data(), c.n, tw.view(), p);
        test::Errors e = test::compare(got.data(), want.data(), int64_t(got.size()));
        const std::string what = std::string(tables[ti]->name) + (p == Precision::exact ? " exact" : " fast") + " [" +
                                 std::to_string(c.rows) + " x " + std::to_string(c.cols) + "] n=" + std::to_string(c.n) +
                                 " g" + std::to_string(c.group) + " (seed " + std::to_string(seed) + ")";
        EXPECT_EQ(e.nonfinite, 0) << what;
        if (p == Precision::exact) {
          // Both sides sum k products in f32 in some order: each is within γ_{k+2}·mag of the
          // exact value (recursive-summation bound, +2 for the product and the scale/bias split).
          const double gamma = double(c.cols + 2) * kU;
          for (size_t i = 0; i < got.size(); ++i)
            ASSERT_LE(std::fabs(double(got[i]) - want[i]), 2 * gamma * mag[i]) << what << " element " << i;
          EXPECT_LT(e.nmse, 1e-9) << what;
        } else {
          // int8 activations: NMSE bound documented in kernels/README.md (measured ~1e-4).
          EXPECT_LT(e.nmse, 2e-3) << what;
        }
        if (ti == n_tables - 1) std::printf("  %s: NMSE %.2e vs sgemm\n", what.c_str(), e.nmse);
      }
    }
  }
}

}  // namespace
}  // namespace pensieve
