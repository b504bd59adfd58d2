// Every backend against the scalar reference, in the spirit of llama.cpp's test-backend-ops.
//
// A case is a small struct: op, dtypes, shape, params, and a tolerance that says why. Inputs come
// from a seeded RNG (the seed is printed on failure; PENSIEVE_TEST_SEED replays a run) and are
// rounded to their storage type before the `_ref` kernel runs, so only arithmetic error is
// compared. Then every backend runs the case: each CPU kernel table this machine supports
// (ref, avx2, avx512 / neon, dotprod) through the ops:: front-end with a 2-thread pool, and each
// Vulkan device when built with Vulkan. Outputs are compared by NMSE and max error relative to the
// largest reference value; non-finite values, and writes into guard bytes, fail. A backend that
// cannot run a case returns false: counted as skipped, never as passed.
//
// The second half tests what only the CPU tables promise: bitwise-identical results whatever the
// batch, a token's place in it, the row split or the thread count; and exact conversions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <numeric>
#include <sstream>
#include <tuple>

#include "kernels/ops.h"
#include "kernels/ref/ref.h"
#include "tests/ops_backend.h"
#include "tests/test_util.h"

namespace pensieve {
namespace {

using test::Errors;
using test::Guarded;

// ---------------------------------------------------------------------------------------------
// Backends and tolerances

std::vector<std::unique_ptr<OpsBackend>>& backends() {
  static std::vector<std::unique_ptr<OpsBackend>> all = [] {
    auto v = cpu_ops_backends();
    for (auto& b : vulkan_ops_backends()) v.push_back(std::move(b));
    return v;
  }();
  return all;
}

std::vector<int> backend_ids() {
  std::vector<int> ids(backends().size());
  std::iota(ids.begin(), ids.end(), 0);
  return ids;
}

struct Tol {
  double nmse;     // bound on Σ(got − want)² / Σ want²
  double max_rel;  // bound on max|got − want| / max|want|
};

// Same maths in f32 in another order (SIMD lanes, blocked sums): each output's rounding error
// is ~√k·2^-24 relative to Σ|terms|, NMSE ~1e-12 on these inputs; 1e-9 leaves room for
// cancellation without hiding a wrong element (one wrong element of thousands gives > 1e-4).
constexpr Tol kReorderTol{1e-9, 1e-4};
// As above, plus vectorised exp/silu (a few ulp each, still ~1e-7 relative).
constexpr Tol kTranscendentalTol{1e-9, 1e-4};
// The "fast" matmul against the exact reference. int8 activations with a per-32 absmax scale
// (step max|x|/127) add rounding noise of NMSE ~1e-4 on these inputs (N(0,1) with 20x outlier
// channels; kernels/README.md has the measurements); a block holding an outlier is coarser.
// 2e-3 and 5% of max|y| bound every case here with room, and catch a wrong scale or layout
// (those give NMSE ~1).
constexpr Tol kFastTol{2e-3, 5e-2};
// Exactly rounded elementwise ops (add, rope's two products and a sum, embed's dequantize):
// only fused multiply-add vs separate rounding can differ, by an ulp of a term.
constexpr Tol kElementwiseTol{1e-12, 1e-6};

void expect_close(const float* got, const float* want, int64_t n, Tol tol, const std::string& what) {
  Errors e = test::compare(got, want, n);
  EXPECT_EQ(e.nonfinite, 0) << what << ": non-finite outputs where the reference is finite";
  EXPECT_LE(e.nmse, tol.nmse) << what;
  EXPECT_LE(e.max_rel, tol.max_rel) << what;
}

class OpsTest : public ::testing::TestWithParam<int> {
 protected:
  OpsBackend& backend() { return *backends()[size_t(GetParam())]; }
  // Counts a case the backend could not run; the test is skipped if it ran none.
  void skipped(const std::string& what) {
    ++skipped_;
    std::printf("  [skipped] %s on %s\n", what.c_str(), backend().name().c_str());
  }
  void finish(int total) {
    if (skipped_ == total) GTEST_SKIP() << backend().name() << " runs none of these cases";
    if (skipped_) std::printf("  %s: %d of %d cases skipped\n", backend().name().c_str(), skipped_, total);
  }
  int skipped_ = 0;
};

std::string seed_str(uint64_t seed) { return " (seed " + std::to_string(seed) + ")"; }

// ---------------------------------------------------------------------------------------------
// matmul: y[n, rows] = x[n, cols] · Wᵀ

struct MatmulCase {
  DType wtype;  // q4 / q8 (MLX affine) or f32 / f16 / bf16 dense
  int group;    // quantized only
  DType scale;  // quantized only
  int64_t rows, cols, n;
  Precision prec;
  Tol tol;
};

std::string describe(const MatmulCase& c) {
  std::ostringstream s;
  s << "matmul " << dtype_name(c.wtype);
  if (c.wtype == DType::q4 || c.wtype == DType::q8) s << " g" << c.group << " " << dtype_name(c.scale);
  s << " [" << c.rows << " x " << c.cols << "] n=" << c.n << (c.prec == Precision::fast ? " fast" : " exact");
  return s.str();
}

std::vector<MatmulCase> matmul_cases() {
  std::vector<MatmulCase> cases;
  // Both precisions are compared with the exact reference (matmul_ref): "fast" is whatever a
  // backend does to go faster within kFastTol (int8 activations on the CPU tables, f16 on
  // Vulkan). CpuTableTest.FastMatmulMatchesReferenceInt8 checks the CPU int8 kernels tightly.
  for (Precision p : {Precision::exact, Precision::fast}) {
    const Tol tol = p == Precision::exact ? kReorderTol : kFastTol;
    for (DType wt : {DType::q4, DType::q8}) {
      for (int g : {32, 64, 128}) {
        for (DType st : {DType::f16, DType::bf16, DType::f32}) {
          // cols: one group; not a multiple of 128 or 512 (tails of every vector width); a few
          // groups more. rows: not a multiple of any row tile. n: 1..33 (token tiles and tails).
          cases.push_back({wt, g, st, 7, g, 1, p, tol});
          cases.push_back({wt, g, st, 13, g * 3, 5, p, tol});
          cases.push_back({wt, g, st, 67, 32 * 25 / g * g + g, 17, p, tol});
        }
        cases.push_back({wt, g, DType::f16, 37, 1024 + g, 33, p, tol});
        cases.push_back({wt, g, DType::f16, 5, 544 / g * g, 2, p, tol});
      }
    }
    // Real Phi shapes (q4, group 64, f16 as MLX writes them): o_proj and down_proj.
    cases.push_back({DType::q4, 64, DType::f16, 3072, 3072, 3, p, tol});
    cases.push_back({DType::q4, 64, DType::f16, 3072, 8192, 1, p, tol});
    cases.push_back({DType::q4, 64, DType::f16, 1029, 3072, 9, p, tol});
    // Enough tokens for the AVX-512 prefill path (rows packed once per piece), in whole slabs.
    cases.push_back({DType::q4, 64, DType::bf16, 45, 1536, 70, p, tol});
  }
  // Dense weights (always exact): any cols, including tails of every vector width.
  for (DType wt : {DType::f32, DType::f16, DType::bf16}) {
    for (int64_t cols : {1, 15, 16, 33, 100, 515}) cases.push_back({wt, 0, DType::f32, 11, cols, 3, Precision::exact, kReorderTol});
    cases.push_back({wt, 0, DType::f32, 67, 3072, 17, Precision::exact, kReorderTol});
  }
  return cases;
}

TEST_P(OpsTest, Matmul) {
  const auto cases = matmul_cases();
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const MatmulCase& c = cases[ci];
    const uint64_t seed = test::base_seed() + ci;
    std::mt19937_64 rng(seed);
    const std::string what = describe(c) + seed_str(seed);
    test::TestWeights tw = test::make_weights(rng, c.wtype, c.rows, c.cols, c.group, c.scale);
    const WeightMatrix& w = tw.view();
    std::vector<float> x = test::activations(rng, c.n, c.cols);

    std::vector<float> want(size_t(c.n * c.rows));
    matmul_ref(want.data(), c.rows, x.data(), c.cols, c.n, w, 0, c.rows);

    Guarded got(c.n * c.rows);
    if (!backend().matmul(got.data(), x.data(), c.n, w, c.prec)) {
      skipped(what);
      continue;
    }
    EXPECT_TRUE(got.guard_intact()) << what << ": wrote outside y";
    expect_close(got.data(), want.data(), c.n * c.rows, c.tol, what);
  }
  finish(int(cases.size()));
}

// ---------------------------------------------------------------------------------------------
// rmsnorm

struct RmsnormCase {
  int64_t rows, dim;
  float eps;
  Tol tol;
};

TEST_P(OpsTest, Rmsnorm) {
  // dim: 1, vector-width tails, real Phi hidden sizes. Sum of squares reordered: kReorderTol.
  std::vector<RmsnormCase> cases;
  for (int64_t dim : {1, 7, 16, 33, 100, 3072, 3073}) cases.push_back({5, dim, 1e-5f, kReorderTol});
  cases.push_back({1, 3072, 1e-6f, kReorderTol});
  cases.push_back({33, 3072, 1e-5f, kReorderTol});
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const RmsnormCase& c = cases[ci];
    const uint64_t seed = test::base_seed() + 1000 + ci;
    std::mt19937_64 rng(seed);
    const std::string what = "rmsnorm rows=" + std::to_string(c.rows) + " dim=" + std::to_string(c.dim) + seed_str(seed);
    std::vector<float> x = test::activations(rng, c.rows, c.dim);
    std::vector<float> w = test::normal(rng, size_t(c.dim), 0.2f, 1.0f);
    std::vector<float> want(x.size());
    cpu_kernels_ref().rmsnorm(want.data(), x.data(), w.data(), c.dim, c.eps, 0, c.rows);
    Guarded got(c.rows * c.dim);
    if (!backend().rmsnorm(got.data(), x.data(), w.data(), c.rows, c.dim, c.eps)) {
      skipped(what);
      continue;
    }
    EXPECT_TRUE(got.guard_intact()) << what;
    expect_close(got.data(), want.data(), c.rows * c.dim, c.tol, what);
  }
  finish(int(cases.size()));
}

// ---------------------------------------------------------------------------------------------
// rope (in place)

struct RopeCase {
  int64_t n;
  int n_heads, head_dim, rot_dim;
  int64_t stride;  // >= n_heads * head_dim (rows of a fused qkv buffer are wider)
  Tol tol;
};

TEST_P(OpsTest, Rope) {
  std::vector<RopeCase> cases = {
      // Phi-3 (full rotary, head 96), Phi-4-mini (head 128, partial rotary 0.75 -> 96 dims),
      // odd halves (rot 24 -> half 12, rot 40 -> 20: vector tails), a single head, strided rows.
      {5, 32, 96, 96, 32 * 96, kElementwiseTol},
      {3, 24, 128, 96, 24 * 128 + 2 * 8 * 128, kElementwiseTol},
      {7, 1, 64, 64, 64, kElementwiseTol},
      {4, 3, 48, 24, 3 * 48 + 5, kElementwiseTol},
      {2, 5, 80, 40, 5 * 80, kElementwiseTol},
      {33, 8, 128, 128, 8 * 128, kElementwiseTol},
      {1, 2, 2, 2, 4, kElementwiseTol},
  };
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const RopeCase& c = cases[ci];
    const uint64_t seed = test::base_seed() + 2000 + ci;
    std::mt19937_64 rng(seed);
    const std::string what = "rope n=" + std::to_string(c.n) + " heads=" + std::to_string(c.n_heads) + " hd=" +
                             std::to_string(c.head_dim) + " rot=" + std::to_string(c.rot_dim) + seed_str(seed);
    const int half = c.rot_dim / 2;
    std::vector<float> x = test::normal(rng, size_t(c.n * c.stride));
    std::vector<float> cs(size_t(c.n * half)), sn(cs.size());
    for (int64_t t = 0; t < c.n; ++t)
      for (int i = 0; i < half; ++i) {
        // Longrope-style: position times a per-dimension frequency, with an attention factor.
        double ang = double(t * 37 + 5) * std::pow(10000.0, -2.0 * i / c.rot_dim) / (1.0 + 0.1 * i);
        cs[size_t(t * half + i)] = float(std::cos(ang) * 1.19);
        sn[size_t(t * half + i)] = float(std::sin(ang) * 1.19);
      }
    std::vector<float> want = x;
    cpu_kernels_ref().rope(want.data(), c.stride, c.n_heads, c.head_dim, c.rot_dim, cs.data(), sn.data(), 0, c.n);
    Guarded got(c.n * c.stride, x);
    if (!backend().rope(got.data(), c.n, c.stride, c.n_heads, c.head_dim, c.rot_dim, cs.data(), sn.data())) {
      skipped(what);
      continue;
    }
    EXPECT_TRUE(got.guard_intact()) << what;
    // Columns outside the heads (stride padding) and past rot_dim must be untouched: bitwise.
    for (int64_t i = 0; i < c.n * c.stride; ++i) {
      int64_t col = i % c.stride;
      bool rotated = col < int64_t(c.n_heads) * c.head_dim && col % c.head_dim < c.rot_dim;
      if (!rotated) {
        ASSERT_EQ(std::memcmp(&got.data()[i], &x[size_t(i)], 4), 0) << what << ": changed element " << i;
      }
    }
    expect_close(got.data(), want.data(), c.n * c.stride, c.tol, what);
  }
  finish(int(cases.size()));
}

// ---------------------------------------------------------------------------------------------
// attention over a paged KV cache

struct AttnCase {
  int n_heads, n_kv_heads, head_dim, block_size;
  DType kv_dtype;
  int64_t window;
  std::vector<std::pair<int64_t, int64_t>> seqs;  // (n_q, pos0) per sequence
  Tol tol;
};

// A paged cache with shuffled blocks, queries and the call's parameters.
struct AttnSetup {
  std::vector<uint8_t> k, v;
  std::vector<int32_t> tables;
  std::vector<AttnSeq> seqs;
  std::vector<float> q;
  KvLayer kv;
  AttnParams p;
  int64_t q_rows = 0, n_blocks = 0;
};

AttnSetup make_attention(const AttnCase& c, std::mt19937_64& rng) {
  AttnSetup s;
  const int hd = c.head_dim;
  std::vector<int64_t> first_block;
  for (auto [n_q, pos0] : c.seqs) {
    first_block.push_back(s.n_blocks);
    s.n_blocks += (pos0 + n_q + c.block_size - 1) / c.block_size;
  }
  std::vector<int32_t> perm(size_t(s.n_blocks));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  s.tables = perm;
  const int64_t elems = s.n_blocks * c.n_kv_heads * c.block_size * hd;
  const size_t es = dtype_size(c.kv_dtype);
  s.k.resize(size_t(elems) * es);
  s.v.resize(size_t(elems) * es);
  std::vector<float> kf = test::normal(rng, size_t(elems)), vf = test::normal(rng, size_t(elems));
  for (int64_t i = 0; i < elems; ++i) {
    if (c.kv_dtype == DType::f32) {
      std::memcpy(&s.k[size_t(i) * 4], &kf[size_t(i)], 4);
      std::memcpy(&s.v[size_t(i) * 4], &vf[size_t(i)], 4);
    } else {
      uint16_t hk = test::to_storage(kf[size_t(i)], c.kv_dtype), hv = test::to_storage(vf[size_t(i)], c.kv_dtype);
      std::memcpy(&s.k[size_t(i) * 2], &hk, 2);
      std::memcpy(&s.v[size_t(i) * 2], &hv, 2);
    }
  }
  s.kv = KvLayer{s.k.data(), s.v.data(), c.kv_dtype, int64_t(c.n_kv_heads) * c.block_size * hd,
                 int64_t(c.block_size) * hd, c.block_size, c.n_kv_heads, hd};
  for (size_t i = 0; i < c.seqs.size(); ++i) {
    AttnSeq q;
    q.q_begin = s.q_rows;
    q.n_q = c.seqs[i].first;
    q.pos0 = c.seqs[i].second;
    q.block_table = s.tables.data() + first_block[i];
    s.seqs.push_back(q);
    s.q_rows += q.n_q;
  }
  s.p.n_heads = c.n_heads;
  s.p.scale = 1.0f / std::sqrt(float(hd));
  s.p.window = c.window;
  s.p.q_stride = int64_t(c.n_heads + 2 * c.n_kv_heads) * hd;  // q inside a fused qkv row
  s.p.out_stride = int64_t(c.n_heads) * hd;
  // Queries scaled up so some softmaxes are peaked (exercises the running-max rescale).
  s.q = test::normal(rng, size_t(s.q_rows * s.p.q_stride), 2.0f);
  return s;
}

std::vector<AttnCase> attention_cases() {
  // Online softmax over key tiles vs key by key, vector exp vs libm: kTranscendentalTol.
  const Tol t = kTranscendentalTol;
  return {
      // Phi-3 (32 heads, no GQA, head 96): decode of 3 sequences of different lengths, f16 KV.
      {32, 32, 96, 16, DType::f16, 0, {{1, 0}, {1, 40}, {1, 300}}, t},
      // Phi-4-mini (24 q / 8 kv heads, head 128): prefill 33 tokens + a decode, f16 and f32 KV.
      {24, 8, 128, 16, DType::f16, 0, {{33, 0}, {1, 77}}, t},
      {24, 8, 128, 32, DType::f32, 0, {{17, 0}, {1, 129}}, t},
      // GQA ratios 1/3/4/8, heads 1..32, head_dim 64/80/96/128, chunked prefill (pos0 > 0).
      {1, 1, 64, 16, DType::f16, 0, {{20, 0}}, t},
      {3, 1, 64, 8, DType::f16, 0, {{5, 11}, {1, 3}}, t},
      {4, 1, 80, 16, DType::f32, 0, {{9, 30}}, t},
      {16, 2, 64, 16, DType::f16, 0, {{2, 100}, {19, 0}}, t},
      {8, 8, 48, 4, DType::f16, 0, {{1, 1}, {3, 0}}, t},
      {12, 4, 96, 16, DType::f16, 0, {{40, 0}}, t},
      // head_dim not a multiple of any vector width (the masked, generic path).
      {6, 2, 100, 16, DType::f16, 0, {{3, 0}, {1, 40}}, t},
      // Sliding window.
      {4, 2, 64, 16, DType::f16, 20, {{30, 0}, {1, 50}}, t},
      // A long decode (many key tiles) with 4 sequences.
      {8, 8, 64, 16, DType::f16, 0, {{1, 1000}, {1, 17}, {1, 511}, {1, 0}}, t},
  };
}

TEST_P(OpsTest, Attention) {
  const auto cases = attention_cases();
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const AttnCase& c = cases[ci];
    const uint64_t seed = test::base_seed() + 3000 + ci;
    std::mt19937_64 rng(seed);
    std::ostringstream ws;
    ws << "attention heads " << c.n_heads << "/" << c.n_kv_heads << " hd " << c.head_dim << " bs " << c.block_size
       << " " << dtype_name(c.kv_dtype) << " window " << c.window << " seqs " << c.seqs.size() << seed_str(seed);
    const std::string what = ws.str();
    AttnSetup s = make_attention(c, rng);
    const int64_t out_n = s.q_rows * s.p.out_stride;
    std::vector<float> want(static_cast<size_t>(out_n));
    for (const AttnSeq& q : s.seqs)
      cpu_kernels_ref().attention(want.data(), s.q.data(), q, s.kv, s.p, 0, c.n_kv_heads, 0, q.n_q);
    Guarded got(out_n);
    if (!backend().attention(got.data(), s.q.data(), s.seqs.data(), int(s.seqs.size()), s.kv, s.p, s.q_rows,
                             s.n_blocks)) {
      skipped(what);
      continue;
    }
    EXPECT_TRUE(got.guard_intact()) << what;
    expect_close(got.data(), want.data(), out_n, c.tol, what);
  }
  finish(int(cases.size()));
}

// ---------------------------------------------------------------------------------------------
// silu_mul, add, embed

TEST_P(OpsTest, SiluMul) {
  // ffn: 1, vector tails, Phi-3's 8192. Vector exp vs libm: kTranscendentalTol.
  const std::vector<std::pair<int64_t, int64_t>> cases = {{1, 1}, {3, 15}, {2, 16}, {5, 17}, {4, 100}, {3, 8192}};
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    auto [n, ffn] = cases[ci];
    const uint64_t seed = test::base_seed() + 4000 + ci;
    std::mt19937_64 rng(seed);
    const std::string what = "silu_mul n=" + std::to_string(n) + " ffn=" + std::to_string(ffn) + seed_str(seed);
    std::vector<float> gu = test::normal(rng, size_t(n * 2 * ffn), 3.0f);
    gu[0] = -100.0f;  // e^100 overflows: silu must still give -0, not NaN
    std::vector<float> want(size_t(n * ffn));
    cpu_kernels_ref().silu_mul(want.data(), gu.data(), ffn, 0, n);
    Guarded got(n * ffn);
    if (!backend().silu_mul(got.data(), gu.data(), n, ffn)) {
      skipped(what);
      continue;
    }
    EXPECT_TRUE(got.guard_intact()) << what;
    expect_close(got.data(), want.data(), n * ffn, kTranscendentalTol, what);
  }
  finish(int(cases.size()));
}

TEST_P(OpsTest, Add) {
  const std::vector<int64_t> cases = {1, 15, 17, 1000, 3072 * 5 + 3};
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const int64_t n = cases[ci];
    const uint64_t seed = test::base_seed() + 5000 + ci;
    std::mt19937_64 rng(seed);
    const std::string what = "add n=" + std::to_string(n) + seed_str(seed);
    std::vector<float> y = test::normal(rng, size_t(n)), x = test::normal(rng, size_t(n));
    std::vector<float> want = y;
    cpu_kernels_ref().add(want.data(), x.data(), 0, n);
    Guarded got(n, y);
    if (!backend().add(got.data(), x.data(), n)) {
      skipped(what);
      continue;
    }
    EXPECT_TRUE(got.guard_intact()) << what;
    expect_close(got.data(), want.data(), n, Tol{0, 0}, what);  // one rounding per element: exact
  }
  finish(int(cases.size()));
}

TEST_P(OpsTest, Embed) {
  struct Case { DType dtype; int group; int64_t rows, cols; };
  const std::vector<Case> cases = {{DType::q4, 64, 300, 3072}, {DType::q8, 32, 50, 96}, {DType::f16, 0, 40, 33},
                                   {DType::bf16, 0, 40, 64}, {DType::f32, 0, 10, 7}};
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    const uint64_t seed = test::base_seed() + 6000 + ci;
    std::mt19937_64 rng(seed);
    const std::string what = std::string("embed ") + dtype_name(c.dtype) + seed_str(seed);
    test::TestWeights tw = test::make_weights(rng, c.dtype, c.rows, c.cols, c.group);
    std::vector<int32_t> ids = {0, int32_t(c.rows - 1), 3, 3, int32_t(c.rows / 2)};
    const int64_t n = int64_t(ids.size());
    std::vector<float> want(size_t(n * c.cols));
    for (int64_t t = 0; t < n; ++t) dequantize_row(tw.view(), ids[size_t(t)], want.data() + t * c.cols);
    Guarded got(n * c.cols);
    if (!backend().embed(got.data(), ids.data(), n, tw.view())) {
      skipped(what);
      continue;
    }
    EXPECT_TRUE(got.guard_intact()) << what;
    expect_close(got.data(), want.data(), n * c.cols, kElementwiseTol, what);
  }
  finish(int(cases.size()));
}

std::string backend_param_name(const ::testing::TestParamInfo<int>& info) {
  std::string n = backends()[size_t(info.param)]->name();
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Backends, OpsTest, ::testing::ValuesIn(backend_ids()), backend_param_name);

// ---------------------------------------------------------------------------------------------
// CPU tables only: bitwise batch invariance and exact conversions.

std::vector<const CpuKernels*> cpu_tables() {
  const CpuKernels* t[8];
  int n = cpu_kernel_tables(t, 8);
  return std::vector<const CpuKernels*>(t, t + n);
}

class CpuTableTest : public ::testing::TestWithParam<const CpuKernels*> {
 protected:
  const CpuKernels& k() { return *GetParam(); }
};

// Runs the table's matmul of one precision for tokens x[0..n) (rows of ldx floats) into y (rows
// of ldy floats), rows split into the given [r0, r1) ranges, as the model's ops:: would.
void run_matmul(const CpuKernels& k, const WeightMatrix& w, Precision p, const float* x, int64_t ldx, int64_t n,
                float* y, int64_t ldy, const std::vector<int64_t>& cuts) {
  std::vector<float> ax, gs;
  std::vector<int8_t> q;
  std::vector<float> d;
  ActF32 af{};
  ActQ8 aq{};
  if (w.quantized() && p == Precision::exact) {
    ax.resize(size_t(n * w.cols));
    gs.resize(size_t(n * w.groups_per_row()));
    af = ActF32{ax.data(), gs.data(), n, w.cols, w.bits(), w.group_size};
    k.prepare_act(af, x, ldx, 0, n);
  } else if (w.quantized()) {
    q.resize(size_t(n * w.cols));
    d.resize(size_t(n * w.cols / kActBlock));
    gs.resize(size_t(n * w.groups_per_row()));
    aq = ActQ8{q.data(), d.data(), gs.data(), n, w.cols, w.bits(), w.group_size};
    k.quantize_act(aq, x, ldx, 0, n);
  }
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    int64_t r0 = cuts[i], r1 = cuts[i + 1];
    if (!w.quantized()) k.matmul_dense(y, ldy, x, ldx, n, w, r0, r1);
    else if (p == Precision::exact) k.matmul_q(y, ldy, af, w, r0, r1);
    else k.matmul_act8(y, ldy, aq, w, r0, r1);
  }
}

// The server's contract: a token's logits are the same bits alone or among other sequences.
// For each weight kind and precision: y of 70 tokens in one call is the reference; each token
// alone, tokens inside batches of 2..20 at every offset, odd row splits and strided x / y must
// reproduce it bitwise, and must not write outside their rows.
TEST_P(CpuTableTest, MatmulIsBatchInvariantBitwise) {
  struct Case { DType wt; int group; DType st; int64_t rows, cols; };
  const std::vector<Case> cases = {{DType::q4, 64, DType::f16, 37, 1088}, {DType::q4, 32, DType::bf16, 9, 96},
                                   {DType::q4, 128, DType::f32, 21, 640}, {DType::q8, 64, DType::f16, 13, 320},
                                   // whole 512-value slabs: 70 tokens take the AVX-512 prefill path
                                   {DType::q4, 64, DType::f16, 23, 1024}, {DType::q4, 32, DType::bf16, 7, 1536},
                                   {DType::f16, 0, DType::f32, 11, 301},  {DType::f32, 0, DType::f32, 6, 64},
                                   {DType::bf16, 0, DType::f32, 5, 17}};
  const int64_t n = 70;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    const uint64_t seed = test::base_seed() + 7000 + ci;
    std::mt19937_64 rng(seed);
    test::TestWeights tw = test::make_weights(rng, c.wt, c.rows, c.cols, c.group, c.st);
    const WeightMatrix& w = tw.view();
    const int64_t ldx = c.cols + 3, ldy = c.rows + 5;
    std::vector<float> x(size_t(n * ldx));
    std::vector<float> xv = test::activations(rng, n, c.cols);
    for (int64_t t = 0; t < n; ++t) std::copy_n(&xv[size_t(t * c.cols)], c.cols, &x[size_t(t * ldx)]);
    for (Precision p : {Precision::exact, Precision::fast}) {
      if (p == Precision::fast && !w.quantized()) continue;
      const std::string what = std::string(k().name) + " " + dtype_name(c.wt) + " [" + std::to_string(c.rows) + " x " +
                               std::to_string(c.cols) + "] " + (p == Precision::fast ? "fast" : "exact") + seed_str(seed);
      std::vector<float> all(size_t(n * ldy), -7.0f);
      run_matmul(k(), w, p, x.data(), ldx, n, all.data(), ldy, {0, c.rows});
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = c.rows; r < ldy; ++r) ASSERT_EQ(all[size_t(t * ldy + r)], -7.0f) << what << ": wrote past its rows";
      // Every batch size at a few offsets, with a row split that cuts every tile size.
      std::vector<int64_t> cuts = {0};
      for (int64_t r = 1; r < c.rows; r += 1 + r % 5) cuts.push_back(r);
      cuts.push_back(c.rows);
      for (int64_t bs = 1; bs <= 20; ++bs) {
        for (int64_t t0 : {int64_t(0), int64_t(1), n - bs, (n - bs) / 2}) {
          std::vector<float> y(size_t(bs * ldy), -7.0f);
          run_matmul(k(), w, p, x.data() + t0 * ldx, ldx, bs, y.data(), ldy, bs % 2 ? cuts : std::vector<int64_t>{0, c.rows});
          for (int64_t t = 0; t < bs; ++t)
            ASSERT_EQ(0, std::memcmp(&y[size_t(t * ldy)], &all[size_t((t0 + t) * ldy)], size_t(c.rows) * 4))
                << what << ": token " << t0 + t << " differs in a batch of " << bs << " at offset " << t0;
        }
      }
    }
  }
}

// The CPU tables' int8 path against the reference's: quantize_act must give the reference's
// block scales d and group sums bit for bit (the rounding rule is part of the contract), and
// matmul_act8 must then agree to f32 summation-order error. q and d are in each table's own
// order (AVX-512 keeps each 512-value slab in its lanes' order), so q is checked through the
// product and d as each token's sorted list of scales.
TEST_P(CpuTableTest, FastMatmulMatchesReferenceInt8) {
  const CpuKernels& ref = cpu_kernels_ref();
  size_t ci = 0;
  for (const MatmulCase& c : matmul_cases()) {
    if (c.prec != Precision::fast || !(c.wtype == DType::q4 || c.wtype == DType::q8) || c.rows > 1100) continue;
    const uint64_t seed = test::base_seed() + 9500 + ci++;
    std::mt19937_64 rng(seed);
    const std::string what = std::string(k().name) + " " + describe(c) + seed_str(seed);
    test::TestWeights tw = test::make_weights(rng, c.wtype, c.rows, c.cols, c.group, c.scale);
    const WeightMatrix& w = tw.view();
    std::vector<float> x = test::activations(rng, c.n, c.cols);
    const int64_t blocks = c.n * (c.cols / kActBlock), groups = c.n * (c.cols / c.group);
    std::vector<int8_t> q_ref(x.size()), q(x.size());
    std::vector<float> d_ref(static_cast<size_t>(blocks)), d(d_ref.size()), g_ref(static_cast<size_t>(groups)), g(g_ref.size());
    ActQ8 a_ref{q_ref.data(), d_ref.data(), g_ref.data(), c.n, c.cols, w.bits(), c.group};
    ActQ8 a{q.data(), d.data(), g.data(), c.n, c.cols, w.bits(), c.group};
    ref.quantize_act(a_ref, x.data(), c.cols, 0, c.n);
    k().quantize_act(a, x.data(), c.cols, 0, c.n);
    std::vector<float> ds = d, ds_ref = d_ref;  // each token's scales, whatever their order
    for (int64_t t = 0, nb = c.cols / kActBlock; t < c.n; ++t) {
      std::sort(ds.begin() + t * nb, ds.begin() + (t + 1) * nb);
      std::sort(ds_ref.begin() + t * nb, ds_ref.begin() + (t + 1) * nb);
    }
    ASSERT_EQ(0, std::memcmp(ds.data(), ds_ref.data(), ds.size() * 4)) << what << ": block scales differ";
    ASSERT_EQ(0, std::memcmp(g.data(), g_ref.data(), g.size() * 4)) << what << ": group sums differ";
    std::vector<float> want(size_t(c.n * c.rows)), got(want.size());
    ref.matmul_act8(want.data(), c.rows, a_ref, w, 0, c.rows);
    k().matmul_act8(got.data(), c.rows, a, w, 0, c.rows);
    expect_close(got.data(), want.data(), int64_t(got.size()), kReorderTol, what);
  }
}

// Same for the ops:: front-end: thread counts 1, 2 and 3 and batch sizes give identical bits.
TEST_P(CpuTableTest, OpsMatmulIsThreadInvariantBitwise) {
  std::mt19937_64 rng(test::base_seed() + 7500);
  const int64_t rows = 500, cols = 1024, n = 20;
  test::TestWeights tw = test::make_weights(rng, DType::q4, rows, cols, 64, DType::f16);
  std::vector<float> x = test::activations(rng, n, cols);
  for (Precision p : {Precision::exact, Precision::fast}) {
    std::vector<float> base(size_t(n * rows));
    {
      ThreadPool pool(1);
      KernelContext ctx(pool, k());
      ops::matmul(ctx, base.data(), x.data(), n, tw.view(), p);
    }
    for (int threads : {2, 3}) {
      ThreadPool pool(threads);
      KernelContext ctx(pool, k());
      std::vector<float> y(base.size());
      ops::matmul(ctx, y.data(), x.data(), n, tw.view(), p);
      ASSERT_EQ(0, std::memcmp(y.data(), base.data(), y.size() * 4)) << k().name << " threads " << threads;
      for (int64_t t : {0, 7, 19}) {
        std::vector<float> y1(static_cast<size_t>(rows));
        ops::matmul(ctx, y1.data(), x.data() + t * cols, 1, tw.view(), p);
        ASSERT_EQ(0, std::memcmp(y1.data(), &base[size_t(t * rows)], size_t(rows) * 4)) << k().name << " token " << t << " alone";
      }
    }
  }
}

// A query's attention output is the same bits in decode (alone), inside a prefill chunk, and
// among other sequences; and per-row ops do not depend on the rows around them.
TEST_P(CpuTableTest, AttentionIsBatchInvariantBitwise) {
  // GQA (3 heads share a kv head: AVX-512 runs them on one load of each key, AVX2 and NEON on
  // a converted copy) and no GQA (in a prefill chunk AVX-512 runs up to 4 queries on one load
  // of each key; a decode query runs alone): same bits.
  for (auto [n_heads, n_kv, kvt] : {std::tuple{12, 4, DType::f16}, std::tuple{12, 4, DType::f32},
                                    std::tuple{8, 8, DType::f16}, std::tuple{8, 8, DType::f32}}) {
    AttnCase c{n_heads, n_kv, 96, 16, kvt, 0, {{45, 0}, {3, 60}}, kTranscendentalTol};
    std::mt19937_64 rng(test::base_seed() + 8000);
    AttnSetup s = make_attention(c, rng);
    const int64_t out_n = s.q_rows * s.p.out_stride;
    std::vector<float> all(static_cast<size_t>(out_n));
    for (const AttnSeq& q : s.seqs)
      for (int kh = 0; kh < c.n_kv_heads; ++kh) k().attention(all.data(), s.q.data(), q, s.kv, s.p, kh, kh + 1, 0, q.n_q);
    for (const AttnSeq& q : s.seqs) {
      for (int64_t i = 0; i < q.n_q; ++i) {
        // Query i alone, as a decode step at its position: a sequence of one query.
        AttnSeq one = q;
        one.q_begin = q.q_begin + i;
        one.pos0 = q.pos0 + i;
        one.n_q = 1;
        std::vector<float> out(size_t(out_n), 0.0f);
        k().attention(out.data(), s.q.data(), one, s.kv, s.p, 0, c.n_kv_heads, 0, 1);  // all heads in one call
        const int64_t row = (q.q_begin + i) * s.p.out_stride;
        ASSERT_EQ(0, std::memcmp(&out[size_t(row)], &all[size_t(row)], size_t(s.p.out_stride) * 4))
            << k().name << " " << dtype_name(kvt) << " query " << i << " alone differs";
        // And inside a chunk [i0, i1) around it.
        int64_t i0 = std::max<int64_t>(0, i - 2), i1 = std::min(q.n_q, i + 5);
        std::vector<float> out2(size_t(out_n), 0.0f);
        k().attention(out2.data(), s.q.data(), q, s.kv, s.p, 1, c.n_kv_heads, i0, i1);  // heads 1.. only
        k().attention(out2.data(), s.q.data(), q, s.kv, s.p, 0, 1, i0, i1);
        ASSERT_EQ(0, std::memcmp(&out2[size_t(row)], &all[size_t(row)], size_t(s.p.out_stride) * 4))
            << k().name << " " << dtype_name(kvt) << " query " << i << " in chunk differs";
      }
    }
  }
}

TEST_P(CpuTableTest, RowOpsAreRowInvariantBitwise) {
  std::mt19937_64 rng(test::base_seed() + 8500);
  const int64_t rows = 9, dim = 3072 + 17, ffn = 1000 + 3;
  std::vector<float> x = test::activations(rng, rows, dim), w = test::normal(rng, size_t(dim));
  std::vector<float> all(x.size()), one(x.size());
  k().rmsnorm(all.data(), x.data(), w.data(), dim, 1e-5f, 0, rows);
  for (int64_t r = 0; r < rows; ++r) k().rmsnorm(one.data(), x.data(), w.data(), dim, 1e-5f, r, r + 1);
  EXPECT_EQ(0, std::memcmp(all.data(), one.data(), all.size() * 4)) << "rmsnorm";
  std::vector<float> gu = test::normal(rng, size_t(rows * 2 * ffn), 3.0f), s1(size_t(rows * ffn)), s2(s1.size());
  k().silu_mul(s1.data(), gu.data(), ffn, 0, rows);
  for (int64_t r = 0; r < rows; ++r) k().silu_mul(s2.data(), gu.data(), ffn, r, r + 1);
  EXPECT_EQ(0, std::memcmp(s1.data(), s2.data(), s1.size() * 4)) << "silu_mul";
  std::vector<float> y1 = x, y2 = x;
  k().add(y1.data(), all.data(), 0, int64_t(x.size()));
  for (int64_t i = 0; i < int64_t(x.size()); i += 1001) k().add(y2.data(), all.data(), i, std::min<int64_t>(i + 1001, x.size()));
  EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * 4)) << "add";
}

// Conversions are exact (widening) or round to nearest even (narrowing), so every table must
// give the reference's bits: all 65536 half values, and f32 values of every kind (normal,
// subnormal, ties, overflow, Inf, NaN), at unaligned offsets and lengths.
// Equal bits, or both NaN of the same sign (F16C quiets signalling NaNs, the reference keeps
// them; payloads are not part of the contract).
bool same_value(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) && std::signbit(a) == std::signbit(b);
  return std::memcmp(&a, &b, 4) == 0;
}

TEST_P(CpuTableTest, ConversionsMatchReferenceBitwise) {
  std::vector<uint16_t> h(65536 + 3);
  for (size_t i = 0; i < h.size(); ++i) h[i] = uint16_t(i * 40503u);  // a permutation of all values
  std::vector<float> got(h.size()), want(h.size());
  for (int64_t off : {0, 1, 3}) {
    for (bool bf : {false, true}) {
      std::fill(got.begin(), got.end(), 0.0f);
      std::fill(want.begin(), want.end(), 0.0f);
      (bf ? k().bf16_to_f32 : k().f16_to_f32)(got.data(), h.data(), off, int64_t(h.size()) - 1);
      (bf ? bf16_to_f32_ref : f16_to_f32_ref)(want.data(), h.data(), off, int64_t(h.size()) - 1);
      for (size_t i = 0; i < h.size(); ++i)
        ASSERT_TRUE(same_value(got[i], want[i])) << k().name << (bf ? " bf16_to_f32" : " f16_to_f32") << " of 0x"
                                                 << std::hex << h[i];
    }
  }
  std::mt19937_64 rng(test::base_seed() + 9000);
  std::vector<float> f(200003);
  for (size_t i = 0; i < f.size(); ++i) {
    uint32_t bits = uint32_t(rng());
    switch (i % 8) {
      case 0: bits &= 0x807fffffu; break;                              // subnormal / zero
      case 1: bits = (bits & 0x80000000u) | 0x7f800000u | (bits & 7); break;  // Inf / NaN
      case 2: bits = (bits & 0x8fffe000u) | 0x00001000u; break;        // f16 ties
      case 3: bits = (bits & 0x80ff8000u) | 0x00008000u; break;        // bf16 ties
      case 4: bits = (bits & 0x807fffffu) | (uint32_t(100 + i % 50) << 23); break;  // f16 subnormal range
      default: break;
    }
    std::memcpy(&f[i], &bits, 4);
  }
  std::vector<uint16_t> hg(f.size()), hw(f.size());
  for (int64_t off : {0, 5}) {
    for (bool bf : {false, true}) {
      const char* op = bf ? "f32_to_bf16" : "f32_to_f16";
      std::fill(hg.begin(), hg.end(), uint16_t(0));
      std::fill(hw.begin(), hw.end(), uint16_t(0));
      (bf ? k().f32_to_bf16 : k().f32_to_f16)(hg.data(), f.data(), off, int64_t(f.size()) - 2);
      (bf ? f32_to_bf16_ref : f32_to_f16_ref)(hw.data(), f.data(), off, int64_t(f.size()) - 2);
      for (size_t i = 0; i < f.size(); ++i) {
        // NaN payloads may differ (F16C keeps them, the reference makes a canonical quiet NaN);
        // a NaN must stay a NaN of the same sign.
        if (std::isnan(f[i]) && size_t(off) <= i && i < f.size() - 2) {
          float back = bf ? bf16_to_f32(hg[i]) : f16_to_f32(hg[i]);
          ASSERT_TRUE(std::isnan(back) && std::signbit(back) == std::signbit(f[i])) << k().name << " " << op << " NaN at " << i;
          continue;
        }
        ASSERT_EQ(hg[i], hw[i]) << k().name << " " << op << " at " << i << " value " << f[i];
      }
    }
  }
}

std::string table_param_name(const ::testing::TestParamInfo<const CpuKernels*>& info) { return info.param->name; }

INSTANTIATE_TEST_SUITE_P(Tables, CpuTableTest, ::testing::ValuesIn(cpu_tables()), table_param_name);

// Which tables ran: CI logs show at a glance that every ISA of the machine was tested.
TEST(CpuTables, ListsTheTablesThisCpuRuns) {
  auto t = cpu_tables();
  ASSERT_FALSE(t.empty());
  EXPECT_STREQ(t[0]->name, "ref");
  std::string names;
  for (const CpuKernels* k : t) names += std::string(" ") + k->name;
  std::printf("  CPU kernel tables on this machine:%s (selected: %s)\n", names.c_str(), cpu_kernels().name);
}

}  // namespace
}  // namespace pensieve
