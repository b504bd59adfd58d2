// Causal GQA attention over the paged KV cache, AVX2, online softmax per tile of 8 keys.
// The algorithm of attention_avx512.cpp with 8 lanes: keys in tiles of 8 at absolute positions,
// converted once per tile into zero-padded f32 rows (so head_dim need not be a multiple of 8),
// then for every (query, head) pair with a visible key in the tile:
//   s_j = scale · (q · k_j),  m' = max(m, max_j s_j),  p_j = e^(s_j − m'),  c = e^(m − m'),
//   l = l·c + Σ_j p_j,  acc = acc·c + Σ_j p_j · v_j   (visible j only, in key order)
// and out = acc / l. A pair's sequence of operations depends only on its own position, so a
// query gives the same bits alone or in any chunk.
#include "kernels/ref/ref.h"
#include "kernels/x86/simd_avx2.h"
#include "kernels/x86/x86.h"

namespace pensieve {
namespace {

constexpr int kTile = 8;    // keys per tile (one vector of scores)
constexpr int kPairs = 16;  // (query, head) pairs sharing one pass over the keys

template <DType KV>
inline void load_row(float* dst, const void* base, int64_t off, int hd, int hd_pad) {
  const int hv = hd / 8 * 8;
  for (int d = 0; d < hv; d += 8) {
    if constexpr (KV == DType::f16) _mm256_store_ps(dst + d, load8_f16(static_cast<const uint16_t*>(base) + off + d));
    else _mm256_store_ps(dst + d, _mm256_loadu_ps(static_cast<const float*>(base) + off + d));
  }
  if (hv < hd) {
    load_f32_ref(dst - off, base, KV, off + hv, off + hd);  // dst[d] = base[off + d] for d in [hv, hd)
    for (int d = hd; d < hd_pad; ++d) dst[d] = 0;
  }
}

template <DType KV>
void attention_impl(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh,
                    int64_t i0, int64_t i1) {
  const int hd = kv.head_dim, hd_pad = (hd + 7) / 8 * 8, nv = hd_pad / 8;
  const int group = p.n_heads / kv.n_kv_heads;
  alignas(32) float kbuf[kTile][kMaxHeadDim], vbuf[kTile][kMaxHeadDim];
  alignas(32) float acc[kPairs][kMaxHeadDim], qbuf[kPairs][kMaxHeadDim];
  alignas(32) float scores[kTile], pj[kTile];
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
          __m256 s = _mm256_mul_ps(_mm256_load_ps(qbuf[k]), _mm256_load_ps(kbuf[j]));
          for (int v = 1; v < nv; ++v) s = _mm256_fmadd_ps(_mm256_load_ps(qbuf[k] + v * 8), _mm256_load_ps(kbuf[j] + v * 8), s);
          scores[j] = hsum(s) * p.scale;
        }
        const __m256 sv = _mm256_load_ps(scores);
        const float m_new = fmax_(m_run[k], hmax(sv));
        const __m256 vis = _mm256_cmp_ps(sv, _mm256_set1_ps(-kInf), _CMP_NEQ_OQ);
        const __m256 pv = _mm256_and_ps(vis, exp_ps(_mm256_sub_ps(sv, _mm256_set1_ps(m_new))));
        const __m256 corr = exp_ps(_mm256_set1_ps(m_run[k] - m_new));
        l_run[k] = l_run[k] * _mm256_cvtss_f32(corr) + hsum(pv);
        m_run[k] = m_new;
        _mm256_store_ps(pj, pv);
        for (int v = 0; v < nv; ++v) {
          __m256 av = _mm256_mul_ps(_mm256_load_ps(acc[k] + v * 8), corr);
          for (int j = a; j <= b; ++j) av = _mm256_fmadd_ps(_mm256_set1_ps(pj[j]), _mm256_load_ps(vbuf[j] + v * 8), av);
          _mm256_store_ps(acc[k] + v * 8, av);
        }
      }
    }
    for (int k = 0; k < np; ++k) {
      const __m256 l = _mm256_set1_ps(l_run[k]);
      alignas(32) float o[kMaxHeadDim];
      for (int v = 0; v < nv; ++v) _mm256_store_ps(o + v * 8, _mm256_div_ps(_mm256_load_ps(acc[k] + v * 8), l));
      for (int d = 0; d < hd; ++d) op[k][d] = o[d];
    }
  }
}

}  // namespace

// One kv head at a time (the arithmetic of a head does not depend on the others).
void attention_avx2(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                    int kh1, int64_t i0, int64_t i1) {
  for (int kh = kh0; kh < kh1; ++kh) {
    if (kv.dtype == DType::f16) attention_impl<DType::f16>(out, q, seq, kv, p, kh, i0, i1);
    else attention_impl<DType::f32>(out, q, seq, kv, p, kh, i0, i1);
  }
}

}  // namespace pensieve
