// Causal GQA attention over the paged KV cache, AVX-512, online softmax per tile of 16 keys.
//
// Work: one call covers queries [i0, i1) of a sequence for the g query heads of kv head kh,
// i.e. (query, head) pairs, taken 16 at a time. Keys run in tiles of 16 at absolute positions
// (tile k = keys 16k .. 16k+15): each tile's K and V are converted once to f32 into an L1
// buffer, then every pair of the tile with a visible key in it
//   scores  s_j = scale · (q · k_j)   (lanes: 16 dims of head_dim per vector, then a lane sum)
//   m' = max(m, max_j s_j),  p_j = e^(s_j − m'),  c = e^(m − m'),
//   l = l·c + Σ_j p_j,  acc = acc·c + Σ_j p_j · v_j   (j in key order)
// and at the end out = acc / l. A pair skips tiles where it sees no key, and invisible keys
// inside a tile do not touch its sums, so a query gives the same bits alone (decode), inside
// any prefill chunk, or next to other heads and sequences.
#include "kernels/x86/simd_avx512.h"
#include "kernels/x86/x86.h"

namespace pensieve {
namespace {

constexpr int kTile = 16;  // keys per tile (one vector of scores)
constexpr int kPairs = 16; // (query, head) pairs sharing one pass over the keys

template <DType KV>
inline void load_row(float* dst, const void* base, int64_t off, int hd) {
  for (int d = 0; d < hd; d += 16) {
    const __mmask16 m = first_lanes16(hd - d);
    __m512 v;
    if constexpr (KV == DType::f16) v = load_f16(static_cast<const uint16_t*>(base) + off + d, m);
    else v = _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + off + d);
    _mm512_store_ps(dst + d, v);
  }
}

template <DType KV>
void attention_impl(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh,
                    int64_t i0, int64_t i1) {
  const int hd = kv.head_dim, nv = (hd + 15) / 16;
  const int group = p.n_heads / kv.n_kv_heads;
  alignas(64) float kbuf[kTile][kMaxHeadDim], vbuf[kTile][kMaxHeadDim];
  alignas(64) float acc[kPairs][kMaxHeadDim];
  alignas(64) float scores[kTile];
  float m_run[kPairs], l_run[kPairs];
  int64_t lo[kPairs], hi[kPairs];
  const float* qp[kPairs];
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
      qp[k] = q + (seq.q_begin + i) * p.q_stride + int64_t(h) * hd;
      op[k] = out + (seq.q_begin + i) * p.out_stride + int64_t(h) * hd;
      m_run[k] = -kInf;
      l_run[k] = 0;
      for (int d = 0; d < nv * 16; d += 16) _mm512_store_ps(acc[k] + d, _mm512_setzero_ps());
    }
    for (int64_t j0 = lo_min / kTile * kTile; j0 <= hi_max; j0 += kTile) {
      const int64_t ja = imax(j0, lo_min), jb = imin(j0 + kTile - 1, hi_max);
      for (int64_t j = ja; j <= jb; ++j) {
        const int64_t off = int64_t(seq.block_table[j / kv.block_size]) * kv.block_stride + kh * kv.head_stride +
                            (j % kv.block_size) * hd;
        load_row<KV>(kbuf[j - j0], kv.k, off, hd);
        load_row<KV>(vbuf[j - j0], kv.v, off, hd);
      }
      for (int k = 0; k < np; ++k) {
        const int a = int(imax(ja, lo[k]) - j0), b = int(imin(jb, hi[k]) - j0);  // visible lanes [a, b]
        if (a > b) continue;
        __m512 qv[kMaxHeadDim / 16];
        for (int v = 0; v < nv; ++v) qv[v] = _mm512_maskz_loadu_ps(first_lanes16(hd - v * 16), qp[k] + v * 16);
        for (int j = a; j <= b; ++j) {
          __m512 s = _mm512_mul_ps(qv[0], _mm512_load_ps(kbuf[j]));
          for (int v = 1; v < nv; ++v) s = _mm512_fmadd_ps(qv[v], _mm512_load_ps(kbuf[j] + v * 16), s);
          scores[j] = hsum(s) * p.scale;
        }
        const __mmask16 vis = __mmask16(((1u << (b + 1)) - 1) & ~((1u << a) - 1));
        const __m512 sv = _mm512_mask_load_ps(_mm512_set1_ps(-kInf), vis, scores);
        const float m_new = fmax_(m_run[k], _mm512_reduce_max_ps(sv));
        const __m512 pv = _mm512_maskz_mov_ps(vis, exp_ps(_mm512_sub_ps(sv, _mm512_set1_ps(m_new))));
        const __m512 corr = exp_ps(_mm512_set1_ps(m_run[k] - m_new));
        l_run[k] = l_run[k] * _mm512_cvtss_f32(corr) + hsum(pv);
        m_run[k] = m_new;
        alignas(64) float pj[kTile];
        _mm512_store_ps(pj, pv);
        for (int v = 0; v < nv; ++v) {
          __m512 av = _mm512_mul_ps(_mm512_load_ps(acc[k] + v * 16), corr);
          for (int j = a; j <= b; ++j) av = _mm512_fmadd_ps(_mm512_set1_ps(pj[j]), _mm512_load_ps(vbuf[j] + v * 16), av);
          _mm512_store_ps(acc[k] + v * 16, av);
        }
      }
    }
    for (int k = 0; k < np; ++k) {
      const __m512 l = _mm512_set1_ps(l_run[k]);
      for (int d = 0; d < hd; d += 16)
        _mm512_mask_storeu_ps(op[k] + d, first_lanes16(hd - d), _mm512_div_ps(_mm512_load_ps(acc[k] + d), l));
    }
  }
}

}  // namespace

void attention_avx512(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh,
                      int64_t i0, int64_t i1) {
  if (kv.dtype == DType::f16) attention_impl<DType::f16>(out, q, seq, kv, p, kh, i0, i1);
  else attention_impl<DType::f32>(out, q, seq, kv, p, kh, i0, i1);
}

}  // namespace pensieve
