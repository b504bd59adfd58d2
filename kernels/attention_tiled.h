// The attention kernel shared by the AVX2 and NEON tables (x86/attention_avx2.cpp,
// arm/attention_neon.cpp): causal GQA attention over the paged KV cache, online softmax per tile
// of W keys (W = the vector width). The online softmax of attention_avx512.cpp with narrower
// vectors, one (query, head) pair at a time: keys in tiles of W at absolute positions, converted
// once per tile into zero-padded f32 rows (so head_dim need not be a multiple of W), then for
// every pair with a visible key in the tile:
//   s_j = scale · (q · k_j),  m' = max(m, max_j s_j),  p_j = e^(s_j − m'),  c = e^(m − m'),
//   l = l·c + Σ_j p_j,  acc = acc·c + Σ_j p_j · v_j   (visible j only, in key order)
// and out = acc / l. A pair's sequence of operations depends only on its own position, so a
// query gives the same bits alone or in any chunk.
//
// The including ISA file passes its vector type (Avx2Vec, NeonVec in simd_*.h) with: W (lanes), V,
// load / store (aligned f32), loadu, load_f16 (W halves), set1, mul, fma(a, b, c) = a·b + c, sub,
// div, exp, hsum, hmax, first (lane 0) and visible(s, x) = x where s != -inf, else 0. Internal
// linkage, as everything the ISA files include (isa_helpers.h says why).
#pragma once

#include "kernels/isa_helpers.h"
#include "kernels/ref/ref.h"

namespace pensieve {
namespace {

constexpr int kAttnPairs = 16;  // (query, head) pairs sharing one pass over the keys

template <class Vec, DType KV>
inline void attn_load_row(float* dst, const void* base, int64_t off, int hd, int hd_pad) {
  const int hv = hd / Vec::W * Vec::W;
  for (int d = 0; d < hv; d += Vec::W) {
    if constexpr (KV == DType::f16) Vec::store(dst + d, Vec::load_f16(static_cast<const uint16_t*>(base) + off + d));
    else Vec::store(dst + d, Vec::loadu(static_cast<const float*>(base) + off + d));
  }
  if (hv < hd) {
    load_f32_ref(dst - off, base, KV, off + hv, off + hd);  // dst[d] = base[off + d] for d in [hv, hd)
    for (int d = hd; d < hd_pad; ++d) dst[d] = 0;
  }
}

template <class Vec, DType KV>
void attention_tiled_head(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p,
                          int kh, int64_t i0, int64_t i1) {
  using V = typename Vec::V;
  constexpr int W = Vec::W, kTile = W;  // keys per tile: one vector of scores
  const int hd = kv.head_dim, hd_pad = (hd + W - 1) / W * W, nv = hd_pad / W;
  const int group = p.n_heads / kv.n_kv_heads;
  alignas(64) float kbuf[kTile][kMaxHeadDim], vbuf[kTile][kMaxHeadDim];
  alignas(64) float acc[kAttnPairs][kMaxHeadDim], qbuf[kAttnPairs][kMaxHeadDim];
  alignas(64) float scores[kTile], pj[kTile];
  float m_run[kAttnPairs], l_run[kAttnPairs];
  int64_t lo[kAttnPairs], hi[kAttnPairs];
  float* op[kAttnPairs];
  const int64_t n_pairs = (i1 - i0) * group;
  for (int64_t pt = 0; pt < n_pairs; pt += kAttnPairs) {
    const int np = int(imin(kAttnPairs, n_pairs - pt));
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
        attn_load_row<Vec, KV>(kbuf[j - j0], kv.k, off, hd, hd_pad);
        attn_load_row<Vec, KV>(vbuf[j - j0], kv.v, off, hd, hd_pad);
      }
      for (int k = 0; k < np; ++k) {
        const int a = int(imax(ja, lo[k]) - j0), b = int(imin(jb, hi[k]) - j0);  // visible lanes [a, b]
        if (a > b) continue;
        for (int j = 0; j < kTile; ++j) scores[j] = -kInf;
        for (int j = a; j <= b; ++j) {
          V s = Vec::mul(Vec::load(qbuf[k]), Vec::load(kbuf[j]));
          for (int v = 1; v < nv; ++v) s = Vec::fma(Vec::load(qbuf[k] + v * W), Vec::load(kbuf[j] + v * W), s);
          scores[j] = Vec::hsum(s) * p.scale;
        }
        const V sv = Vec::load(scores);
        const float m_new = fmax_(m_run[k], Vec::hmax(sv));
        const V pv = Vec::visible(sv, Vec::exp(Vec::sub(sv, Vec::set1(m_new))));
        const V corr = Vec::exp(Vec::set1(m_run[k] - m_new));
        l_run[k] = l_run[k] * Vec::first(corr) + Vec::hsum(pv);
        m_run[k] = m_new;
        Vec::store(pj, pv);
        for (int v = 0; v < nv; ++v) {
          V av = Vec::mul(Vec::load(acc[k] + v * W), corr);
          for (int j = a; j <= b; ++j) av = Vec::fma(Vec::set1(pj[j]), Vec::load(vbuf[j] + v * W), av);
          Vec::store(acc[k] + v * W, av);
        }
      }
    }
    for (int k = 0; k < np; ++k) {
      const V l = Vec::set1(l_run[k]);
      alignas(64) float o[kMaxHeadDim];
      for (int v = 0; v < nv; ++v) Vec::store(o + v * W, Vec::div(Vec::load(acc[k] + v * W), l));
      for (int d = 0; d < hd; ++d) op[k][d] = o[d];
    }
  }
}

// One kv head at a time (the arithmetic of a head does not depend on the others).
template <class Vec>
void attention_tiled(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                     int kh1, int64_t i0, int64_t i1) {
  for (int kh = kh0; kh < kh1; ++kh) {
    if (kv.dtype == DType::f16) attention_tiled_head<Vec, DType::f16>(out, q, seq, kv, p, kh, i0, i1);
    else attention_tiled_head<Vec, DType::f32>(out, q, seq, kv, p, kh, i0, i1);
  }
}

}  // namespace
}  // namespace pensieve
