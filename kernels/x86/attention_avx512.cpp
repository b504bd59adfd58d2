// Causal GQA attention over the paged KV cache, AVX-512, online softmax per tile of 16 keys.
//
// Work: one call covers queries [i0, i1) of a sequence for the g query heads of each kv head in
// [kh0, kh1), i.e. (query, head) pairs, taken 32 at a time in kv-head order, so that a pass over
// the keys reads each block's rows of those heads front to back. Keys run in tiles of 16 at absolute positions
// (tile k = keys 16k .. 16k+15): each tile's K and V are converted once to f32 into an L1
// buffer (exact), then every pair of the tile with a visible key in it
//   scores  s_j = scale · (q · k_j)   (lanes: 16 dims of head_dim per vector, then the 16 keys'
//           lane sums at once, sum16)
//   m' = max(m, max_j s_j),  p_j = e^(s_j − m'),  c = e^(m − m'),
//   l = l·c + Σ_j p_j,  acc = acc·c + Σ_j p_j · v_j   (j in key order)
// and at the end out = acc / l. A pair skips tiles where it sees no key, and invisible keys
// inside a tile do not touch its sums, so a query gives the same bits alone (decode), inside
// any prefill chunk, or next to other heads and sequences. The next tile's keys and values are
// prefetched (the cache's blocks are scattered, so the hardware prefetcher cannot guess them).
// NV = head_dim / 16 rounded up is a template parameter for the common head sizes (64, 80, 96,
// 128), so q and the accumulators live in registers; other sizes run the same operations in a
// loop.
#include "kernels/x86/simd_avx512.h"
#include "kernels/x86/x86.h"

namespace pensieve {
namespace {

constexpr int kTile = 16;   // keys per tile (one vector of scores)
constexpr int kPairs = 32;  // (query, head) pairs sharing one pass over the keys

template <DType KV, int NV>
inline void load_row(float* dst, const void* base, int64_t off, int hd) {
  const int nv = NV > 0 ? NV : (hd + 15) / 16;
  PENSIEVE_UNROLL
  for (int v = 0; v < nv; ++v) {
    const __mmask16 m = first_lanes16(hd - v * 16);
    __m512 x;
    if constexpr (KV == DType::f16) x = load_f16(static_cast<const uint16_t*>(base) + off + v * 16, m);
    else x = _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + off + v * 16);
    _mm512_store_ps(dst + v * 16, x);
  }
}

// Element offsets of keys j0 .. j1 (inclusive) of kv head kh in the paged cache, without a
// division per key.
inline void key_offsets(int64_t* off, const AttnSeq& seq, const KvLayer& kv, int kh, int64_t j0, int64_t j1) {
  int64_t block = j0 / kv.block_size, slot = j0 % kv.block_size;
  for (int64_t j = j0; j <= j1; ++j) {
    off[j - j0] = int64_t(seq.block_table[block]) * kv.block_stride + kh * kv.head_stride + slot * kv.head_dim;
    if (++slot == kv.block_size) {
      slot = 0;
      ++block;
    }
  }
}

// Lane j of the result = the sum of the 16 lanes of v[j], for 16 vectors at once (a fixed
// tree: pairs within 128-bit lanes, then across them), ~3 instructions per vector instead of 8.
inline __m512 sum16(const __m512 (&v)[16]) {
  __m512 c[8], e[4];
  PENSIEVE_UNROLL
  for (int i = 0; i < 8; ++i)  // lanes {0,2} | {1,3} of each 128-bit lane: v[2i] | v[2i+1]
    c[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  PENSIEVE_UNROLL
  for (int i = 0; i < 4; ++i) {  // lane 4L + k of each: v[4i + k] over 128-bit lane L
    const __m512d x = _mm512_castps_pd(c[2 * i]), y = _mm512_castps_pd(c[2 * i + 1]);
    e[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  const __m512 f0 = _mm512_add_ps(_mm512_shuffle_f32x4(e[0], e[1], 0x88), _mm512_shuffle_f32x4(e[0], e[1], 0xdd));
  const __m512 f1 = _mm512_add_ps(_mm512_shuffle_f32x4(e[2], e[3], 0x88), _mm512_shuffle_f32x4(e[2], e[3], 0xdd));
  return _mm512_add_ps(_mm512_shuffle_f32x4(f0, f1, 0x88), _mm512_shuffle_f32x4(f0, f1, 0xdd));
}

// Into L2 (T1): on Zen 4, Phi-3 decode at ctx 4096 read 25 GB/s of KV, 15 with prefetches into L1.
inline void prefetch_row(const void* base, int64_t off_bytes, int64_t bytes) {
  const char* p = static_cast<const char*>(base) + off_bytes;
  for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(p + b, _MM_HINT_T1);
  _mm_prefetch(p + bytes - 1, _MM_HINT_T1);  // rows need not start on a cache line
}

// NV > 0: head_dim needs exactly NV vectors (registers); NV == 0: nv given at run time.
template <DType KV, int NV>
void attention_impl(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                    int kh1, int64_t i0, int64_t i1) {
  const int hd = kv.head_dim, nv = NV > 0 ? NV : (hd + 15) / 16;
  constexpr int kMaxV = NV > 0 ? NV : kMaxHeadDim / 16;
  const int group = p.n_heads / kv.n_kv_heads;
  const int64_t elem = KV == DType::f16 ? 2 : 4, row_bytes = int64_t(hd) * elem;
  const bool contiguous = kv.block_size % kTile == 0;  // a tile's rows of one head are contiguous
  alignas(64) float kbuf[kTile][kMaxHeadDim], vbuf[kTile][kMaxHeadDim];
  alignas(64) float acc[kPairs][kMaxHeadDim];
  float m_run[kPairs], l_run[kPairs];
  int64_t lo[kPairs], hi[kPairs];
  int pkh[kPairs];
  const float* qp[kPairs];
  float* op[kPairs];
  int64_t off[kTile];
  // Pairs in kv-head-major order: the pairs of one kv head are consecutive, and kv heads are
  // taken in cache order, so a tile reads each block's rows front to back.
  const int64_t nq = i1 - i0, per_kv = nq * group, n_pairs = (kh1 - kh0) * per_kv;
  int64_t next_off[kTile];
  // Element offsets of keys [ja, jb] of kv head kh into dst (dst[0] is key ja).
  auto offsets_to = [&](int64_t* dst, int kh, int64_t ja, int64_t jb) {
    if (contiguous) {
      const int64_t o = int64_t(seq.block_table[ja / kv.block_size]) * kv.block_stride + kh * kv.head_stride +
                        (ja % kv.block_size) * hd;
      for (int64_t j = ja; j <= jb; ++j) dst[j - ja] = o + (j - ja) * hd;
    } else {
      key_offsets(dst, seq, kv, kh, ja, jb);
    }
  };
  auto offsets = [&](int kh, int64_t ja, int64_t jb) { offsets_to(off, kh, ja, jb); };
  for (int64_t pt = 0; pt < n_pairs; pt += kPairs) {
    const int np = int(imin(kPairs, n_pairs - pt));
    int64_t lo_min = INT64_MAX, hi_max = -1;
    for (int k = 0; k < np; ++k) {
      const int64_t P = pt + k;
      pkh[k] = kh0 + int(P / per_kv);
      const int64_t i = i0 + (P % per_kv) / group;
      const int h = pkh[k] * group + int(P % group);
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
      // The next tile's rows of each kv head are prefetched as that head's rows of this tile are
      // computed (the cache's blocks are scattered: the hardware prefetcher cannot guess them),
      // one head at a time: a whole pass's worth at once (32 heads x 6 KiB) overflowed the
      // core's miss queues and most prefetches were dropped.
      const int64_t na = j0 + kTile, nb = imin(j0 + 2 * kTile - 1, hi_max);
      for (int k0 = 0; k0 < np;) {
        // The pairs [k0, k1) of one kv head. One pair (decode without GQA) reads the cache
        // directly; several share a converted copy. The values are the same either way (f16 ->
        // f32 is exact), so is the arithmetic.
        const int kh = pkh[k0];
        int k1 = k0 + 1;
        while (k1 < np && pkh[k1] == kh) ++k1;
        offsets(kh, ja, jb);
        if (na <= nb) {
          offsets_to(next_off, kh, na, nb);
          for (int64_t j = na; j <= nb; j += contiguous ? kTile : 1) {
            const int64_t bytes = contiguous ? (nb - na + 1) * row_bytes : row_bytes;
            prefetch_row(kv.k, next_off[j - na] * elem, bytes);
            prefetch_row(kv.v, next_off[j - na] * elem, bytes);
          }
        }
        const bool direct = k1 - k0 == 1;
        if (!direct) {
          for (int64_t j = ja; j <= jb; ++j) {
            load_row<KV, NV>(kbuf[j - j0], kv.k, off[j - ja], hd);
            load_row<KV, NV>(vbuf[j - j0], kv.v, off[j - ja], hd);
          }
        }
        // Vector v of key j (tile index) of K or V.
        auto row = [&](const void* cache, float (*buf)[kMaxHeadDim], int j, int v) {
          if (!direct) return _mm512_load_ps(buf[j] + v * 16);
          const int64_t o = off[j0 + j - ja] + v * 16;
          const __mmask16 m = first_lanes16(hd - v * 16);
          if constexpr (KV == DType::f16) return load_f16(static_cast<const uint16_t*>(cache) + o, m);
          else return _mm512_maskz_loadu_ps(m, static_cast<const float*>(cache) + o);
        };
        for (int k = k0; k < k1; ++k) {
          const int a = int(imax(ja, lo[k]) - j0), b = int(imin(jb, hi[k]) - j0);  // visible lanes [a, b]
          if (a > b) continue;
          __m512 qv[kMaxV];
          PENSIEVE_UNROLL
          for (int v = 0; v < nv; ++v) qv[v] = _mm512_maskz_loadu_ps(first_lanes16(hd - v * 16), qp[k] + v * 16);
          __m512 part[kTile];  // per key: lane-wise q·k products summed over head_dim's vectors
          PENSIEVE_UNROLL
          for (int j = 0; j < kTile; ++j) {
            if (j < a || j > b) {
              part[j] = _mm512_setzero_ps();
              continue;
            }
            __m512 s = _mm512_mul_ps(qv[0], row(kv.k, kbuf, j, 0));
            PENSIEVE_UNROLL
            for (int v = 1; v < nv; ++v) s = _mm512_fmadd_ps(qv[v], row(kv.k, kbuf, j, v), s);
            part[j] = s;
          }
          const __mmask16 vis = __mmask16(((1u << (b + 1)) - 1) & ~((1u << a) - 1));
          const __m512 sv = _mm512_mask_mul_ps(_mm512_set1_ps(-kInf), vis, sum16(part), _mm512_set1_ps(p.scale));
          const float m_new = fmax_(m_run[k], _mm512_reduce_max_ps(sv));
          const __m512 pv = _mm512_maskz_mov_ps(vis, exp_ps(_mm512_sub_ps(sv, _mm512_set1_ps(m_new))));
          const __m512 corr = exp_ps(_mm512_set1_ps(m_run[k] - m_new));
          l_run[k] = l_run[k] * _mm512_cvtss_f32(corr) + hsum(pv);
          m_run[k] = m_new;
          alignas(64) float pj[kTile];
          _mm512_store_ps(pj, pv);
          __m512 av[kMaxV];
          PENSIEVE_UNROLL
          for (int v = 0; v < nv; ++v) av[v] = _mm512_mul_ps(_mm512_load_ps(acc[k] + v * 16), corr);
          for (int j = a; j <= b; ++j) {
            const __m512 pb = _mm512_set1_ps(pj[j]);
            PENSIEVE_UNROLL
            for (int v = 0; v < nv; ++v) av[v] = _mm512_fmadd_ps(pb, row(kv.v, vbuf, j, v), av[v]);
          }
          PENSIEVE_UNROLL
          for (int v = 0; v < nv; ++v) _mm512_store_ps(acc[k] + v * 16, av[v]);
        }
        k0 = k1;
      }
    }
    for (int k = 0; k < np; ++k) {
      const __m512 l = _mm512_set1_ps(l_run[k]);
      for (int d = 0; d < hd; d += 16)
        _mm512_mask_storeu_ps(op[k] + d, first_lanes16(hd - d), _mm512_div_ps(_mm512_load_ps(acc[k] + d), l));
    }
  }
}

template <DType KV>
void dispatch_dim(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                  int kh1, int64_t i0, int64_t i1) {
  switch ((kv.head_dim + 15) / 16) {
    case 4: return attention_impl<KV, 4>(out, q, seq, kv, p, kh0, kh1, i0, i1);
    case 5: return attention_impl<KV, 5>(out, q, seq, kv, p, kh0, kh1, i0, i1);
    case 6: return attention_impl<KV, 6>(out, q, seq, kv, p, kh0, kh1, i0, i1);
    case 8: return attention_impl<KV, 8>(out, q, seq, kv, p, kh0, kh1, i0, i1);
    default: return attention_impl<KV, 0>(out, q, seq, kv, p, kh0, kh1, i0, i1);
  }
}

}  // namespace

void attention_avx512(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                      int kh1, int64_t i0, int64_t i1) {
  if (kv.dtype == DType::f16) dispatch_dim<DType::f16>(out, q, seq, kv, p, kh0, kh1, i0, i1);
  else dispatch_dim<DType::f32>(out, q, seq, kv, p, kh0, kh1, i0, i1);
}

}  // namespace pensieve
