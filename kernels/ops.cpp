#include "kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "quant/quantize.h"

namespace pensieve {

ActQ8 KernelContext::act_scratch(int64_t n, int64_t cols) {
  int64_t blocks = n * (cols / kActBlock);
  size_t q_bytes = size_t(n * cols + 63) / 64 * 64;
  size_t need = q_bytes + size_t(blocks) * 2 * sizeof(float);
  if (act_.size() < need) act_ = Buffer(need);
  ActQ8 a;
  a.q = act_.as<int8_t>();
  a.d = reinterpret_cast<float*>(act_.as<uint8_t>() + q_bytes);
  a.sum = a.d + blocks;
  a.n = n;
  a.cols = cols;
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
  if (p == Precision::fast && w.quantized() && w.cols % kActBlock == 0) {
    ActQ8 a = c.act_scratch(n, w.cols);
    c.pool().parallel_for(n, 1, [&](int64_t t0, int64_t t1) { k.quantize_act(a, x, ldx, t0, t1); });
    c.pool().parallel_for(w.rows, row_grain(w.rows, c.pool().size()),
                          [&](int64_t r0, int64_t r1) { k.matmul_act8(y, ldy, a, w, r0, r1); });
    return;
  }
  c.pool().parallel_for(w.rows, row_grain(w.rows, c.pool().size()),
                        [&](int64_t r0, int64_t r1) { k.matmul(y, ldy, x, ldx, n, w, r0, r1); });
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
  // Work items: (sequence, query head, chunk of up to kQChunk queries).
  constexpr int64_t kQChunk = 16;
  int64_t items = 0;
  for (int s = 0; s < n_seqs; ++s) items += p.n_heads * ((seqs[s].n_q + kQChunk - 1) / kQChunk);
  c.pool().parallel_for(items, 1, [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      int64_t rest = item;
      int s = 0;
      for (;; ++s) {
        int64_t here = p.n_heads * ((seqs[s].n_q + kQChunk - 1) / kQChunk);
        if (rest < here) break;
        rest -= here;
      }
      int64_t chunks = (seqs[s].n_q + kQChunk - 1) / kQChunk;
      int h = int(rest / chunks);
      int64_t i0 = (rest % chunks) * kQChunk;
      int64_t i1 = std::min(i0 + kQChunk, seqs[s].n_q);
      c.k().attention(out, q, seqs[s], kv, p, h, i0, i1);
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
