// The scalar reference kernels (the spec) against float64 maths, with error bounds derived from
// f32 rounding (u = 2^-24); and the error the "fast" precision (int8 activations) adds,
// measured on realistic data against float64 and bounded by the tolerance kernels/README.md gives.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "kernels/ref/ref.h"
#include "tests/test_util.h"

namespace pensieve {
namespace {

constexpr double kU = 1.0 / (1 << 24);  // unit roundoff of f32

// Recursive f32 summation of k products: |error| <= γ_{k+1} · Σ|terms|, γ_m = m·u / (1 − m·u).
double gamma(int64_t m) { return double(m) * kU / (1.0 - double(m) * kU); }

TEST(RefVsF64, MatmulWithinRecursiveSummationBound) {
  struct Case { DType wt; int group; DType st; int64_t rows, cols, n; };
  const std::vector<Case> cases = {{DType::q4, 64, DType::f16, 17, 3072, 3}, {DType::q4, 32, DType::bf16, 5, 96, 2},
                                   {DType::q8, 128, DType::f32, 9, 640, 2},  {DType::f16, 0, DType::f32, 7, 333, 2},
                                   {DType::bf16, 0, DType::f32, 3, 64, 1},   {DType::f32, 0, DType::f32, 4, 1000, 3}};
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    std::mt19937_64 rng(test::base_seed() + ci);
    test::TestWeights tw = test::make_weights(rng, c.wt, c.rows, c.cols, c.group, c.st);
    std::vector<float> x = test::activations(rng, c.n, c.cols);
    std::vector<float> y(size_t(c.n * c.rows));
    matmul_ref(y.data(), c.rows, x.data(), c.cols, c.n, tw.view(), 0, c.rows);
    std::vector<float> wr(size_t(c.cols));
    for (int64_t r = 0; r < c.rows; ++r) {
      dequantize_row(tw.view(), r, wr.data());  // the f32 weights the kernel multiplies by
      for (int64_t t = 0; t < c.n; ++t) {
        double exact = 0, mag = 0;
        for (int64_t k = 0; k < c.cols; ++k) {
          exact += double(wr[size_t(k)]) * double(x[size_t(t * c.cols + k)]);
          mag += std::fabs(double(wr[size_t(k)]) * double(x[size_t(t * c.cols + k)]));
        }
        ASSERT_LE(std::fabs(double(y[size_t(t * c.rows + r)]) - exact), gamma(c.cols + 1) * mag)
            << dtype_name(c.wt) << " row " << r << " token " << t;
      }
    }
  }
}

TEST(RefVsF64, QuantizeActWithinHalfStep) {
  std::mt19937_64 rng(test::base_seed() + 100);
  const int64_t n = 4, cols = 3072, group = 64;
  std::vector<float> x = test::activations(rng, n, cols);
  x[5] = 0;  // a block may also hold zeros
  for (int j = 64; j < 96; ++j) x[size_t(j)] = 0;  // and be all zero (d = 0)
  std::vector<int8_t> q(size_t(n * cols));
  std::vector<float> d(size_t(n * cols / kActBlock)), gs(size_t(n * cols / group));
  ActQ8 a{q.data(), d.data(), gs.data(), n, cols, 4, int(group)};
  quantize_act_ref(a, x.data(), cols, 0, n);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < cols; ++c) {
      float db = d[size_t(t * cols / kActBlock + c / kActBlock)];
      int8_t qv = q[size_t(t * cols + c)];
      ASSERT_LE(std::abs(int(qv)), 127);
      // x·(1/d) carries ~2u of relative error before rounding: half a step plus that.
      ASSERT_LE(std::fabs(double(x[size_t(t * cols + c)]) - double(db) * qv), db * (0.5 + 4 * 127 * kU)) << t << "," << c;
    }
    for (int64_t g = 0; g < cols / group; ++g) {
      // Σ over blocks of d·Σq: one product and one sum rounding per block, relative to the terms.
      double s = 0, mag = 0;
      for (int64_t b = g * group / kActBlock; b < (g + 1) * group / kActBlock; ++b) {
        double blk = 0;
        for (int64_t c = b * kActBlock; c < (b + 1) * kActBlock; ++c) blk += q[size_t(t * cols + c)];
        s += double(d[size_t(t * cols / kActBlock + b)]) * blk;
        mag += std::fabs(double(d[size_t(t * cols / kActBlock + b)]) * blk);
      }
      ASSERT_NEAR(gs[size_t(t * cols / group + g)], s, gamma(group / kActBlock + 1) * mag + 1e-30);
    }
  }
}

// The fast precision against float64 on realistic data. Reported numbers go to kernels/README.md.
TEST(RefVsF64, FastPrecisionErrorIsBounded) {
  struct Case { const char* name; int64_t rows, cols; };
  // Phi-3-mini qkv (input: RMSNorm output) and down_proj (input: SiLU-gated, heavier tails).
  const std::vector<Case> cases = {{"qkv 3072->9216 (rows sampled)", 256, 3072}, {"down 8192->3072 (rows sampled)", 256, 8192}};
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    std::mt19937_64 rng(test::base_seed() + 200 + ci);
    const int64_t n = 8;
    test::TestWeights tw = test::make_weights(rng, DType::q4, c.rows, c.cols, 64, DType::f16, 0.02f);
    std::vector<float> x = test::activations(rng, n, c.cols);
    if (ci == 1)  // SiLU(g)·u of N(0,1) g, u: skewed, heavy-tailed
      for (float& v : x) v = v / (1 + std::exp(-v)) * float(std::normal_distribution<float>(0, 1)(rng));
    std::vector<float> fast(size_t(n * c.rows)), exact(fast.size());
    std::vector<int8_t> q(x.size());
    std::vector<float> d(size_t(n * c.cols / kActBlock)), gs(size_t(n * c.cols / 64));
    ActQ8 a{q.data(), d.data(), gs.data(), n, c.cols, 4, 64};
    quantize_act_ref(a, x.data(), c.cols, 0, n);
    matmul_act8_ref(fast.data(), c.rows, a, tw.view(), 0, c.rows);
    std::vector<float> wr(size_t(c.cols));
    double num = 0, den = 0, max_rel = 0, exact_num = 0;
    for (int64_t r = 0; r < c.rows; ++r) {
      dequantize_row(tw.view(), r, wr.data());
      for (int64_t t = 0; t < n; ++t) {
        double e = 0;
        for (int64_t k = 0; k < c.cols; ++k) e += double(wr[size_t(k)]) * x[size_t(t * c.cols + k)];
        double f = fast[size_t(t * c.rows + r)];
        num += (f - e) * (f - e);
        den += e * e;
        // (an if, not fmax: aarch64 GCC 12 -O3 has an internal error vectorising that reduction)
        if (std::fabs(f - e) > max_rel) max_rel = std::fabs(f - e);
        exact[size_t(t * c.rows + r)] = float(e);
      }
    }
    double max_y = 0;
    for (float v : exact)
      if (std::fabs(double(v)) > max_y) max_y = std::fabs(double(v));
    double nmse = num / den;
    max_rel /= max_y;
    (void)exact_num;
    std::printf("  fast precision, %s: NMSE %.2e, max error %.2e of max|y|\n", c.name, nmse, max_rel);
    // Tolerance (kernels/README.md): int8 with a per-32 absmax scale has a step of max|x|/127;
    // uniform rounding error step²/12 relative to the block's mean square gives NMSE ~1e-5..1e-4
    // for Gaussian blocks and up to ~1e-3 where a 20x outlier sets the step. 2e-3 bounds it.
    EXPECT_LT(nmse, 2e-3) << c.name;
    EXPECT_LT(max_rel, 0.1) << c.name;
  }
}

TEST(RefVsF64, Rmsnorm) {
  std::mt19937_64 rng(test::base_seed() + 300);
  for (int64_t dim : {1, 33, 3072}) {
    const int64_t rows = 3;
    std::vector<float> x = test::activations(rng, rows, dim), w = test::normal(rng, size_t(dim), 0.2f, 1.0f);
    std::vector<float> y(x.size());
    rmsnorm_ref(y.data(), x.data(), w.data(), dim, 1e-5f, 0, rows);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += double(x[size_t(r * dim + i)]) * x[size_t(r * dim + i)];
      double inv = 1.0 / std::sqrt(ss / double(dim) + 1e-5);
      for (int64_t i = 0; i < dim; ++i) {
        double want = x[size_t(r * dim + i)] * inv * w[size_t(i)];
        // sum of squares: γ_dim relative (halved by the sqrt), then ~5 roundings.
        ASSERT_NEAR(y[size_t(r * dim + i)], want, (gamma(dim) / 2 + 6 * kU) * std::fabs(want) + 1e-30) << dim;
      }
    }
  }
}

TEST(RefVsF64, Rope) {
  std::mt19937_64 rng(test::base_seed() + 400);
  const int n = 3, heads = 2, hd = 128, rot = 96, half = rot / 2;
  std::vector<float> x = test::normal(rng, size_t(n * heads * hd)), cs(size_t(n * half)), sn(cs.size());
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < half; ++i) {
      double ang = (t + 1) * std::pow(10000.0, -2.0 * i / rot);
      cs[size_t(t * half + i)] = float(std::cos(ang));
      sn[size_t(t * half + i)] = float(std::sin(ang));
    }
  std::vector<float> y = x;
  rope_ref(y.data(), heads * hd, heads, hd, rot, cs.data(), sn.data(), 0, n);
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < heads; ++h) {
      const float* v = &x[size_t((t * heads + h) * hd)];
      const float* o = &y[size_t((t * heads + h) * hd)];
      for (int i = 0; i < half; ++i) {
        double c = cs[size_t(t * half + i)], s = sn[size_t(t * half + i)];
        double a = v[i] * c - v[i + half] * s, b = v[i + half] * c + v[i] * s;
        double mag = std::fabs(v[i] * c) + std::fabs(v[i + half] * s);
        ASSERT_NEAR(o[i], a, 3 * kU * mag);
        ASSERT_NEAR(o[i + half], b, 3 * kU * (std::fabs(v[i + half] * c) + std::fabs(v[i] * s)));
      }
      for (int i = rot; i < hd; ++i) ASSERT_EQ(o[i], v[i]);
    }
}

TEST(RefVsF64, AttentionMatchesExactSoftmax) {
  std::mt19937_64 rng(test::base_seed() + 500);
  const int n_heads = 6, n_kv = 2, hd = 64, bs = 16;
  const int64_t n_q = 40;
  const int64_t blocks = (n_q + bs - 1) / bs;
  std::vector<float> kf = test::normal(rng, size_t(blocks * n_kv * bs * hd)), vf = test::normal(rng, kf.size());
  std::vector<uint16_t> k16(kf.size()), v16(kf.size());
  for (size_t i = 0; i < kf.size(); ++i) {
    k16[i] = f32_to_f16(kf[i]);
    v16[i] = f32_to_f16(vf[i]);
  }
  std::vector<int32_t> table = {2, 0, 1};
  KvLayer kv{k16.data(), v16.data(), DType::f16, int64_t(n_kv) * bs * hd, int64_t(bs) * hd, bs, n_kv, hd};
  AttnSeq seq{0, n_q, 0, table.data()};
  AttnParams p{n_heads, 1.0f / 8, 0, int64_t(n_heads) * hd, int64_t(n_heads) * hd};
  std::vector<float> q = test::normal(rng, size_t(n_q * n_heads * hd), 2.0f), out(q.size());
  attention_ref(out.data(), q.data(), seq, kv, p, 0, n_kv, 0, n_q);
  for (int64_t i = 0; i < n_q; ++i)
    for (int h = 0; h < n_heads; ++h) {
      int kh = h / (n_heads / n_kv);
      std::vector<double> s(size_t(i + 1));
      double m = -1e300;
      for (int64_t j = 0; j <= i; ++j) {
        int64_t off = table[size_t(j / bs)] * kv.block_stride + kh * kv.head_stride + (j % bs) * hd;
        double dot = 0;
        for (int d = 0; d < hd; ++d) dot += double(q[size_t((i * n_heads + h) * hd + d)]) * f16_to_f32(k16[size_t(off + d)]);
        s[size_t(j)] = dot * p.scale;
        m = std::fmax(m, s[size_t(j)]);
      }
      double l = 0;
      for (double& e : s) l += (e = std::exp(e - m));
      for (int d = 0; d < hd; ++d) {
        double o = 0;
        for (int64_t j = 0; j <= i; ++j) {
          int64_t off = table[size_t(j / bs)] * kv.block_stride + kh * kv.head_stride + (j % bs) * hd;
          o += s[size_t(j)] / l * f16_to_f32(v16[size_t(off + d)]);
        }
        // Scores carry ~γ_hd·Σ|q·k| absolute error, which moves weights by that relative
        // amount; outputs are convex combinations of |v| <= ~5: 1e-4 absolute is ~30x that.
        ASSERT_NEAR(out[size_t((i * n_heads + h) * hd + d)], o, 1e-4) << "query " << i << " head " << h;
      }
    }
}

TEST(RefVsF64, SiluMul) {
  std::mt19937_64 rng(test::base_seed() + 600);
  const int64_t ffn = 1000;
  std::vector<float> gu = test::normal(rng, size_t(2 * ffn), 4.0f), out(static_cast<size_t>(ffn));
  gu[0] = -200.0f;
  gu[1] = 200.0f;
  silu_mul_ref(out.data(), gu.data(), ffn, 0, 1);
  for (int64_t i = 0; i < ffn; ++i) {
    double g = gu[size_t(i)], u = gu[size_t(ffn + i)];
    double want = g / (1 + std::exp(-g)) * u;
    ASSERT_NEAR(out[size_t(i)], want, 8 * kU * std::fabs(want) + 1e-37) << i;
  }
}

}  // namespace
}  // namespace pensieve
