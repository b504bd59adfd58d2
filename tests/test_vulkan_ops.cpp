// Vulkan backend: every op against the scalar reference (kernels/ref/) on random inputs of awkward
// sizes, on every device vulkan_ops_backends() lists (lavapipe in CI; subgroup and shared-memory
// reduction variants both), plus the runtime itself: top-k, recorded command lists replayed with
// automatic barriers, profiling, device selection errors, a missing loader, memory accounting.
// With no Vulkan device (or no loader) the op cases are skipped, never passed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/ref/ref.h"
#include "kernels/vulkan/ops.h"
#include "quant/quantize.h"
#include "tests/ops_backend.h"

namespace pensieve {
namespace {

std::vector<std::unique_ptr<OpsBackend>>& backends() {
  static auto* b = [] {
    auto* v = new std::vector<std::unique_ptr<OpsBackend>>(vulkan_ops_backends());
    for (const auto& x : *v) std::printf("  backend: %s\n", x->name().c_str());  // what the log covered
    return v;
  }();
  return *b;
}

#define REQUIRE_BACKENDS() \
  if (backends().empty()) GTEST_SKIP() << "no Vulkan device (or no loader)"

std::vector<float> randn(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Error of `got` against `want`: normalised mean squared error and the largest absolute error.
struct Err {
  double nmse = 0, max_abs = 0;
  int64_t bad = -1;  // first NaN/Inf
};
Err compare(const float* got, const float* want, size_t n) {
  double num = 0, den = 0;
  Err e;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i]) && e.bad < 0) e.bad = int64_t(i);
    double d = double(got[i]) - double(want[i]);
    num += d * d;
    den += double(want[i]) * double(want[i]);
    e.max_abs = std::max(e.max_abs, std::fabs(d));
  }
  e.nmse = den > 0 ? num / den : num;
  return e;
}

#define EXPECT_CLOSE(got, want, n, nmse_tol, abs_tol)                                          \
  do {                                                                                         \
    Err _e = compare(got, want, n);                                                            \
    EXPECT_LT(_e.bad, 0) << "non-finite output at " << _e.bad;                                 \
    EXPECT_LE(_e.nmse, nmse_tol) << "nmse";                                                    \
    EXPECT_LE(_e.max_abs, abs_tol) << "max abs error";                                         \
  } while (0)

// ---------------------------------------------------------------------------------------------
// matmul

struct DenseMatrix {
  std::vector<uint8_t> bytes;
  WeightMatrix w;
};

DenseMatrix make_dense(std::mt19937& rng, DType t, int64_t rows, int64_t cols) {
  std::vector<float> f = randn(rng, size_t(rows * cols), 0.5f);
  DenseMatrix m;
  m.bytes.resize(size_t(rows * cols) * dtype_size(t));
  for (size_t i = 0; i < f.size(); ++i) {
    if (t == DType::f32) std::memcpy(&m.bytes[i * 4], &f[i], 4);
    else {
      uint16_t h = t == DType::f16 ? f32_to_f16(f[i]) : f32_to_bf16(f[i]);
      std::memcpy(&m.bytes[i * 2], &h, 2);
    }
  }
  m.w.dtype = t;
  m.w.rows = rows;
  m.w.cols = cols;
  m.w.data = m.bytes.data();
  return m;
}

struct MatCase {
  int64_t rows, cols, n;
};

void check_matmul(OpsBackend& b, const WeightMatrix& w, int64_t n, std::mt19937& rng) {
  std::vector<float> x = randn(rng, size_t(n * w.cols));
  std::vector<float> want(size_t(n * w.rows));
  matmul_ref(want.data(), w.rows, x.data(), w.cols, n, w, 0, w.rows);
  for (Precision p : {Precision::exact, Precision::fast}) {
    SCOPED_TRACE(p == Precision::exact ? "exact" : "fast");
    std::vector<float> got(size_t(n * w.rows), NAN);
    if (!b.matmul(got.data(), x.data(), n, w, p)) {
      ADD_FAILURE() << "backend could not run the case";
      continue;
    }
    // exact: f32 products and sums in another order: NMSE ~1e-13 here, 1e-9 leaves headroom.
    // fast: the cooperative-matrix path rounds x and W to f16 (2^-11 relative each): NMSE ~1e-7;
    // the q4 matvec on devices with integer dot products rounds x to int8 per 32 values, as the
    // CPU fast path (step max|x| / 127, error variance step^2 / 12: NMSE ~3e-5 on Gaussian x over
    // many outputs, up to ~1e-3 where few outputs happen to be small; a wrong unit or scale: ~1).
    double nmse_tol = p == Precision::exact ? 1e-9 : w.bits() == 4 ? 2e-3 : 2e-6;
    // Outputs are sums of `cols` terms of size ~0.5-8: scale the absolute bound with sqrt(cols).
    double abs_tol = (p == Precision::exact ? 1e-4 : 5e-2) * std::sqrt(double(w.cols));
    EXPECT_CLOSE(got.data(), want.data(), got.size(), nmse_tol, abs_tol);
  }
}

TEST(VulkanOps, MatmulQuantized) {
  REQUIRE_BACKENDS();
  // Single rows, row counts off every tile (2, 8, 64), token counts on both sides of the matvec
  // limit (8) and of the 64-token tile; all at the Phi layout (group 64, f16 scales).
  // The last two have rows long and grids small enough for the q4 tensor-core matmul to split K
  // (on GPUs that have one); {9, 40960, 2} rows longer than the q4 matvec's shared memory holds of
  // x (both variants stage it in tiles then).
  const MatCase shapes[] = {{1, 128, 1},    {37, 256, 1},   {67, 384, 3},    {130, 256, 8},   {65, 512, 9},
                            {200, 384, 33}, {129, 128, 70}, {300, 4096, 40}, {96, 2048, 130}, {9, 40960, 2}};
  // Every group size and scale type, on one matvec and one tiled shape (each combination is its
  // own pipeline: on lavapipe compiling them, not running them, is what takes time).
  const MatCase sweep[] = {{67, 384, 3}, {65, 384, 20}};
  struct Cfg { int bits, group; DType st; MatCase c; };
  std::vector<Cfg> cfgs;
  for (int bits : {4, 8}) {
    for (const MatCase& c : shapes) cfgs.push_back({bits, 64, DType::f16, c});
    for (int group : {32, 64, 128})
      for (DType st : {DType::f16, DType::bf16, DType::f32})
        if (group != 64 || st != DType::f16)
          for (const MatCase& c : sweep) cfgs.push_back({bits, group, st, c});
  }
  for (auto& b : backends())
    for (const Cfg& f : cfgs) {
      const MatCase& c = f.c;
      uint32_t seed = uint32_t(c.rows * 131 + c.cols * 7 + c.n + f.bits * 1000 + f.group);
      SCOPED_TRACE(b->name() + " q" + std::to_string(f.bits) + " g" + std::to_string(f.group) + " " +
                   dtype_name(f.st) + " rows " + std::to_string(c.rows) + " cols " + std::to_string(c.cols) +
                   " n " + std::to_string(c.n) + " seed " + std::to_string(seed));
      std::mt19937 rng(seed);
      std::vector<float> wf = randn(rng, size_t(c.rows * c.cols), 0.5f);
      auto q = quantize(wf.data(), DType::f32, c.rows, c.cols, f.bits, f.group, f.st);
      ASSERT_TRUE(q.ok()) << q.error();
      check_matmul(*b, q->view(), c.n, rng);
    }
}

TEST(VulkanOps, MatmulDense) {
  REQUIRE_BACKENDS();
  // Odd column counts exercise the tiled kernel's k tail and the 16-bit element addressing.
  const MatCase cases[] = {{1, 8, 1}, {33, 45, 1}, {50, 96, 5}, {70, 100, 17}, {64, 64, 64}, {17, 256, 2}};
  for (auto& b : backends())
    for (DType t : {DType::f32, DType::f16, DType::bf16})
      for (const MatCase& c : cases) {
        uint32_t seed = uint32_t(c.rows * 31 + c.cols * 3 + c.n);
        SCOPED_TRACE(b->name() + " " + dtype_name(t) + " rows " + std::to_string(c.rows) + " cols " +
                     std::to_string(c.cols) + " n " + std::to_string(c.n) + " seed " + std::to_string(seed));
        std::mt19937 rng(seed);
        DenseMatrix m = make_dense(rng, t, c.rows, c.cols);
        check_matmul(*b, m.w, c.n, rng);
      }
}

// ---------------------------------------------------------------------------------------------
// small ops

TEST(VulkanOps, Rmsnorm) {
  REQUIRE_BACKENDS();
  for (auto& b : backends())
    for (int64_t rows : {1, 3, 17})
      for (int64_t dim : {1, 7, 96, 257, 3072}) {
        SCOPED_TRACE(b->name() + " rows " + std::to_string(rows) + " dim " + std::to_string(dim));
        std::mt19937 rng(uint32_t(rows * 10007 + dim));
        auto x = randn(rng, size_t(rows * dim), 2.0f), w = randn(rng, size_t(dim));
        std::vector<float> want(x.size()), got(x.size(), NAN);
        rmsnorm_ref(want.data(), x.data(), w.data(), dim, 1e-5f, 0, rows);
        ASSERT_TRUE(b->rmsnorm(got.data(), x.data(), w.data(), rows, dim, 1e-5f));
        // Sum of squares in another order and 1/sqrt vs the libm one: a few ulp.
        EXPECT_CLOSE(got.data(), want.data(), got.size(), 1e-11, 1e-4);
      }
}

TEST(VulkanOps, Rope) {
  REQUIRE_BACKENDS();
  struct C { int64_t n; int heads, head_dim, rot_dim, extra; };
  const C cases[] = {{1, 1, 8, 8, 0}, {3, 4, 96, 96, 5}, {5, 3, 128, 96, 0}, {2, 32, 96, 96, 8}, {4, 2, 64, 16, 1}};
  for (auto& b : backends())
    for (const C& c : cases) {
      SCOPED_TRACE(b->name() + " heads " + std::to_string(c.heads) + " rot " + std::to_string(c.rot_dim));
      std::mt19937 rng(uint32_t(c.n * 100 + c.heads));
      const int64_t stride = int64_t(c.heads) * c.head_dim + c.extra, half = c.rot_dim / 2;
      auto x = randn(rng, size_t(c.n * stride));
      std::vector<float> cs(size_t(c.n * half)), sn(size_t(c.n * half));
      for (int64_t t = 0; t < c.n; ++t)
        for (int64_t i = 0; i < half; ++i) {
          double ang = double(t + 3) * std::pow(10000.0, -2.0 * double(i) / double(c.rot_dim));
          cs[size_t(t * half + i)] = float(std::cos(ang) * 1.1);
          sn[size_t(t * half + i)] = float(std::sin(ang) * 1.1);
        }
      std::vector<float> want = x, got = x;
      rope_ref(want.data(), stride, c.heads, c.head_dim, c.rot_dim, cs.data(), sn.data(), 0, c.n);
      ASSERT_TRUE(b->rope(got.data(), c.n, stride, c.heads, c.head_dim, c.rot_dim, cs.data(), sn.data()));
      // Two products and a sum per element (FMA contraction may differ): ~1 ulp.
      EXPECT_CLOSE(got.data(), want.data(), got.size(), 1e-12, 1e-5);
    }
}

TEST(VulkanOps, SiluMulAddEmbed) {
  REQUIRE_BACKENDS();
  for (auto& b : backends()) {
    SCOPED_TRACE(b->name());
    std::mt19937 rng(7);
    for (int64_t n : {1, 3}) {
      const int64_t ffn = 1000;
      auto gu = randn(rng, size_t(n * 2 * ffn), 3.0f);
      std::vector<float> want(size_t(n * ffn)), got(size_t(n * ffn), NAN);
      silu_mul_ref(want.data(), gu.data(), ffn, 0, n);
      ASSERT_TRUE(b->silu_mul(got.data(), gu.data(), n, ffn));
      // exp differs by a few ulp between libm and the GPU.
      EXPECT_CLOSE(got.data(), want.data(), got.size(), 1e-11, 1e-4);
    }
    for (int64_t n : {1, 1000, 300001}) {
      auto y = randn(rng, size_t(n)), x = randn(rng, size_t(n));
      std::vector<float> want = y, got = y;
      add_ref(want.data(), x.data(), 0, n);
      ASSERT_TRUE(b->add(got.data(), x.data(), n));
      EXPECT_CLOSE(got.data(), want.data(), got.size(), 0, 0);  // one rounding: exact
    }
    for (int bits : {4, 8})
      for (DType st : {DType::f16, DType::bf16}) {
        const int64_t rows = 300, cols = 192;
        auto wf = randn(rng, size_t(rows * cols));
        auto q = quantize(wf.data(), DType::f32, rows, cols, bits, 64, st);
        ASSERT_TRUE(q.ok());
        std::vector<int32_t> ids = {0, 299, 17, 17, 150};
        std::vector<float> want(ids.size() * cols), got(ids.size() * cols, NAN);
        for (size_t t = 0; t < ids.size(); ++t) dequantize_row(q->view(), ids[t], want.data() + t * cols);
        ASSERT_TRUE(b->embed(got.data(), ids.data(), int64_t(ids.size()), q->view()));
        // scale * q + bias: the GPU may fuse it into one FMA (one rounding fewer).
        EXPECT_CLOSE(got.data(), want.data(), got.size(), 1e-13, 1e-6);
      }
  }
}

// ---------------------------------------------------------------------------------------------
// attention

struct AttnCase {
  std::vector<std::pair<int64_t, int64_t>> seqs;  // (pos0, n_q)
  int n_heads, n_kv_heads, head_dim, block_size;
  int64_t window;
  DType kv_dtype;
  float q_scale = 1.0f;  // > 1: peaked, jumpy scores (the running maximum moves by a lot)
};

void check_attention(OpsBackend& b, const AttnCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int hd = c.head_dim;
  int64_t n_rows = 0, blocks_needed = 0;
  for (auto [pos0, nq] : c.seqs) {
    n_rows += nq;
    blocks_needed += (pos0 + nq + c.block_size - 1) / c.block_size;
  }
  // Pool of blocks, handed out in a shuffled order so block tables are not the identity; one
  // block more than needed so an unused block sits in the pool too.
  const int64_t n_blocks = blocks_needed + 1;
  std::vector<int32_t> order(static_cast<size_t>(n_blocks));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  KvLayer kv;
  kv.dtype = c.kv_dtype;
  kv.block_size = c.block_size;
  kv.n_kv_heads = c.n_kv_heads;
  kv.head_dim = hd;
  kv.head_stride = int64_t(c.block_size) * hd;
  kv.block_stride = kv.head_stride * c.n_kv_heads;
  const size_t elems = size_t(n_blocks * kv.block_stride);
  auto kf = randn(rng, elems), vf = randn(rng, elems);
  std::vector<uint16_t> kh(elems), vh(elems);
  for (size_t i = 0; i < elems; ++i) {
    kh[i] = f32_to_f16(kf[i]);
    vh[i] = f32_to_f16(vf[i]);
  }
  kv.k = c.kv_dtype == DType::f16 ? static_cast<const void*>(kh.data()) : kf.data();
  kv.v = c.kv_dtype == DType::f16 ? static_cast<const void*>(vh.data()) : vf.data();

  std::vector<std::vector<int32_t>> tables;
  std::vector<AttnSeq> seqs;
  int64_t row = 0, next_block = 0;
  for (auto [pos0, nq] : c.seqs) {
    std::vector<int32_t> t;
    for (int64_t i = 0; i < (pos0 + nq + c.block_size - 1) / c.block_size; ++i) t.push_back(order[size_t(next_block++)]);
    tables.push_back(std::move(t));
    seqs.push_back({row, nq, pos0, nullptr});
    row += nq;
  }
  for (size_t s = 0; s < seqs.size(); ++s) seqs[s].block_table = tables[s].data();

  AttnParams p;
  p.n_heads = c.n_heads;
  p.scale = 1.0f / std::sqrt(float(hd));
  p.window = c.window;
  p.q_stride = int64_t(c.n_heads) * hd + 3;  // padded rows: strides are honoured
  p.out_stride = int64_t(c.n_heads) * hd + 5;
  auto q = randn(rng, size_t(n_rows * p.q_stride), c.q_scale);
  std::vector<float> want(size_t(n_rows * p.out_stride), -7.0f), got = want;
  for (const AttnSeq& s : seqs)
    attention_ref(want.data(), q.data(), s, kv, p, 0, c.n_kv_heads, 0, s.n_q);  // every kv head's group
  ASSERT_TRUE(b.attention(got.data(), q.data(), seqs.data(), int(seqs.size()), kv, p, n_rows, n_blocks));
  // Softmax-weighted averages of O(1) values: exp and the summation order differ from the
  // reference by a few ulp per term. The padding between rows (-7) must stay untouched.
  // The tensor-core prefill ("-flash" backends, chunks of more than 4 queries) rounds q, k, v and
  // the probabilities to f16 (2^-11 relative each): errors ~1e-3 on outputs of size ~0.3.
  int64_t max_nq = 0;
  for (auto [pos0, nq] : c.seqs) max_nq = std::max(max_nq, nq);
  const bool f16_math = b.name().find("-flash") != std::string::npos && max_nq > 4;
  EXPECT_CLOSE(got.data(), want.data(), got.size(), f16_math ? 1e-5 : 1e-10, f16_math ? 1e-2 : 2e-5);
}

TEST(VulkanOps, AttentionDecode) {
  REQUIRE_BACKENDS();
  const AttnCase cases[] = {
      {{{0, 1}}, 2, 2, 64, 16, 0, DType::f16},
      {{{5, 1}, {40, 1}, {17, 1}}, 4, 2, 96, 16, 0, DType::f16},
      {{{300, 1}, {1500, 1}}, 4, 1, 128, 16, 0, DType::f16},    // split-K with a combine pass
      {{{1000, 1}}, 3, 3, 64, 32, 100, DType::f16},              // sliding window
      {{{77, 1}, {3, 1}}, 8, 2, 80, 8, 0, DType::f32},
      {{{10, 2}, {200, 4}}, 4, 2, 64, 16, 0, DType::f16},        // a few queries per sequence
  };
  int i = 0;
  for (auto& b : backends())
    for (const AttnCase& c : cases) {
      SCOPED_TRACE(b->name() + " case " + std::to_string(i % 6));
      check_attention(*b, c, uint32_t(++i));
    }
}

TEST(VulkanOps, AttentionPrefill) {
  REQUIRE_BACKENDS();
  const AttnCase cases[] = {
      {{{0, 5}}, 2, 1, 64, 16, 0, DType::f16},
      {{{0, 40}, {17, 23}}, 4, 2, 96, 16, 0, DType::f16},
      {{{3, 33}}, 6, 2, 128, 16, 9, DType::f16},   // window inside a tile
      {{{0, 19}, {100, 6}}, 2, 2, 256, 8, 0, DType::f32},
      {{{50, 70}}, 3, 1, 80, 32, 0, DType::f16},
      {{{0, 100}, {20, 37}}, 4, 2, 64, 16, 0, DType::f16, 6.0f},  // scores ~N(0, 6^2)
      {{{0, 150}, {40, 70}}, 4, 2, 96, 16, 0, DType::f16},        // several 64-query tiles
      {{{10, 130}}, 2, 1, 128, 16, 40, DType::f16},               // ... with a window
  };
  int i = 100;
  for (auto& b : backends())
    for (const AttnCase& c : cases) {
      SCOPED_TRACE(b->name() + " case " + std::to_string(i % 8));
      check_attention(*b, c, uint32_t(++i));
    }
}

// ---------------------------------------------------------------------------------------------
// The runtime itself, on one context per device.

std::vector<std::unique_ptr<vulkan::Context>> contexts(bool profile = false) {
  std::vector<std::unique_ptr<vulkan::Context>> out;
  auto devices = vulkan::Context::list_devices();
  if (!devices.ok()) return out;
  const char* only = std::getenv("PENSIEVE_VK_DEVICE");
  for (const auto& d : *devices) {
    if (only && *only && std::atoi(only) != d.index) continue;
    vulkan::ContextOptions o;
    o.device = "vulkan:" + std::to_string(d.index);
    o.profile = profile;
    auto c = vulkan::Context::create(o);
    if (c.ok()) out.push_back(std::move(*c));
  }
  return out;
}

template <class T>
vulkan::Buffer upload(vulkan::Context& ctx, const std::vector<T>& v) {
  auto b = vulkan::Buffer::create(ctx, v.size() * sizeof(T), vulkan::MemoryKind::device);
  EXPECT_TRUE(b.ok());
  EXPECT_TRUE(ctx.upload(*b, 0, v.data(), v.size() * sizeof(T)).ok());
  return std::move(*b);
}

// A random rows x cols weight (N(0, 0.3)), quantized as the Phi models are (q4, group 64, f16
// scales) and uploaded; q stays for CPU references.
struct RandomQ4 {
  QuantizedMatrix q;
  vulkan::GpuWeightBuffers gpu;
};
Result<RandomQ4> random_q4(vulkan::Context& ctx, std::mt19937& rng, int64_t rows, int64_t cols) {
  auto wf = randn(rng, size_t(rows * cols), 0.3f);
  auto q = quantize(wf.data(), DType::f32, rows, cols, 4, 64, DType::f16);
  if (!q.ok()) return std::move(q).take_error();
  auto g = vulkan::upload_weight(ctx, q->view());
  if (!g.ok()) return std::move(g).take_error();
  return RandomQ4{std::move(*q), std::move(*g)};
}

template <class T>
std::vector<T> download(vulkan::Context& ctx, const vulkan::Buffer& b, size_t n) {
  std::vector<T> v(n);
  EXPECT_TRUE(ctx.download(v.data(), b, 0, n * sizeof(T)).ok());
  return v;
}

TEST(VulkanRuntime, TopkAndArgmax) {
  auto ctxs = contexts();
  if (ctxs.empty()) GTEST_SKIP() << "no Vulkan device";
  for (auto& ctx : ctxs)
    for (int64_t n : {1, 100, 2048, 2049, 32064, 50000})
      for (int k : {1, 5, 40}) {
        SCOPED_TRACE(ctx->info().name + " n " + std::to_string(n) + " k " + std::to_string(k));
        const int64_t rows = 3;
        std::mt19937 rng(uint32_t(n + k));
        std::vector<float> x(size_t(rows * n));
        // Few distinct values, so ties are common and the index tie-break is exercised.
        std::uniform_int_distribution<int> lv(-50, 50);
        for (auto& v : x) v = float(lv(rng)) * 0.25f;
        auto bx = upload(*ctx, x);
        auto bv = vulkan::Buffer::create(*ctx, rows * k * 4, vulkan::MemoryKind::readback);
        auto bi = vulkan::Buffer::create(*ctx, rows * k * 4, vulkan::MemoryKind::readback);
        auto bs = vulkan::Buffer::create(*ctx, std::max<uint64_t>(16, vulkan::ops::topk_scratch_bytes(rows, n, k)),
                                         vulkan::MemoryKind::device);
        ASSERT_TRUE(bv.ok() && bi.ok() && bs.ok());
        auto cl = vulkan::CommandList::create(*ctx);
        ASSERT_TRUE(cl.ok());
        ASSERT_TRUE((*cl)->begin().ok());
        Status st = vulkan::ops::topk(**cl, bv->whole(), bi->whole(), bx.whole(), rows, n, k, bs->whole());
        ASSERT_TRUE(st.ok()) << st.error();
        ASSERT_TRUE((*cl)->end().ok());
        ASSERT_TRUE((*cl)->submit_and_wait().ok());
        auto gv = download<float>(*ctx, *bv, size_t(rows * k));
        auto gi = download<uint32_t>(*ctx, *bi, size_t(rows * k));
        for (int64_t r = 0; r < rows; ++r) {
          std::vector<uint32_t> idx(static_cast<size_t>(n));
          std::iota(idx.begin(), idx.end(), 0u);
          const float* xr = x.data() + r * n;
          std::stable_sort(idx.begin(), idx.end(), [&](uint32_t a, uint32_t b) { return xr[a] > xr[b]; });
          for (int j = 0; j < k; ++j) {
            if (j >= n) {
              EXPECT_EQ(gi[size_t(r * k + j)], 0xffffffffu);
              continue;
            }
            EXPECT_EQ(gi[size_t(r * k + j)], idx[size_t(j)]) << "row " << r << " rank " << j;
            EXPECT_EQ(gv[size_t(r * k + j)], xr[idx[size_t(j)]]);
          }
          if (k == 1) {
            EXPECT_EQ(int64_t(gi[size_t(r)]), ops::argmax(xr, n));
          }
        }
      }
}

// The q4 matvec's launch shape (rows per invocation, tokens per workgroup) must not
// change any output bit (mvq4.comp: batch invariance), with the rmsnorm fused into its input.
TEST(VulkanRuntime, MatvecTuningsAreBitwiseEqual) {
  auto ctxs = contexts();
  if (ctxs.empty()) GTEST_SKIP() << "no Vulkan device";
  for (auto& ctx : ctxs) {
    SCOPED_TRACE(ctx->info().name);
    const int64_t rows = 70, cols = 4096, n = 3;
    std::mt19937 rng(11);
    auto rw = random_q4(*ctx, rng, rows, cols);
    ASSERT_TRUE(rw.ok()) << rw.error();
    const vulkan::GpuWeight& gw = rw->gpu.w;
    auto bx = upload(*ctx, randn(rng, size_t(n * cols)));
    auto bg = upload(*ctx, randn(rng, size_t(cols)));
    auto by = vulkan::Buffer::create(*ctx, n * rows * 4, vulkan::MemoryKind::device);
    ASSERT_TRUE(by.ok());
    // Both precisions: fast takes the int8 dot-product variant where the device has one.
    for (Precision p : {Precision::exact, Precision::fast}) {
      SCOPED_TRACE(p == Precision::exact ? "exact" : "fast");
      auto run = [&](vulkan::MatvecTuning t) {
        vulkan::MatmulFusion f;
        f.norm = bg.whole();
        f.eps = 1e-5f;
        auto cl = vulkan::CommandList::create(*ctx);
        EXPECT_TRUE(cl.ok());
        EXPECT_TRUE((*cl)->begin().ok());
        Status st = vulkan::ops::matmul(**cl, by->whole(), rows, bx.whole(), cols, n, gw, p, t, f);
        EXPECT_TRUE(st.ok()) << st.error();
        EXPECT_TRUE((*cl)->end().ok());
        EXPECT_TRUE((*cl)->submit_and_wait().ok());
        return download<float>(*ctx, *by, size_t(n * rows));
      };
      const std::vector<float> want = run({});
      for (uint32_t r : {1u, 2u, 4u})
        for (uint32_t nt : {1u, 2u, 3u}) {
          SCOPED_TRACE("rows " + std::to_string(r) + " tokens " + std::to_string(nt));
          vulkan::MatvecTuning t;
          t.rows = r;
          t.tokens = nt;
          const std::vector<float> got = run(t);
          EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0);
        }
    }
  }
}

// The down projection's input fused into the matvec (silu(gate) * up formed while staging x)
// equals silu_mul followed by the plain matvec, accumulating into y. (The tensor-core matmul does
// not take this fusion: every row tile would recompute the silu, measured 1.6x slower for down.)
TEST(VulkanRuntime, FusedSiluInputMatchesSeparateOp) {
  auto ctxs = contexts();
  if (ctxs.empty()) GTEST_SKIP() << "no Vulkan device";
  for (auto& ctx : ctxs)
    for (int64_t n : {1, 3}) {
      SCOPED_TRACE(ctx->info().name + " n " + std::to_string(n));
      const int64_t rows = 200, ffn = 1024;
      std::mt19937 rng{uint32_t(n)};
      auto rw = random_q4(*ctx, rng, rows, ffn);
      ASSERT_TRUE(rw.ok()) << rw.error();
      const vulkan::GpuWeight& gw = rw->gpu.w;
      auto bgu = upload(*ctx, randn(rng, size_t(n * 2 * ffn)));
      const std::vector<float> y0 = randn(rng, size_t(n * rows));
      auto bact = vulkan::Buffer::create(*ctx, n * ffn * 4, vulkan::MemoryKind::device);
      ASSERT_TRUE(bact.ok());
      auto run = [&](bool fused) {
        auto by = upload(*ctx, y0);
        auto cl = vulkan::CommandList::create(*ctx);
        EXPECT_TRUE(cl.ok());
        EXPECT_TRUE((*cl)->begin().ok());
        vulkan::MatmulFusion f;
        f.accumulate = true;
        Status st;
        if (fused) {
          f.silu_offset = ffn;
          st = vulkan::ops::matmul(**cl, by.whole(), rows, bgu.whole(), 2 * ffn, n, gw, Precision::exact, {}, f);
        } else {
          st = vulkan::ops::silu_mul(**cl, bact->whole(), bgu.whole(), n, ffn);
          if (st.ok())
            st = vulkan::ops::matmul(**cl, by.whole(), rows, bact->whole(), ffn, n, gw, Precision::exact, {}, f);
        }
        EXPECT_TRUE(st.ok()) << st.error();
        EXPECT_TRUE((*cl)->end().ok());
        EXPECT_TRUE((*cl)->submit_and_wait().ok());
        return download<float>(*ctx, by, size_t(n * rows));
      };
      const std::vector<float> want = run(false), got = run(true);
      // The same silu formula in f32 either way; only where the compiler contracts differently can
      // a last bit move.
      EXPECT_CLOSE(got.data(), want.data(), got.size(), 1e-12, 1e-4);
    }
}

// The tensor-core matmul's fusions (batched decode): a producer adding into y also writes y's
// sums of squares, and a gate_up-shaped consumer normalises its x from them and writes silu(gate)
// * up; equals add-into-y, rmsnorm, the plain tensor-core matmul and silu_mul. Runs where the
// device has that kernel (not on lavapipe).
TEST(VulkanRuntime, CoopFusionsMatchSeparateOps) {
  auto ctxs = contexts();
  int ran = 0;
  for (auto& ctx : ctxs)
    for (int64_t n : {5, 20, 33, 130}) {
      SCOPED_TRACE(ctx->info().name + " n " + std::to_string(n));
      const int64_t hidden = 384, inner = 256, ffn = 100;
      std::mt19937 rng{uint32_t(n)};
      auto r1 = random_q4(*ctx, rng, hidden, inner), r2 = random_q4(*ctx, rng, 2 * ffn, hidden);
      ASSERT_TRUE(r1.ok() && r2.ok());
      const vulkan::GpuWeight &g1 = r1->gpu.w, &g2 = r2->gpu.w;
      if (std::string(vulkan::ops::matmul_kernel(*ctx, inner, n, g1, Precision::fast)) != "mmq4_coop" ||
          std::string(vulkan::ops::matmul_kernel(*ctx, hidden, n, g2, Precision::fast)) != "mmq4_coop")
        continue;
      ++ran;
      auto ba = upload(*ctx, randn(rng, size_t(n * inner)));
      auto bg = upload(*ctx, randn(rng, size_t(hidden)));
      const std::vector<float> x0 = randn(rng, size_t(n * hidden), 4.0f);
      auto bxn = vulkan::Buffer::create(*ctx, n * hidden * 4, vulkan::MemoryKind::device);
      auto bgu = vulkan::Buffer::create(*ctx, n * 2 * ffn * 4, vulkan::MemoryKind::device);
      auto bssq = vulkan::Buffer::create(*ctx, n * vulkan::ops::coop_ssq_row(hidden) * 4, vulkan::MemoryKind::device);
      auto bout = vulkan::Buffer::create(*ctx, n * ffn * 4, vulkan::MemoryKind::device);
      ASSERT_TRUE(bxn.ok() && bgu.ok() && bssq.ok() && bout.ok());
      auto run = [&](bool fused, std::vector<float>* x) {
        auto bx = upload(*ctx, x0);
        auto cl = vulkan::CommandList::create(*ctx);
        EXPECT_TRUE(cl.ok());
        EXPECT_TRUE((*cl)->begin().ok());
        vulkan::MatmulFusion acc{.accumulate = true};
        vulkan::MatmulFusion cons{.norm = bg.whole(), .eps = 1e-5f, .silu_pairs = true};
        if (fused) acc.ssq = cons.ssq = bssq->whole();
        Status st = vulkan::ops::matmul(**cl, bx.whole(), hidden, ba.whole(), inner, n, g1, Precision::fast, {}, acc);
        if (st.ok() && fused)
          st = vulkan::ops::matmul(**cl, bout->whole(), ffn, bx.whole(), hidden, n, g2, Precision::fast, {}, cons);
        if (st.ok() && !fused) st = vulkan::ops::rmsnorm(**cl, bxn->whole(), bx.whole(), bg.whole(), n, hidden, 1e-5f);
        if (st.ok() && !fused)
          st = vulkan::ops::matmul(**cl, bgu->whole(), 2 * ffn, bxn->whole(), hidden, n, g2, Precision::fast);
        if (st.ok() && !fused) st = vulkan::ops::silu_mul(**cl, bout->whole(), bgu->whole(), n, ffn);
        EXPECT_TRUE(st.ok()) << st.error();
        EXPECT_TRUE((*cl)->end().ok());
        EXPECT_TRUE((*cl)->submit_and_wait().ok());
        *x = download<float>(*ctx, bx, size_t(n * hidden));
        return download<float>(*ctx, *bout, size_t(n * ffn));
      };
      std::vector<float> x_sep, x_fused;
      const std::vector<float> want = run(false, &x_sep), got = run(true, &x_fused);
      // The producer's y is the same arithmetic with or without the sums of squares.
      EXPECT_EQ(std::memcmp(x_fused.data(), x_sep.data(), x_sep.size() * 4), 0);
      // Both round x * inv_rms * g to f16 for the tensor cores; inv_rms is summed in another order,
      // so an f16 rounding may flip (2^-11 relative) in a few inputs; the split of K differs with
      // the grid (the fused gate_up tiles pair gate and up rows).
      EXPECT_CLOSE(got.data(), want.data(), got.size(), 1e-6, 1e-2);
    }
  if (!ran) GTEST_SKIP() << "no device with the q4 tensor-core matmul";
}

// Prefill's gate_up writes silu(gate) * up without a split K (each subgroup pairs its gate and up
// fragments; shaders/mmq4_coop.comp): rows of 128 values (2 steps) leave no split to take, and 200
// gate rows end inside a tile. Each output is the same arithmetic as the plain matmul and
// silu_mul's: equal bit for bit, and as bf16 (y_bf16, prefill's input of down) their rounding.
TEST(VulkanRuntime, CoopSiluPairsWithoutSplitMatchSeparateOps) {
  auto ctxs = contexts();
  int ran = 0;
  for (auto& ctx : ctxs)
    for (int64_t n : {70, 130}) {
      SCOPED_TRACE(ctx->info().name + " n " + std::to_string(n));
      const int64_t cols = 128, ffn = 200;
      std::mt19937 rng{uint32_t(7 + n)};
      auto r = random_q4(*ctx, rng, 2 * ffn, cols);
      ASSERT_TRUE(r.ok());
      const vulkan::GpuWeight& g = r->gpu.w;
      if (std::string(vulkan::ops::matmul_kernel(*ctx, cols, n, g, Precision::fast)) != "mmq4_coop") continue;
      ++ran;
      auto bx = upload(*ctx, randn(rng, size_t(n * cols)));
      auto bgu = vulkan::Buffer::create(*ctx, n * 2 * ffn * 4, vulkan::MemoryKind::device);
      auto bsep = vulkan::Buffer::create(*ctx, n * ffn * 4, vulkan::MemoryKind::device);
      auto bfused = vulkan::Buffer::create(*ctx, n * ffn * 4, vulkan::MemoryKind::device);
      auto bh = vulkan::Buffer::create(*ctx, n * ffn * 2, vulkan::MemoryKind::device);  // the same as bf16
      ASSERT_TRUE(bgu.ok() && bsep.ok() && bfused.ok() && bh.ok());
      auto cl = vulkan::CommandList::create(*ctx);
      ASSERT_TRUE(cl.ok());
      ASSERT_TRUE((*cl)->begin().ok());
      Status st = vulkan::ops::matmul(**cl, bgu->whole(), 2 * ffn, bx.whole(), cols, n, g, Precision::fast);
      if (st.ok()) st = vulkan::ops::silu_mul(**cl, bsep->whole(), bgu->whole(), n, ffn);
      if (st.ok())
        st = vulkan::ops::matmul(**cl, bfused->whole(), ffn, bx.whole(), cols, n, g, Precision::fast, {},
                                 {.silu_pairs = true});
      if (st.ok())
        st = vulkan::ops::matmul(**cl, bh->whole(), ffn, bx.whole(), cols, n, g, Precision::fast, {},
                                 {.silu_pairs = true, .y_bf16 = true});
      ASSERT_TRUE(st.ok()) << st.error();
      ASSERT_TRUE((*cl)->end().ok());
      ASSERT_TRUE((*cl)->submit_and_wait().ok());
      const auto want = download<float>(*ctx, *bsep, size_t(n * ffn)), got = download<float>(*ctx, *bfused, size_t(n * ffn));
      const auto h = download<uint16_t>(*ctx, *bh, size_t(n * ffn));
      int64_t differ = 0, differ_bf16 = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        differ += std::memcmp(&want[i], &got[i], 4) != 0;
        differ_bf16 += h[i] != f32_to_bf16(want[i]);
      }
      EXPECT_EQ(differ, 0);
      EXPECT_EQ(differ_bf16, 0);  // y_bf16: the same values rounded to nearest even
      EXPECT_CLOSE(got.data(), want.data(), got.size(), 1e-12, 1e-6);
    }
  if (!ran) GTEST_SKIP() << "no device with the q4 tensor-core matmul";
}

// rmsnorm writing bf16 (prefill's input of qkv and gate_up on the tensor cores): the f32 result
// rounded to nearest even, bit for bit; misuse (odd dim, y over x) is an error.
// The tensor-core q4 matmul at 5-32 tokens runs as mmq4_frag / mmq4_frag8 where the device's
// cooperative matrices lay out their elements as those variants build them (coop_probe.comp), as
// NVIDIA's do. A change that broke the probe or the selection would fall back to the slower tile
// loop without a wrong result, so this checks which pipeline ran (MatmulQuantized and the Coop
// tests check the results).
TEST(VulkanRuntime, BatchedDecodeTakesFragmentKernelOnNvidia) {
  auto ctxs = contexts();
  int ran = 0;
  for (auto& ctx : ctxs) {
    if (ctx->info().vendor_id != 0x10de || !ctx->coopmat()) continue;
    ++ran;
    std::mt19937 rng{7};
    auto r = random_q4(*ctx, rng, 256, 512);
    ASSERT_TRUE(r.ok());
    for (int64_t n : {8, 16, 20, 32}) {
      SCOPED_TRACE(ctx->info().name + " n " + std::to_string(n));
      auto bx = upload(*ctx, randn(rng, size_t(n * 512)));
      auto by = vulkan::Buffer::create(*ctx, n * 256 * 4, vulkan::MemoryKind::device);
      auto cl = vulkan::CommandList::create(*ctx, true);
      ASSERT_TRUE(by.ok() && cl.ok());
      ASSERT_TRUE((*cl)->begin().ok());
      Status st = vulkan::ops::matmul(**cl, by->whole(), 256, bx.whole(), 512, n, r->gpu.w, Precision::fast);
      ASSERT_TRUE(st.ok()) << st.error();
      ASSERT_TRUE((*cl)->end().ok());
      ASSERT_TRUE((*cl)->submit_and_wait().ok());
      auto prof = (*cl)->profile();
      ASSERT_TRUE(prof.ok());
      const bool n8 = (n == 8 || n == 20) && ctx->info().coopmat_nv_f16_16x8x16;
      const std::string want = n8 ? "mmq4_frag8[" : "mmq4_frag[";
      std::string ran_labels;
      for (const vulkan::OpTime& t : *prof) ran_labels += t.label + " ";
      EXPECT_NE(ran_labels.find(want), std::string::npos) << "ran: " << ran_labels;
    }
  }
  if (!ran) GTEST_SKIP() << "no NVIDIA GPU with cooperative matrices";
}

// The persistent one-token layer (shaders/decode_layer.comp) against the same layer as separate
// ops (the decode step's dispatch-per-op path in fast precision): x after the layer, the attention
// output and the new token's K / V in the cache. Awkward shapes: rows of 6 and 10 units (most lanes
// idle), 3 query heads per kv head, partial rotary, shuffled blocks, a sliding window, one key.
// Runs where the op does (NVIDIA); skipped elsewhere.
// A paged f16 cache layout of blocks of bs tokens (buffers bound later), and random f16 contents.
vulkan::GpuKv f16_kv_layout(int bs, int n_kv_heads, int64_t head_dim) {
  vulkan::GpuKv kv;
  kv.dtype = DType::f16;
  kv.block_size = bs;
  kv.n_kv_heads = n_kv_heads;
  kv.head_dim = int(head_dim);
  kv.head_stride = bs * head_dim;
  kv.block_stride = kv.head_stride * n_kv_heads;
  return kv;
}
std::vector<uint16_t> random_f16(std::mt19937& rng, size_t n) {
  std::vector<uint16_t> v(n);
  for (auto& e : v) e = f32_to_f16(std::normal_distribution<float>(0, 1)(rng));
  return v;
}

TEST(VulkanRuntime, DecodeLayerMatchesSeparateOps) {
  struct Case {
    int64_t hidden, ffn;
    int n_heads, n_kv_heads, head_dim, rot_dim;
    int64_t pos, window;
  };
  const Case cases[] = {
      {192, 320, 6, 2, 32, 24, 37, 0},
      {256, 448, 4, 4, 64, 64, 0, 0},     // the first token: one key
      {192, 320, 6, 3, 32, 32, 300, 41},  // a window inside a long context
  };
  auto ctxs = contexts();
  int ran = 0;
  for (auto& ctx : ctxs)
    for (const Case& c : cases) {
      SCOPED_TRACE(ctx->info().name + " hidden " + std::to_string(c.hidden) + " pos " + std::to_string(c.pos));
      std::mt19937 rng{uint32_t(c.hidden + c.pos)};
      const int64_t H = c.hidden, F = c.ffn, hd = c.head_dim, QD = c.n_heads * hd;
      const int64_t QKV = (c.n_heads + 2 * c.n_kv_heads) * hd;
      auto wqkv = random_q4(*ctx, rng, QKV, H), wo = random_q4(*ctx, rng, H, QD);
      auto wgu = random_q4(*ctx, rng, 2 * F, H), wd = random_q4(*ctx, rng, H, F);
      ASSERT_TRUE(wqkv.ok() && wo.ok() && wgu.ok() && wd.ok());

      // Cache: shuffled blocks of 16, random old keys and values.
      const int bs = 16;
      const int64_t n_blocks = c.pos / bs + 2;
      std::vector<int32_t> table(static_cast<size_t>(n_blocks));
      std::iota(table.begin(), table.end(), 0);
      std::shuffle(table.begin(), table.end(), rng);
      const vulkan::GpuKv kv = f16_kv_layout(bs, c.n_kv_heads, hd);
      const std::vector<uint16_t> k0 = random_f16(rng, size_t(n_blocks * kv.block_stride)), v0 = random_f16(rng, k0.size());
      const int half = c.rot_dim / 2;
      std::vector<float> cs(size_t(std::max(half, 1))), sn(cs.size());
      for (int j = 0; j < half; ++j) {
        const double a = double(c.pos) * std::pow(10000.0, -2.0 * j / c.rot_dim);
        cs[size_t(j)] = float(std::cos(a));
        sn[size_t(j)] = float(std::sin(a));
      }
      const uint32_t slot = uint32_t(table[size_t(c.pos / bs)] * kv.block_stride + (c.pos % bs) * hd);
      const vulkan::SeqMeta meta{0, 1, int32_t(c.pos), 0};
      auto bmeta = upload(*ctx, std::vector<vulkan::SeqMeta>{meta});
      auto btab = upload(*ctx, table), bcs = upload(*ctx, cs), bsn = upload(*ctx, sn);
      auto bslot = upload(*ctx, std::vector<uint32_t>{slot});
      auto gattn = upload(*ctx, randn(rng, size_t(H))), gmlp = upload(*ctx, randn(rng, size_t(H)));
      const std::vector<float> x0 = randn(rng, size_t(H), 2.0f);
      AttnParams ap;
      ap.n_heads = c.n_heads;
      ap.scale = 1.0f / std::sqrt(float(hd));
      ap.window = c.window;
      ap.q_stride = QKV;
      ap.out_stride = QD;

      struct Out {
        std::vector<float> x, attn;
        std::vector<uint16_t> k, v;
      };
      auto run = [&](bool persistent) -> Out {
        auto bx = upload(*ctx, x0);
        auto bk = upload(*ctx, k0), bv = upload(*ctx, v0);
        auto bqkv = vulkan::Buffer::create(*ctx, QKV * 4, vulkan::MemoryKind::device);
        auto batt = vulkan::Buffer::create(*ctx, QD * 4, vulkan::MemoryKind::device);
        auto bgu = vulkan::Buffer::create(*ctx, 2 * F * 4, vulkan::MemoryKind::device);
        auto bsync = upload(*ctx, std::vector<uint32_t>(2, 0u));
        auto bscr = vulkan::Buffer::create(*ctx, 1 << 20, vulkan::MemoryKind::device);
        EXPECT_TRUE(bqkv.ok() && batt.ok() && bgu.ok() && bscr.ok());
        vulkan::GpuKv gkv = kv;
        gkv.k = bk.whole();
        gkv.v = bv.whole();
        auto cl = vulkan::CommandList::create(*ctx);
        EXPECT_TRUE(cl.ok());
        EXPECT_TRUE((*cl)->begin().ok());
        Status st;
        if (persistent) {
          vulkan::ops::DecodeLayer d;
          d.qkv = &wqkv->gpu.w;
          d.o = &wo->gpu.w;
          d.gate_up = &wgu->gpu.w;
          d.down = &wd->gpu.w;
          d.attn_norm = gattn.whole();
          d.mlp_norm = gmlp.whole();
          d.x = bx.whole();
          d.qkv_out = bqkv->whole();
          d.attn = batt->whole();
          d.gu = bgu->whole();
          d.kv = gkv;
          d.cos = bcs.whole();
          d.sin = bsn.whole();
          d.slots = bslot.whole();
          d.meta = bmeta.whole();
          d.tables = btab.whole();
          d.sync = bsync.whole();
          d.n_heads = c.n_heads;
          d.rot_dim = c.rot_dim;
          d.p = ap;
          d.eps = 1e-5f;
          st = vulkan::ops::decode_layer(**cl, d);
        } else {
          vulkan::GpuSeqs seqs;
          seqs.meta = bmeta.whole();
          seqs.tables = btab.whole();
          seqs.n_seqs = 1;
          seqs.max_n_q = 1;
          seqs.max_kv_len = c.pos + 1;
          seqs.split_len = 512;
          const auto f = Precision::fast;
          st = vulkan::ops::matmul(**cl, bqkv->whole(), QKV, bx.whole(), H, 1, wqkv->gpu.w, f, {},
                                   {.norm = gattn.whole(), .eps = 1e-5f});
          if (st.ok())
            st = vulkan::ops::rope_store(**cl, bqkv->whole(), 1, QKV, c.n_heads, c.rot_dim, bcs.whole(), bsn.whole(),
                                         bslot.whole(), gkv);
          if (st.ok()) st = vulkan::ops::attention(**cl, batt->whole(), bqkv->whole(), seqs, gkv, ap, bscr->whole());
          if (st.ok())
            st = vulkan::ops::matmul(**cl, bx.whole(), H, batt->whole(), QD, 1, wo->gpu.w, f, {}, {.accumulate = true});
          if (st.ok())  // silu(gate) * up, F values
            st = vulkan::ops::matmul(**cl, bgu->whole(), F, bx.whole(), H, 1, wgu->gpu.w, f, {},
                                     {.norm = gmlp.whole(), .eps = 1e-5f, .silu_pairs = true});
          if (st.ok())
            st = vulkan::ops::matmul(**cl, bx.whole(), H, bgu->whole(), F, 1, wd->gpu.w, f, {}, {.accumulate = true});
        }
        EXPECT_TRUE(st.ok()) << st.error();
        EXPECT_TRUE((*cl)->end().ok());
        EXPECT_TRUE((*cl)->submit_and_wait().ok());
        return {download<float>(*ctx, bx, size_t(H)), download<float>(*ctx, *batt, size_t(QD)),
                download<uint16_t>(*ctx, bk, k0.size()), download<uint16_t>(*ctx, bv, v0.size())};
      };
      {
        vulkan::ops::DecodeLayer probe;
        probe.qkv = &wqkv->gpu.w;
        probe.o = &wo->gpu.w;
        probe.gate_up = &wgu->gpu.w;
        probe.down = &wd->gpu.w;
        probe.kv = kv;
        probe.n_heads = c.n_heads;
        probe.rot_dim = c.rot_dim;
        if (!vulkan::ops::decode_layer_unsupported(*ctx, probe).empty()) continue;
      }
      ++ran;
      const Out want = run(false), got = run(true);
      // The same arithmetic up to the order of some sums (sum x^2, a row's lanes, the value rows):
      // a few ulp, except where that flips the int8 rounding of one of x's values (one step of
      // d = max|x| / 127 in one product term).
      EXPECT_CLOSE(got.attn.data(), want.attn.data(), size_t(QD), 1e-9, 1e-4);
      EXPECT_CLOSE(got.x.data(), want.x.data(), size_t(H), 1e-6, 2e-2);
      // The cache: old entries untouched, the new k and v equal up to one f16 step.
      for (size_t i = 0; i < k0.size(); ++i) {
        for (int kvv = 0; kvv < 2; ++kvv) {
          const uint16_t a = (kvv ? got.v : got.k)[i], b = (kvv ? want.v : want.k)[i];
          if (a != b) {
            ASSERT_LE(std::fabs(f16_to_f32(a) - f16_to_f32(b)), 2e-3f * std::max(1.0f, std::fabs(f16_to_f32(b))))
                << (kvv ? "V" : "K") << " element " << i;
          }
        }
      }
    }
  if (!ran) GTEST_SKIP() << "no device runs the persistent decode layer (NVIDIA)";
}

// Batched decode's RoPE + KV store inside the decode attention (attn_dec4 with ROPE) against
// rope_store followed by the attention: sequences of one query each at awkward positions (the
// first token, split boundaries with 128-key splits, a window), GQA and partial rotary.
TEST(VulkanRuntime, AttentionRopeFusionMatchesRopeStore) {
  struct Case {
    int n_heads, n_kv_heads, head_dim, rot_dim;
    int64_t window;
  };
  const Case cases[] = {{6, 2, 32, 24, 0}, {4, 4, 96, 96, 0}, {6, 3, 64, 48, 100}};
  const std::vector<int64_t> positions = {0, 7, 127, 128, 300, 45};
  auto ctxs = contexts();
  if (ctxs.empty()) GTEST_SKIP() << "no Vulkan device (or no loader)";
  for (auto& ctx : ctxs)
    for (const Case& c : cases) {
      SCOPED_TRACE(ctx->info().name + " head_dim " + std::to_string(c.head_dim));
      std::mt19937 rng{uint32_t(c.head_dim + c.rot_dim)};
      const int64_t hd = c.head_dim, QD = c.n_heads * hd, QKV = (c.n_heads + 2 * c.n_kv_heads) * hd;
      const int64_t n = int64_t(positions.size());
      const int bs = 16, half = c.rot_dim / 2;
      const vulkan::GpuKv kv = f16_kv_layout(bs, c.n_kv_heads, hd);
      ASSERT_TRUE(vulkan::ops::attention_fuses_rope(kv, c.rot_dim));
      // Each sequence's blocks: its own, shuffled over the pool.
      std::vector<int64_t> nblk;
      int64_t n_blocks = 0;
      for (int64_t p : positions) n_blocks += nblk.emplace_back(p / bs + 1);
      std::vector<int32_t> pool(static_cast<size_t>(n_blocks));
      std::iota(pool.begin(), pool.end(), 0);
      std::shuffle(pool.begin(), pool.end(), rng);
      std::vector<vulkan::SeqMeta> meta;
      std::vector<uint32_t> slots;
      std::vector<float> cs(size_t(n * std::max(half, 1))), sn(cs.size());
      int32_t off = 0;
      for (int64_t t = 0; t < n; ++t) {
        const int64_t p = positions[size_t(t)];
        meta.push_back({int32_t(t), 1, int32_t(p), off});
        slots.push_back(uint32_t(pool[size_t(off + p / bs)] * kv.block_stride + (p % bs) * hd));
        for (int j = 0; j < half; ++j) {
          const double a = double(p) * std::pow(10000.0, -2.0 * j / c.rot_dim);
          cs[size_t(t * half + j)] = float(std::cos(a));
          sn[size_t(t * half + j)] = float(std::sin(a));
        }
        off += int32_t(nblk[size_t(t)]);
      }
      const std::vector<uint16_t> k0 = random_f16(rng, size_t(n_blocks * kv.block_stride)), v0 = random_f16(rng, k0.size());
      const std::vector<float> qkv0 = randn(rng, size_t(n * QKV));
      auto bmeta = upload(*ctx, meta), btab = upload(*ctx, pool), bslot = upload(*ctx, slots);
      auto bcs = upload(*ctx, cs), bsn = upload(*ctx, sn);
      AttnParams ap;
      ap.n_heads = c.n_heads;
      ap.scale = 1.0f / std::sqrt(float(hd));
      ap.window = c.window;
      ap.q_stride = QKV;
      ap.out_stride = QD;
      vulkan::GpuSeqs seqs;
      seqs.meta = bmeta.whole();
      seqs.tables = btab.whole();
      seqs.n_seqs = int(n);
      seqs.max_n_q = 1;
      seqs.max_kv_len = 301;
      seqs.split_len = 128;  // three splits for position 300

      struct Out {
        std::vector<float> attn;
        std::vector<uint16_t> k, v;
      };
      auto run = [&](bool fused) -> Out {
        auto bqkv = upload(*ctx, qkv0), bk = upload(*ctx, k0), bv = upload(*ctx, v0);
        auto batt = vulkan::Buffer::create(*ctx, uint64_t(n * QD) * 4, vulkan::MemoryKind::device);
        auto bscr = vulkan::Buffer::create(*ctx, 1 << 20, vulkan::MemoryKind::device);
        EXPECT_TRUE(batt.ok() && bscr.ok());
        vulkan::GpuKv gkv = kv;
        gkv.k = bk.whole();
        gkv.v = bv.whole();
        vulkan::RopeStoreFusion rs{bcs.whole(), bsn.whole(), bslot.whole(), gkv, c.n_heads, c.rot_dim};
        auto cl = vulkan::CommandList::create(*ctx);
        EXPECT_TRUE(cl.ok());
        EXPECT_TRUE((*cl)->begin().ok());
        Status st;
        if (fused) {
          st = vulkan::ops::attention(**cl, batt->whole(), bqkv.whole(), seqs, gkv, ap, bscr->whole(), &rs);
        } else {
          st = vulkan::ops::rope_store(**cl, bqkv.whole(), n, QKV, c.n_heads, c.rot_dim, bcs.whole(), bsn.whole(),
                                       bslot.whole(), gkv);
          if (st.ok()) st = vulkan::ops::attention(**cl, batt->whole(), bqkv.whole(), seqs, gkv, ap, bscr->whole());
        }
        EXPECT_TRUE(st.ok()) << st.error();
        EXPECT_TRUE((*cl)->end().ok());
        EXPECT_TRUE((*cl)->submit_and_wait().ok());
        return {download<float>(*ctx, *batt, size_t(n * QD)), download<uint16_t>(*ctx, bk, k0.size()),
                download<uint16_t>(*ctx, bv, v0.size())};
      };
      const Out want = run(false), got = run(true);
      // The same arithmetic in the same order; the compiler may contract RoPE's products into
      // FMAs differently in the two shaders (an ulp of the rotated q and k; see forward_vulkan.cpp).
      EXPECT_CLOSE(got.attn.data(), want.attn.data(), size_t(n * QD), 1e-10, 1e-5);
      size_t changed = 0;
      for (size_t i = 0; i < k0.size(); ++i)
        for (int kvv = 0; kvv < 2; ++kvv) {
          const uint16_t a = (kvv ? got.v : got.k)[i], b = (kvv ? want.v : want.k)[i];
          changed += a != (kvv ? v0 : k0)[i];
          if (a != b) {  // one f16 step at most (the rounding of an ulp-different f32)
            ASSERT_LE(std::fabs(f16_to_f32(a) - f16_to_f32(b)), 1e-3f * std::max(1.0f, std::fabs(f16_to_f32(b))))
                << (kvv ? "V" : "K") << " element " << i;
          }
        }
      // Every token's k and v rows were written (a random old value may equal the new one).
      EXPECT_GE(changed, size_t(0.99 * double(2 * n * c.n_kv_heads * hd)));
    }
}

TEST(VulkanRuntime, RmsnormBf16Output) {
  auto ctxs = contexts();
  if (ctxs.empty()) GTEST_SKIP() << "no Vulkan device";
  for (auto& ctx : ctxs)
    for (int64_t dim : {2, 96, 3072}) {
      SCOPED_TRACE(ctx->info().name + " dim " + std::to_string(dim));
      const int64_t rows = 5;
      std::mt19937 rng{uint32_t(dim)};
      auto bx = upload(*ctx, randn(rng, size_t(rows * dim), 3.0f));
      auto bw = upload(*ctx, randn(rng, size_t(dim)));
      auto by = vulkan::Buffer::create(*ctx, rows * dim * 4, vulkan::MemoryKind::device);
      auto bh = vulkan::Buffer::create(*ctx, rows * dim * 2, vulkan::MemoryKind::device);
      ASSERT_TRUE(by.ok() && bh.ok());
      auto cl = vulkan::CommandList::create(*ctx);
      ASSERT_TRUE(cl.ok());
      ASSERT_TRUE((*cl)->begin().ok());
      ASSERT_TRUE(vulkan::ops::rmsnorm(**cl, by->whole(), bx.whole(), bw.whole(), rows, dim, 1e-5f).ok());
      ASSERT_TRUE(vulkan::ops::rmsnorm(**cl, bh->whole(), bx.whole(), bw.whole(), rows, dim, 1e-5f, true).ok());
      EXPECT_FALSE(vulkan::ops::rmsnorm(**cl, bx.whole(), bx.whole(), bw.whole(), rows, dim, 1e-5f, true).ok());
      EXPECT_FALSE(vulkan::ops::rmsnorm(**cl, bh->whole(), bx.whole(), bw.whole(), rows, dim - 1, 1e-5f, true).ok());
      ASSERT_TRUE((*cl)->end().ok());
      ASSERT_TRUE((*cl)->submit_and_wait().ok());
      const auto y = download<float>(*ctx, *by, size_t(rows * dim));
      const auto h = download<uint16_t>(*ctx, *bh, size_t(rows * dim));
      int64_t differ = 0;
      for (size_t i = 0; i < y.size(); ++i) differ += h[i] != f32_to_bf16(y[i]);
      EXPECT_EQ(differ, 0);
    }
}

// The same chain with bf16 activations between the projections (batched decode's o_proj ->
// gate_up -> down): the producer also writes bf16(y * g) for the next norm, gate_up reads it and
// writes silu(gate) * up as bf16, down reads that. Checked against the separate f32 ops, at token
// counts of the decode tiles (16, 32, 64 tokens) and of prefill's 128 x 128 (the model runs this
// chain, norm fusion included, only in batched decode; the ops take any token count).
TEST(VulkanRuntime, CoopBf16ActivationsMatchSeparateOps) {
  auto ctxs = contexts();
  int ran = 0;
  for (auto& ctx : ctxs)
    for (int64_t n : {5, 20, 33, 130}) {
      SCOPED_TRACE(ctx->info().name + " n " + std::to_string(n));
      const int64_t hidden = 384, inner = 256, ffn = 192;
      std::mt19937 rng{uint32_t(100 + n)};
      auto r1 = random_q4(*ctx, rng, hidden, inner), r2 = random_q4(*ctx, rng, 2 * ffn, hidden);
      auto r3 = random_q4(*ctx, rng, hidden, ffn);
      ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());
      const vulkan::GpuWeight &g1 = r1->gpu.w, &g2 = r2->gpu.w, &g3 = r3->gpu.w;
      if (std::string(vulkan::ops::matmul_kernel(*ctx, inner, n, g1, Precision::fast)) != "mmq4_coop" ||
          std::string(vulkan::ops::matmul_kernel(*ctx, hidden, n, g2, Precision::fast)) != "mmq4_coop" ||
          std::string(vulkan::ops::matmul_kernel(*ctx, ffn, n, g3, Precision::fast)) != "mmq4_coop")
        continue;
      ++ran;
      const std::vector<float> a = randn(rng, size_t(n * inner)), g = randn(rng, size_t(hidden));
      const std::vector<float> g_next = randn(rng, size_t(hidden));
      auto ba = upload(*ctx, a);
      auto bg = upload(*ctx, g);
      auto bgn = upload(*ctx, g_next);
      const std::vector<float> x0 = randn(rng, size_t(n * hidden), 4.0f);
      auto bxn = vulkan::Buffer::create(*ctx, n * hidden * 4, vulkan::MemoryKind::device);
      auto bgu = vulkan::Buffer::create(*ctx, n * 2 * ffn * 4, vulkan::MemoryKind::device);
      auto bh = vulkan::Buffer::create(*ctx, n * ffn * 4, vulkan::MemoryKind::device);
      auto bssq = vulkan::Buffer::create(*ctx, n * vulkan::ops::coop_ssq_row(hidden) * 4, vulkan::MemoryKind::device);
      auto bxg = vulkan::Buffer::create(*ctx, n * hidden * 2, vulkan::MemoryKind::device);
      auto bxg2 = vulkan::Buffer::create(*ctx, n * hidden * 2, vulkan::MemoryKind::device);
      auto bx1 = vulkan::Buffer::create(*ctx, n * hidden * 4, vulkan::MemoryKind::device);
      ASSERT_TRUE(bxn.ok() && bgu.ok() && bh.ok() && bssq.ok() && bxg.ok() && bxg2.ok() && bx1.ok());
      // x1 = x0 + a W1^T; x2 = x1 + silu_mul(rmsnorm(x1) W2^T) W3^T; returns x2 (and x1).
      auto run = [&](bool bf16, std::vector<float>* x1) {
        auto bx = upload(*ctx, x0);
        auto cl = vulkan::CommandList::create(*ctx);
        EXPECT_TRUE(cl.ok());
        EXPECT_TRUE((*cl)->begin().ok());
        Status st = Status::Ok();
        auto step = [&](Status s) {
          if (st.ok()) st = std::move(s);
        };
        if (bf16) {
          step(vulkan::ops::matmul(**cl, bx.whole(), hidden, ba.whole(), inner, n, g1, Precision::fast, {},
                                   {.accumulate = true, .ssq = bssq->whole(), .xg = bxg->whole(), .xg_norm = bg.whole()}));
          step(vulkan::ops::matmul(**cl, bh->whole(), ffn, bxg->whole(), hidden, n, g2, Precision::fast, {},
                                   {.norm = bg.whole(), .eps = 1e-5f, .silu_pairs = true, .ssq = bssq->whole(),
                                    .x_bf16 = true, .y_bf16 = true}));
          step((*cl)->copy(bx.whole(), bx1->whole()));  // x1, before down adds into x
          step(vulkan::ops::matmul(**cl, bx.whole(), hidden, bh->whole(), ffn, n, g3, Precision::fast, {},
                                   {.accumulate = true, .ssq = bssq->whole(), .x_bf16 = true, .xg = bxg2->whole(),
                                    .xg_norm = bgn.whole()}));
        } else {
          step(vulkan::ops::matmul(**cl, bx.whole(), hidden, ba.whole(), inner, n, g1, Precision::fast, {},
                                   {.accumulate = true}));
          step((*cl)->copy(bx.whole(), bx1->whole()));
          step(vulkan::ops::rmsnorm(**cl, bxn->whole(), bx.whole(), bg.whole(), n, hidden, 1e-5f));
          step(vulkan::ops::matmul(**cl, bgu->whole(), 2 * ffn, bxn->whole(), hidden, n, g2, Precision::fast));
          step(vulkan::ops::silu_mul(**cl, bh->whole(), bgu->whole(), n, ffn));
          step(vulkan::ops::matmul(**cl, bx.whole(), hidden, bh->whole(), ffn, n, g3, Precision::fast, {},
                                   {.accumulate = true}));
        }
        EXPECT_TRUE(st.ok()) << st.error();
        EXPECT_TRUE((*cl)->end().ok());
        EXPECT_TRUE((*cl)->submit_and_wait().ok());
        *x1 = download<float>(*ctx, *bx1, size_t(n * hidden));
        return download<float>(*ctx, bx, size_t(n * hidden));
      };
      std::vector<float> x1_sep, x1;
      const std::vector<float> want = run(false, &x1_sep), got = run(true, &x1);
      ASSERT_FALSE(HasFailure());
      // xg is x1 * g rounded to bf16 (to nearest even), from the same x1 bit for bit; the down
      // projection's xg the same for x2 and g_next.
      const auto xg = download<uint16_t>(*ctx, *bxg, size_t(n * hidden));
      const auto xg2 = download<uint16_t>(*ctx, *bxg2, size_t(n * hidden));
      int64_t xg_bad = 0, xg2_bad = 0;
      for (int64_t i = 0; i < n * hidden; ++i) {
        xg_bad += xg[size_t(i)] != f32_to_bf16(x1[size_t(i)] * g[size_t(i % hidden)]);
        xg2_bad += xg2[size_t(i)] != f32_to_bf16(got[size_t(i)] * g_next[size_t(i % hidden)]);
      }
      EXPECT_EQ(xg_bad, 0);
      EXPECT_EQ(xg2_bad, 0);
      // x2 - x1 (the MLP's output, up to ~100 here) carries the bf16 roundings of its two inputs
      // (2^-8 relative each at most, f16's 2^-11): NMSE ~1e-5 against the f32 chain (a wrong
      // element or scale: ~1), the largest error ~1% of the largest output.
      std::vector<float> d_got(got.size()), d_want(got.size());
      double big = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        d_got[i] = got[i] - x1[i], d_want[i] = want[i] - x1_sep[i];
        big = std::max(big, std::fabs(double(d_want[i])));
      }
      EXPECT_CLOSE(d_got.data(), d_want.data(), d_got.size(), 1e-4, 0.02 * big);
      const Err e = compare(d_got.data(), d_want.data(), d_got.size());
      std::printf("  n %lld: MLP output (|max| %.3g) vs f32 chain: NMSE %.2e, max abs %.3g\n", (long long)n, big,
                  e.nmse, e.max_abs);
    }
  if (!ran) GTEST_SKIP() << "no device with the q4 tensor-core matmul";
}

// rmsnorm -> matmul -> add chained through shared buffers, recorded once and submitted twice with
// new inputs: the automatic barriers order the dependent dispatches, replay reuses everything.
TEST(VulkanRuntime, RecordedChainReplays) {
  auto ctxs = contexts(true);
  if (ctxs.empty()) GTEST_SKIP() << "no Vulkan device";
  for (auto& ctx : ctxs) {
    SCOPED_TRACE(ctx->info().name);
    const int64_t dim = 256, n = 2;
    std::mt19937 rng(3);
    auto rw = random_q4(*ctx, rng, dim, dim);
    ASSERT_TRUE(rw.ok()) << rw.error();
    const vulkan::GpuWeight& gw = rw->gpu.w;
    auto norm_w = randn(rng, size_t(dim));
    auto bnw = upload(*ctx, norm_w);
    auto bx = vulkan::Buffer::create(*ctx, n * dim * 4, vulkan::MemoryKind::upload);     // written by the host
    auto bh = vulkan::Buffer::create(*ctx, 2 * n * dim * 4, vulkan::MemoryKind::device);  // scratch: h | y
    auto bout = vulkan::Buffer::create(*ctx, n * dim * 4, vulkan::MemoryKind::readback);
    ASSERT_TRUE(bx.ok() && bh.ok() && bout.ok());
    vulkan::BufferSlice h = bh->slice(0, n * dim * 4), y = bh->slice(n * dim * 4, n * dim * 4);
    // out = matmul(rmsnorm(x)) + x
    auto record = [&](vulkan::CommandList& c) {
      return c.begin().ok() && vulkan::ops::rmsnorm(c, h, bx->whole(), bnw.whole(), n, dim, 1e-6f).ok() &&
             vulkan::ops::matmul(c, y, dim, h, dim, n, gw, Precision::exact).ok() &&
             vulkan::ops::add(c, y, bx->whole(), n * dim).ok() && c.copy(y, bout->whole()).ok() && c.end().ok();
    };
    auto cl = vulkan::CommandList::create(*ctx);
    ASSERT_TRUE(cl.ok());
    ASSERT_TRUE(record(**cl));
    EXPECT_GE((*cl)->barriers(), 2);  // rmsnorm -> matmul -> add each depend on the previous
    for (int step = 0; step < 2; ++step) {
      auto x = randn(rng, size_t(n * dim));
      std::memcpy(bx->mapped(), x.data(), x.size() * 4);
      bx->flush();
      ASSERT_TRUE((*cl)->submit_and_wait().ok());
      std::vector<float> hh(x.size()), want(x.size()), got(x.size());
      rmsnorm_ref(hh.data(), x.data(), norm_w.data(), dim, 1e-6f, 0, n);
      matmul_ref(want.data(), dim, hh.data(), dim, n, rw->q.view(), 0, dim);
      add_ref(want.data(), x.data(), 0, n * dim);
      bout->invalidate();
      std::memcpy(got.data(), bout->mapped(), got.size() * 4);
      EXPECT_CLOSE(got.data(), want.data(), got.size(), 1e-10, 1e-3);
    }
    if (ctx->info().timestamp_period_ns > 0) {
      auto prof = (*cl)->profile();
      ASSERT_TRUE(prof.ok()) << prof.error();
      ASSERT_EQ(prof->size(), 3u);
      EXPECT_EQ((*prof)[0].label.rfind("rmsnorm", 0), 0u);
      for (auto& t : *prof) EXPECT_GE(t.ms, 0.0);
      auto ms = (*cl)->gpu_ms();
      ASSERT_TRUE(ms.ok()) << ms.error();
      EXPECT_GT(*ms, 0.0);
    }
    // Without profiling: the same chain, the fence polled instead of waited on (the GPU default;
    // lavapipe blocks unless PENSIEVE_VK_SPIN_US asks), gpu_ms() from the list's two timestamps.
    setenv("PENSIEVE_VK_SPIN_US", "200000", 1);
    auto plain = vulkan::CommandList::create(*ctx, false);
    unsetenv("PENSIEVE_VK_SPIN_US");
    ASSERT_TRUE(plain.ok());
    ASSERT_TRUE(record(**plain));
    EXPECT_FALSE((*plain)->gpu_ms().ok());  // nothing submitted yet
    std::vector<float> first(size_t(n * dim)), again(first.size());
    for (std::vector<float>* out : {&first, &again}) {
      const auto t0 = std::chrono::steady_clock::now();
      ASSERT_TRUE((*plain)->submit_and_wait().ok());
      const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      bout->invalidate();
      std::memcpy(out->data(), bout->mapped(), out->size() * 4);
      if (ctx->info().timestamp_period_ns > 0) {
        auto ms = (*plain)->gpu_ms();
        ASSERT_TRUE(ms.ok()) << ms.error();
        EXPECT_GT(*ms, 0.0);
        EXPECT_LE(*ms, wall_ms);
      }
    }
    EXPECT_EQ(0, std::memcmp(first.data(), again.data(), first.size() * 4));  // the same input, replayed
  }
}

TEST(VulkanRuntime, MemoryAccountingAndPipelineCache) {
  auto ctxs = contexts();
  if (ctxs.empty()) GTEST_SKIP() << "no Vulkan device";
  auto& ctx = ctxs[0];
  uint64_t before = ctx->memory_use().device;
  {
    auto b = vulkan::Buffer::create(*ctx, 1000, vulkan::MemoryKind::device);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(ctx->memory_use().device, before + 1008);  // rounded to 16 bytes
  }
  EXPECT_EQ(ctx->memory_use().device, before);
  auto cl = vulkan::CommandList::create(*ctx);
  ASSERT_TRUE(cl.ok());
  // Build one pipeline, save the cache, and load it in a second context.
  auto bx = upload(*ctx, std::vector<float>(64, 1.0f));
  ASSERT_TRUE((*cl)->begin().ok());
  ASSERT_TRUE(vulkan::ops::add(**cl, bx.whole(), bx.whole(), 64).ok());
  ASSERT_TRUE((*cl)->end().ok());
  ASSERT_TRUE((*cl)->submit_and_wait().ok());
  EXPECT_EQ(download<float>(*ctx, bx, 64)[63], 2.0f);
  std::string path = ::testing::TempDir() + "pensieve_vk_pipeline_cache.bin";
  Status st = ctx->pipelines().save_cache(path);
  ASSERT_TRUE(st.ok()) << st.error();
  vulkan::ContextOptions o;
  o.device = "vulkan:" + std::to_string(ctx->info().index);
  o.pipeline_cache_path = path;
  auto ctx2 = vulkan::Context::create(o);
  ASSERT_TRUE(ctx2.ok()) << ctx2.error();
  std::remove(path.c_str());
}

TEST(VulkanRuntime, DeviceSelectionErrors) {
  auto devices = vulkan::Context::list_devices();
  if (!devices.ok()) GTEST_SKIP() << devices.error();
  for (const char* bad : {"cpu", "vulkan:", "vulkan:x", "vulkan:-1", "cuda"}) {
    vulkan::ContextOptions o;
    o.device = bad;
    auto c = vulkan::Context::create(o);
    EXPECT_FALSE(c.ok()) << bad;
  }
  vulkan::ContextOptions o;
  o.device = "vulkan:" + std::to_string(devices->size());
  auto c = vulkan::Context::create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("no device"), std::string::npos) << c.error();
  // "auto" never picks a CPU implementation unless allowed.
  o.device = "auto";
  auto a = vulkan::Context::create(o);
  if (a.ok()) {
    EXPECT_FALSE((*a)->info().is_cpu()) << (*a)->info().summary();
  }
  bool any_gpu = false;
  for (auto& d : *devices) any_gpu |= !d.is_cpu();
  if (!any_gpu) {
    ASSERT_FALSE(a.ok());
    EXPECT_NE(a.error().find("vulkan:N"), std::string::npos) << a.error();
    o.allow_cpu_device = true;
    EXPECT_TRUE(vulkan::Context::create(o).ok());
  }
  for (auto& d : *devices) std::printf("  %s\n", d.summary().c_str());
}

TEST(VulkanRuntime, MissingLoaderIsAnError) {
  ::setenv("PENSIEVE_VULKAN_LIBRARY", "/nonexistent/libvulkan.so.1", 1);
  auto d = vulkan::Context::list_devices();
  auto c = vulkan::Context::create();
  auto b = vulkan_ops_backends();
  ::unsetenv("PENSIEVE_VULKAN_LIBRARY");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().find("no Vulkan loader"), std::string::npos) << d.error();
  EXPECT_FALSE(c.ok());
  EXPECT_TRUE(b.empty());
}

// The bandwidth probe pensieve bench states GPU decode against: a positive figure, and a clear
// error (not a crash) when there is no room for it.
TEST(VulkanRuntime, ReadBandwidthProbe) {
  auto ctxs = contexts();
  if (ctxs.empty()) GTEST_SKIP() << "no Vulkan device";
  for (auto& ctx : ctxs) {
    SCOPED_TRACE(ctx->info().name);
    auto bw = vulkan::ops::read_bandwidth_gbs(*ctx, 16u << 20, 2);
    ASSERT_TRUE(bw.ok()) << bw.error();
    EXPECT_GT(*bw, 0.1);
    EXPECT_FALSE(vulkan::ops::read_bandwidth_gbs(*ctx, 1024, 2).ok());
  }
}

TEST(VulkanRuntime, BadShapesAreErrors) {
  auto ctxs = contexts();
  if (ctxs.empty()) GTEST_SKIP() << "no Vulkan device";
  auto& ctx = ctxs[0];
  auto buf = vulkan::Buffer::create(*ctx, 4096, vulkan::MemoryKind::device);
  ASSERT_TRUE(buf.ok());
  auto cl = vulkan::CommandList::create(*ctx);
  ASSERT_TRUE(cl.ok());
  ASSERT_TRUE((*cl)->begin().ok());
  // Slices too small for the shape, misaligned offsets, bad rope and topk arguments.
  EXPECT_FALSE(vulkan::ops::rmsnorm(**cl, buf->whole(), buf->whole(), buf->slice(0, 16), 4, 256, 1e-5f).ok());
  EXPECT_FALSE(vulkan::ops::add(**cl, buf->slice(4, 64), buf->slice(128, 64), 16).ok());
  EXPECT_FALSE(vulkan::ops::rope(**cl, buf->whole(), 1, 64, 1, 64, 65, buf->whole(), buf->whole()).ok());
  EXPECT_FALSE(vulkan::ops::topk(**cl, buf->whole(), buf->whole(), buf->whole(), 1, 100, 0, buf->whole()).ok());
  // bf16 activations: only the tensor-core q4 matmul takes them (a one-token step never does), and
  // only with the layouts it reads (x rows a multiple of 8 values; xg from a norm-fusion producer).
  std::mt19937 rng{5};
  auto rw = random_q4(*ctx, rng, 64, 256);
  ASSERT_TRUE(rw.ok());
  auto big = vulkan::Buffer::create(*ctx, 1 << 20, vulkan::MemoryKind::device);
  ASSERT_TRUE(big.ok());
  const vulkan::GpuWeight& w = rw->gpu.w;
  vulkan::MatmulFusion xb{.x_bf16 = true};
  EXPECT_FALSE(vulkan::ops::matmul(**cl, big->whole(), 64, big->whole(), 256, 1, w, Precision::fast, {}, xb).ok());
  for (int64_t n : {20, 33}) {
    if (std::string(vulkan::ops::matmul_kernel(*ctx, 256, n, w, Precision::fast)) != "mmq4_coop") continue;
    EXPECT_FALSE(vulkan::ops::matmul(**cl, big->whole(), 64, big->whole(), 260, n, w, Precision::fast, {}, xb).ok());
    vulkan::MatmulFusion xg{.accumulate = true, .xg = big->whole(), .xg_norm = big->whole()};  // no ssq
    EXPECT_FALSE(vulkan::ops::matmul(**cl, big->whole(), 64, big->whole(), 256, n, w, Precision::fast, {}, xg).ok());
    vulkan::MatmulFusion yb{.y_bf16 = true};  // without silu pairs
    EXPECT_FALSE(vulkan::ops::matmul(**cl, big->whole(), 64, big->whole(), 256, n, w, Precision::fast, {}, yb).ok());
    EXPECT_TRUE(vulkan::ops::matmul(**cl, big->whole(), 64, big->whole(), 256, n, w, Precision::fast, {}, xb).ok());
  }
  ASSERT_TRUE((*cl)->end().ok());
}

}  // namespace
}  // namespace pensieve
