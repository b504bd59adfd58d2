// Causal GQA attention over the paged KV cache, NEON, online softmax per tile of 4 keys.
// The algorithm of attention_avx512.cpp with 4 lanes: keys in tiles of 4 at absolute positions,
// converted once per tile into zero-padded f32 rows (so head_dim need not be a multiple of 4),
// then for every (query, head) pair with a visible key in the tile:
//   s_j = scale · (q · k_j),  m' = max(m, max_j s_j),  p_j = e^(s_j − m'),  c = e^(m − m'),
//   l = l·c + Σ_j p_j,  acc = acc·c + Σ_j p_j · v_j   (visible j only, in key order)
// and out = acc / l. A pair's sequence of operations depends only on its own position, so a
// query gives the same bits alone or in any chunk.
#include "kernels/arm/arm.h"
#include "kernels/arm/simd_neon.h"
#include "kernels/ref/ref.h"

namespace pensieve {
namespace {

constexpr int kTile = 4;    // keys per tile (one vector of scores)
constexpr int kPairs = 16;  // (query, head) pairs sharing one pass over the keys

template <DType KV>
inline void load_row(float* dst, const void* base, int64_t off, int hd, int hd_pad) {
  const int hv = hd / 4 * 4;
  for (int d = 0; d < hv; d += 4) {
    if constexpr (KV == DType::f16) vst1q_f32(dst + d, load4_f16(static_cast<const uint16_t*>(base) + off + d));
    else vst1q_f32(dst + d, vld1q_f32(static_cast<const float*>(base) + off + d));
  }
  if (hv < hd) {
    load_f32_ref(dst - off, base, KV, off + hv, off + hd);  // dst[d] = base[off + d] for d in [hv, hd)
    for (int d = hd; d < hd_pad; ++d) dst[d] = 0;
  }
}

template <DType KV>
void attention_impl(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh,
                    int64_t i0, int64_t i1) {
  const int hd = kv.head_dim, hd_pad = (hd + 3) / 4 * 4, nv = hd_pad / 4;
  const int group = p.n_heads / kv.n_kv_heads;
  alignas(16) float kbuf[kTile][kMaxHeadDim], vbuf[kTile][kMaxHeadDim];
  alignas(16) float acc[kPairs][kMaxHeadDim], qbuf[kPairs][kMaxHeadDim];
  alignas(16) float scores[kTile], pj[kTile];
  float m_run[kPairs], l_run[kPairs];
  int64_t lo[kPairs], hi[kPairs];
  float* op[kPairs];
  const int64_t n_pairs = (i1 - i0) * group;
  for (int64_t pt = 0; pt < n_pairs; pt += kPairs) {
    const int np = int(imin(kPairs, n_pairs - pt));
    int64_t lo_min = INT64_MAX, hi_max = -1;
    for (int k = 0; k < np; ++k) {
      const int64_t i = i0 + (pt + k) / group;
      const int h = kh * group + int((pt + k) % group);
      const int64_t pos = seq.pos0 + i;
      hi[k] = pos;
      lo[k] = p.window > 0 && pos - p.window + 1 > 0 ? pos - p.window + 1 : 0;
      lo_min = imin(lo_min, lo[k]);
      hi_max = imax(hi_max, hi[k]);
      const float* qk = q + (seq.q_begin + i) * p.q_stride + int64_t(h) * hd;
      for (int d = 0; d < hd_pad; ++d) qbuf[k][d] = d < hd ? qk[d] : 0.0f;
      op[k] = out + (seq.q_begin + i) * p.out_stride + int64_t(h) * hd;
      m_run[k] = -kInf;
      l_run[k] = 0;
      for (int d = 0; d < hd_pad; ++d) acc[k][d] = 0.0f;
    }
    for (int64_t j0 = lo_min / kTile * kTile; j0 <= hi_max; j0 += kTile) {
      const int64_t ja = imax(j0, lo_min), jb = imin(j0 + kTile - 1, hi_max);
      for (int64_t j = ja; j <= jb; ++j) {
        const int64_t off = int64_t(seq.block_table[j / kv.block_size]) * kv.block_stride + kh * kv.head_stride +
                            (j % kv.block_size) * hd;
        load_row<KV>(kbuf[j - j0], kv.k, off, hd, hd_pad);
        load_row<KV>(vbuf[j - j0], kv.v, off, hd, hd_pad);
      }
      for (int k = 0; k < np; ++k) {
        const int a = int(imax(ja, lo[k]) - j0), b = int(imin(jb, hi[k]) - j0);  // visible lanes [a, b]
        if (a > b) continue;
        for (int j = 0; j < kTile; ++j) scores[j] = -kInf;
        for (int j = a; j <= b; ++j) {
          float32x4_t s = vmulq_f32(vld1q_f32(qbuf[k]), vld1q_f32(kbuf[j]));
          for (int v = 1; v < nv; ++v) s = vfmaq_f32(s, vld1q_f32(qbuf[k] + v * 4), vld1q_f32(kbuf[j] + v * 4));
          scores[j] = hsum(s) * p.scale;
        }
        const float32x4_t sv = vld1q_f32(scores);
        const float m_new = fmax_(m_run[k], hmax(sv));
        const uint32x4_t vis = vmvnq_u32(vceqq_f32(sv, vdupq_n_f32(-kInf)));
        const float32x4_t pv = vreinterpretq_f32_u32(vandq_u32(vis, vreinterpretq_u32_f32(exp_ps(vsubq_f32(sv, vdupq_n_f32(m_new))))));
        const float32x4_t corr = exp_ps(vdupq_n_f32(m_run[k] - m_new));
        l_run[k] = l_run[k] * vgetq_lane_f32(corr, 0) + hsum(pv);
        m_run[k] = m_new;
        vst1q_f32(pj, pv);
        for (int v = 0; v < nv; ++v) {
          float32x4_t av = vmulq_f32(vld1q_f32(acc[k] + v * 4), corr);
          for (int j = a; j <= b; ++j) av = vfmaq_n_f32(av, vld1q_f32(vbuf[j] + v * 4), pj[j]);
          vst1q_f32(acc[k] + v * 4, av);
        }
      }
    }
    for (int k = 0; k < np; ++k) {
      const float32x4_t l = vdupq_n_f32(l_run[k]);
      alignas(16) float o[kMaxHeadDim];
      for (int v = 0; v < nv; ++v) vst1q_f32(o + v * 4, vdivq_f32(vld1q_f32(acc[k] + v * 4), l));
      for (int d = 0; d < hd; ++d) op[k][d] = o[d];
    }
  }
}

}  // namespace

// One kv head at a time (the arithmetic of a head does not depend on the others).
void attention_neon(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                    int kh1, int64_t i0, int64_t i1) {
  for (int kh = kh0; kh < kh1; ++kh) {
    if (kv.dtype == DType::f16) attention_impl<DType::f16>(out, q, seq, kv, p, kh, i0, i1);
    else attention_impl<DType::f32>(out, q, seq, kv, p, kh, i0, i1);
  }
}

}  // namespace pensieve
