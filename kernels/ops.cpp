#include "kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "quant/quantize.h"

namespace pensieve {

// Carves 64-byte aligned pieces out of one growing buffer.
static uint8_t* grow(Buffer& buf, size_t need) {
  if (buf.size() < need) buf = Buffer(need);
  return buf.as<uint8_t>();
}
static size_t round64(size_t b) { return (b + 63) / 64 * 64; }

ActF32 KernelContext::act_f32_scratch(int64_t n, int64_t cols, int bits, int group_size) {
  size_t x_bytes = round64(size_t(n * cols) * sizeof(float));
  size_t g_bytes = size_t(n * (cols / group_size)) * sizeof(float);
  uint8_t* p = grow(act_, x_bytes + g_bytes);
  ActF32 a;
  a.x = reinterpret_cast<float*>(p);
  a.gsum = reinterpret_cast<float*>(p + x_bytes);
  a.n = n;
  a.cols = cols;
  a.bits = bits;
  a.group_size = group_size;
  return a;
}

ActQ8 KernelContext::act_q8_scratch(int64_t n, int64_t cols, int bits, int group_size) {
  size_t q_bytes = round64(size_t(n * cols));
  size_t d_bytes = round64(size_t(n * (cols / kActBlock)) * sizeof(float));
  size_t g_bytes = size_t(n * (cols / group_size)) * sizeof(float);
  uint8_t* p = grow(act_, q_bytes + d_bytes + g_bytes);
  ActQ8 a;
  a.q = reinterpret_cast<int8_t*>(p);
  a.d = reinterpret_cast<float*>(p + q_bytes);
  a.gsum = reinterpret_cast<float*>(p + q_bytes + d_bytes);
  a.n = n;
  a.cols = cols;
  a.bits = bits;
  a.group_size = group_size;
  return a;
}

namespace ops {

// Rows per parallel chunk: large enough to amortise scheduling, small enough to balance threads.
static int64_t row_grain(int64_t rows, int threads) {
  int64_t g = rows / (int64_t(threads) * 8);
  return std::clamp<int64_t>(g, 16, 256) / 16 * 16;
}

void matmul(KernelContext& c, float* y, const float* x, int64_t n, const WeightMatrix& w, Precision p,
            int64_t ldx, int64_t ldy) {
  if (ldx == 0) ldx = w.cols;
  if (ldy == 0) ldy = w.rows;
  const CpuKernels& k = c.k();
  ThreadPool& pool = c.pool();
  const int64_t grain = row_grain(w.rows, pool.size());
  if (!w.quantized()) {
    pool.parallel_for(w.rows, grain, [&](int64_t r0, int64_t r1) { k.matmul_dense(y, ldy, x, ldx, n, w, r0, r1); });
  } else if (p == Precision::fast) {
    ActQ8 a = c.act_q8_scratch(n, w.cols, w.bits(), w.group_size);
    pool.parallel_for(n, 1, [&](int64_t t0, int64_t t1) { k.quantize_act(a, x, ldx, t0, t1); });
    pool.parallel_for(w.rows, grain, [&](int64_t r0, int64_t r1) { k.matmul_act8(y, ldy, a, w, r0, r1); });
  } else {
    ActF32 a = c.act_f32_scratch(n, w.cols, w.bits(), w.group_size);
    pool.parallel_for(n, 1, [&](int64_t t0, int64_t t1) { k.prepare_act(a, x, ldx, t0, t1); });
    pool.parallel_for(w.rows, grain, [&](int64_t r0, int64_t r1) { k.matmul_q(y, ldy, a, w, r0, r1); });
  }
}

void rmsnorm(KernelContext& c, float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps) {
  c.pool().parallel_for(rows, 4, [&](int64_t r0, int64_t r1) { c.k().rmsnorm(y, x, w, dim, eps, r0, r1); });
}

void rope(KernelContext& c, float* x, int64_t n, int64_t stride, int n_heads, int head_dim, int rot_dim,
          const float* cos, const float* sin) {
  c.pool().parallel_for(n, 4, [&](int64_t t0, int64_t t1) {
    c.k().rope(x, stride, n_heads, head_dim, rot_dim, cos, sin, t0, t1);
  });
}

void attention(KernelContext& c, float* out, const float* q, const AttnSeq* seqs, int n_seqs, const KvLayer& kv,
               const AttnParams& p) {
  // Work items: (sequence, chunk of up to kQChunk queries, range of kv heads). An item runs every
  // query head of its kv heads, so their keys and values are read once and in cache order (a
  // block's rows of consecutive heads are contiguous). Heads are split only as far as needed to
  // give every thread about 4 items (items of different lengths balance out): decode of many
  // sequences runs all heads per item. A single item's head ranges are all the same size, so
  // one per thread balances as well as 4, and longer ranges read the cache in longer runs (one
  // Phi-4-mini sequence at ctx 4096: 12-15% faster per call than a head at a time, 1 thread).
  constexpr int64_t kQChunk = 16;
  auto chunks = [&](int s) { return (seqs[s].n_q + kQChunk - 1) / kQChunk; };
  int64_t q_items = 0;
  for (int s = 0; s < n_seqs; ++s) q_items += chunks(s);
  if (q_items == 0) return;
  const int64_t want = (q_items == 1 ? 1 : 4) * int64_t(c.pool().size());
  const int splits = int(std::clamp<int64_t>((want + q_items - 1) / q_items, 1, kv.n_kv_heads));
  const int heads_per = (kv.n_kv_heads + splits - 1) / splits;
  const int head_items = (kv.n_kv_heads + heads_per - 1) / heads_per;
  c.pool().parallel_for(q_items * head_items, 1, [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      int64_t rest = item / head_items;
      const int hi = int(item % head_items);
      int s = 0;
      for (; rest >= chunks(s); ++s) rest -= chunks(s);
      const int64_t i0 = rest * kQChunk, i1 = std::min(i0 + kQChunk, seqs[s].n_q);
      const int kh0 = hi * heads_per, kh1 = std::min(kv.n_kv_heads, kh0 + heads_per);
      c.k().attention(out, q, seqs[s], kv, p, kh0, kh1, i0, i1);
    }
  });
}

void silu_mul(KernelContext& c, float* out, const float* gu, int64_t n, int64_t ffn) {
  c.pool().parallel_for(n, 1, [&](int64_t t0, int64_t t1) { c.k().silu_mul(out, gu, ffn, t0, t1); });
}

void add(KernelContext& c, float* y, const float* x, int64_t n) {
  c.pool().parallel_for(n, 16384, [&](int64_t i0, int64_t i1) { c.k().add(y, x, i0, i1); });
}

void embed(KernelContext& c, float* out, const int32_t* ids, int64_t n, const WeightMatrix& table) {
  c.pool().parallel_for(n, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) dequantize_row(table, ids[t], out + t * table.cols);
  });
}

int64_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

void softmax(float* x, int64_t n) {
  float m = x[argmax(x, n)];
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace ops
}  // namespace pensieve
