// Causal grouped-query attention over the paged KV cache, online softmax, f32 accumulation.
// For query i of the sequence (position p = pos0 + i) and each query head h of the kv heads
// kh in [kh0, kh1) (h = kh·g .. kh·g + g − 1, g = n_heads / n_kv_heads):
//   s_j = scale · q·k_j  for visible j (0 <= j <= p, and j > p − window when window > 0)
//   out = Σ_j e^{s_j − m} v_j / Σ_j e^{s_j − m}     (m = running max, updated key by key)
#include <cmath>

#include "kernels/ref/ref.h"

namespace pensieve {

void attention_ref(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                   int kh1, int64_t i0, int64_t i1) {
  const int hd = kv.head_dim;
  const int group = p.n_heads / kv.n_kv_heads;
  float acc[kMaxHeadDim];  // head_dim <= kMaxHeadDim is checked by the model config
  for (int h = kh0 * group; h < kh1 * group; ++h) {
    const int kh = h / group;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t pos = seq.pos0 + i;
      const float* qi = q + (seq.q_begin + i) * p.q_stride + int64_t(h) * hd;
      int64_t lo = p.window > 0 && pos - p.window + 1 > 0 ? pos - p.window + 1 : 0;
      float m = -INFINITY, l = 0;
      for (int d = 0; d < hd; ++d) acc[d] = 0;
      for (int64_t j = lo; j <= pos; ++j) {
        int64_t off = int64_t(seq.block_table[j / kv.block_size]) * kv.block_stride + kh * kv.head_stride +
                      (j % kv.block_size) * hd;
        float s = 0;
        for (int d = 0; d < hd; ++d) s += qi[d] * load_as_f32(kv.k, kv.dtype, off + d);
        s *= p.scale;
        float m_new = std::fmax(m, s);
        float corr = std::exp(m - m_new);
        float e = std::exp(s - m_new);
        l = l * corr + e;
        for (int d = 0; d < hd; ++d) acc[d] = acc[d] * corr + e * load_as_f32(kv.v, kv.dtype, off + d);
        m = m_new;
      }
      float* o = out + (seq.q_begin + i) * p.out_stride + int64_t(h) * hd;
      for (int d = 0; d < hd; ++d) o[d] = acc[d] / l;
    }
  }
}

}  // namespace pensieve
