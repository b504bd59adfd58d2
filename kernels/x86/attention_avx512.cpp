// Causal GQA attention over the paged KV cache, AVX-512, online softmax per tile of 16 keys.
//
// Work: one call covers queries [i0, i1) of a sequence for the g query heads of each kv head in
// [kh0, kh1), i.e. (query, head) pairs, taken 32 at a time in kv-head order, so that a pass over
// the keys reads each block's rows of those heads front to back. Keys run in tiles of 16 at
// absolute positions (tile k = keys 16k .. 16k+15), each tile in three steps over all the pairs:
//   1. scores  s_j = scale · (q · k_j)   (lanes: 16 dims of head_dim per vector, then the 16
//      keys' lane sums at once, sum16);
//   2. m' = max(m, max_j s_j),  p_j = e^(s_j − m'),  c = e^(m − m'),  l = l·c + Σ_j p_j;
//   3. acc = acc·c + Σ_j p_j · v_j   (j in key order);
// and at the end out = acc / l. Step 2 is a chain of dependent operations per pair; run for all
// pairs at once, the chains overlap. In steps 1 and 3, the pairs of one kv head that see the
// same keys of the tile (the query heads of one query; in prefill, whole runs of queries away
// from the diagonal) go up to 4 at a time, so each key and value vector is loaded from the cache
// and converted to f32 once for all of them. A pair skips tiles where it sees no key, and
// invisible keys inside a tile do not touch its sums: a pair's operations and their order depend
// only on its own position, so a query gives the same bits alone (decode), inside any prefill
// chunk, or next to other heads and sequences. The next tile's keys and values are prefetched.
// NV = head_dim / 16 is a template parameter for the common head sizes (64, 80, 96, 128), so the
// accumulators live in registers; other sizes run the same operations in a loop, masked.
#include "kernels/x86/simd_avx512.h"
#include "kernels/x86/x86.h"

namespace pensieve {
namespace {

constexpr int kTile = 16;     // keys per tile (one vector of scores)
constexpr int kPairs = 32;    // (query, head) pairs sharing one pass over the keys
constexpr int kMaxGroup = 4;  // pairs sharing one tile's loads (Phi-4-mini: 3 query heads per kv head)

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

// Lane j of sum16(v) = the sum of the 16 lanes of v[j], for 16 vectors at once, as a fixed tree
// (~3 instructions per vector instead of 8) in two steps: sum4 folds v[4i .. 4i+3] into e[i]
// within 128-bit lanes (lane 4L + k of e[i] = the sum of 128-bit lane L of v[4i + k]), then
// sum16_of folds e[0 .. 3] across the 128-bit lanes.
inline __m512 sum4(const __m512 (&v)[4]) {
  const __m512 c0 = _mm512_add_ps(_mm512_unpacklo_ps(v[0], v[1]), _mm512_unpackhi_ps(v[0], v[1]));
  const __m512 c1 = _mm512_add_ps(_mm512_unpacklo_ps(v[2], v[3]), _mm512_unpackhi_ps(v[2], v[3]));
  const __m512d x = _mm512_castps_pd(c0), y = _mm512_castps_pd(c1);
  return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
}

inline __m512 sum16_of(const __m512 (&e)[4]) {
  const __m512 f0 = _mm512_add_ps(_mm512_shuffle_f32x4(e[0], e[1], 0x88), _mm512_shuffle_f32x4(e[0], e[1], 0xdd));
  const __m512 f1 = _mm512_add_ps(_mm512_shuffle_f32x4(e[2], e[3], 0x88), _mm512_shuffle_f32x4(e[2], e[3], 0xdd));
  return _mm512_add_ps(_mm512_shuffle_f32x4(f0, f1, 0x88), _mm512_shuffle_f32x4(f0, f1, 0xdd));
}

// Vector v (dims 16v .. 16v+15) of the cache row at element offset o, in f32 (0 past head_dim).
// NV > 0 (head_dim = 16 NV): whole vectors, and the f16 load folds into the convert (a masked
// load is a separate instruction: unmasked, Phi-4-mini's tiles ran ~10% faster on Zen 4).
template <DType KV, int NV>
inline __m512 cache_vec(const void* cache, int64_t o, int v, int hd) {
  if constexpr (NV > 0) {
    if constexpr (KV == DType::f16)
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(cache) + o + v * 16)));
    else return _mm512_loadu_ps(static_cast<const float*>(cache) + o + v * 16);
  }
  const __mmask16 m = first_lanes16(hd - v * 16);
  if constexpr (KV == DType::f16) return load_f16(static_cast<const uint16_t*>(cache) + o + v * 16, m);
  else return _mm512_maskz_loadu_ps(m, static_cast<const float*>(cache) + o + v * 16);
}

using Row = float[kMaxHeadDim];

// The next tile's rows of one kv head in one cache, prefetched while this tile's rows are read:
// the cache's blocks are scattered, so the hardware prefetcher cannot guess them, and spreading
// the prefetches over the work keeps the core's miss queues from filling up (issued all at once,
// they stalled the core: a fifth of the samples sat on them).
struct NextRows {
  const char* cache = nullptr;
  const int64_t* off = nullptr;  // byte offset of each row
  int n = 0;                     // rows (0: nothing to prefetch)
  int64_t bytes = 0;             // per row
};

// Rows [j0, j1) of the next tile.
inline void prefetch_rows(const NextRows& next, int j0, int j1) {
  for (int j = j0; j < imin(j1, next.n); ++j) prefetch_l2(next.cache, next.off[j], next.bytes);
}

// Steps 1 and 3 take G pairs of one kv head that see the same keys of the tile, so that each
// key and value vector is loaded and converted once for all G. Pair h's q (zero-padded), scores
// then p, c and accumulator are at index h of each array. rows[j] = element offset of key j's
// row in the cache (for a key the pairs do not see, some visible key's row: the lanes of its
// score are masked out in step 2).

// Step 1: lane j of s[h] = q_h · k_j (the lane-wise products summed over head_dim's vectors,
// then across lanes by sum16).
template <DType KV, int NV, int G>
void group_scores(float (*s)[kTile], const Row* q, const void* kc, const int64_t* rows, int hd,
                  const NextRows& next) {
  const int nv = NV > 0 ? NV : (hd + 15) / 16;
  __m512 e[G][4];
  PENSIEVE_UNROLL
  for (int c = 0; c < 4; ++c) {  // four keys at a time
    prefetch_rows(next, 4 * c, 4 * c + 4);
    __m512 part[G][4];
    PENSIEVE_UNROLL
    for (int v = 0; v < nv; ++v) {
      __m512 k[4];
      PENSIEVE_UNROLL
      for (int j = 0; j < 4; ++j) k[j] = cache_vec<KV, NV>(kc, rows[4 * c + j], v, hd);
      PENSIEVE_UNROLL
      for (int h = 0; h < G; ++h) {
        const __m512 qv = _mm512_load_ps(q[h] + v * 16);
        PENSIEVE_UNROLL
        for (int j = 0; j < 4; ++j) part[h][j] = v == 0 ? _mm512_mul_ps(qv, k[j]) : _mm512_fmadd_ps(qv, k[j], part[h][j]);
      }
    }
    PENSIEVE_UNROLL
    for (int h = 0; h < G; ++h) e[h][c] = sum4(part[h]);
  }
  PENSIEVE_UNROLL
  for (int h = 0; h < G; ++h) _mm512_store_ps(s[h], sum16_of(e[h]));
}

// Step 3: acc_h = acc_h · c_h + the sum over keys j in [a, b], in key order, of p_hj · v_j;
// head_dim in chunks of VC vectors, so that the G · VC accumulators (at most 24) stay in registers.
template <DType KV, int NV, int G>
void group_values(Row* acc, const float (*p)[kTile], const float* corr, const void* vc, const int64_t* rows, int a,
                  int b, int hd, const NextRows& next) {
  const int nv = NV > 0 ? NV : (hd + 15) / 16;
  constexpr int kChunks = NV > 0 ? (G * NV + 23) / 24 : 1;
  constexpr int VC = NV > 0 ? (NV + kChunks - 1) / kChunks : 1;
  for (int v0 = 0; v0 < nv; v0 += VC) {
    __m512 av[G][VC];
    PENSIEVE_UNROLL
    for (int h = 0; h < G; ++h) {
      PENSIEVE_UNROLL
      for (int v = 0; v < VC; ++v)  // (past head_dim: 0, unused)
        av[h][v] = v0 + v < nv ? _mm512_mul_ps(_mm512_load_ps(acc[h] + (v0 + v) * 16), _mm512_set1_ps(corr[h]))
                               : _mm512_setzero_ps();
    }
    for (int j = a; j <= b; ++j) {
      if (v0 == 0) prefetch_rows(next, j, j + 1);
      __m512 pb[G];
      PENSIEVE_UNROLL
      for (int h = 0; h < G; ++h) pb[h] = _mm512_set1_ps(p[h][j]);
      PENSIEVE_UNROLL
      for (int v = 0; v < VC; ++v) {
        if (v0 + v >= nv) break;
        const __m512 x = cache_vec<KV, NV>(vc, rows[j], v0 + v, hd);
        PENSIEVE_UNROLL
        for (int h = 0; h < G; ++h) av[h][v] = _mm512_fmadd_ps(pb[h], x, av[h][v]);
      }
    }
    PENSIEVE_UNROLL
    for (int h = 0; h < G; ++h) {
      PENSIEVE_UNROLL
      for (int v = 0; v < VC; ++v)
        if (v0 + v < nv) _mm512_store_ps(acc[h] + (v0 + v) * 16, av[h][v]);
    }
  }
  prefetch_rows(next, 0, a);
  prefetch_rows(next, b + 1, kTile);
}

// f(Count<g>{}) for g = 1 .. kMaxGroup; head sizes without their own NV take pairs one at a time.
template <int NV, class F>
void with_group(int g, F&& f) {
  if constexpr (NV > 0) {
    switch (g) {
      case 4: return f(Count<4>{});
      case 3: return f(Count<3>{});
      case 2: return f(Count<2>{});
      default: break;
    }
  }
  f(Count<1>{});
}

// A run of pairs [k, k + g) of one kv head that see keys [a, b] of the tile; rows as above,
// next: the next tile's values of the kv head, for the first run of each.
struct Run {
  int k, g, a, b;
  const int64_t* rows;
  NextRows next;
};

// NV > 0: head_dim needs exactly NV vectors (registers); NV == 0: nv given at run time.
template <DType KV, int NV>
void attention_impl(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                    int kh1, int64_t i0, int64_t i1) {
  const int hd = kv.head_dim, hd_pad = (NV > 0 ? NV : (hd + 15) / 16) * 16;
  const int group = p.n_heads / kv.n_kv_heads, max_group = NV > 0 ? kMaxGroup : 1;
  const int64_t elem = KV == DType::f16 ? 2 : 4, row_bytes = int64_t(hd) * elem;
  const bool contiguous = kv.block_size % kTile == 0;  // a tile's rows of one head are contiguous
  alignas(64) Row qbuf[kPairs], acc[kPairs];
  alignas(64) float sc[kPairs][kTile];  // a pair's scores, then its p
  float m_run[kPairs], l_run[kPairs], psum[kPairs];
  float corr[kPairs + 15] = {};  // (+15: exponentiated 16 at a time)
  int64_t lo[kPairs], hi[kPairs];
  int pkh[kPairs];
  float* op[kPairs];
  int64_t off[kTile], next_off[kPairs][kTile], rows[kPairs][kTile];
  Run runs[kPairs];
  // Pairs in kv-head-major order: the pairs of one kv head are consecutive, and kv heads are
  // taken in cache order, so a tile reads each block's rows front to back.
  const int64_t nq = i1 - i0, per_kv = nq * group, n_pairs = (kh1 - kh0) * per_kv;
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
      const float* qk = q + (seq.q_begin + i) * p.q_stride + int64_t(h) * hd;
      for (int d = 0; d < hd_pad; d += 16) {
        _mm512_store_ps(qbuf[k] + d, _mm512_maskz_loadu_ps(first_lanes16(hd - d), qk + d));
        _mm512_store_ps(acc[k] + d, _mm512_setzero_ps());
      }
      op[k] = out + (seq.q_begin + i) * p.out_stride + int64_t(h) * hd;
      m_run[k] = -kInf;
      l_run[k] = 0;
    }
    for (int64_t j0 = lo_min / kTile * kTile; j0 <= hi_max; j0 += kTile) {
      const int64_t ja = imax(j0, lo_min), jb = imin(j0 + kTile - 1, hi_max);
      const int64_t na = j0 + kTile, nb = imin(j0 + 2 * kTile - 1, hi_max);
      auto first = [&](int k) { return int(imax(ja, lo[k]) - j0); };  // a pair's visible keys of the tile
      auto last = [&](int k) { return int(imin(jb, hi[k]) - j0); };
      // 1. Scores, kv head by kv head. The next tile's rows of each kv head are prefetched as
      // this tile's keys of that head are read: a whole pass's worth at once (32 heads x 6 KiB)
      // overflowed the core's miss queues and most prefetches were dropped.
      int n_runs = 0;
      for (int k0 = 0, r = 0; k0 < np; ++r) {
        const int kh = pkh[k0];  // the pairs [k0, k1) of one kv head
        int k1 = k0 + 1;
        while (k1 < np && pkh[k1] == kh) ++k1;
        offsets_to(off, kh, ja, jb);
        for (int j = 0; j < kTile; ++j) rows[r][j] = off[imin(imax(j0 + j, ja), jb) - ja];
        NextRows next_k, next_v;  // keys prefetched in step 1, values in step 3
        if (na <= nb) {
          offsets_to(next_off[r], kh, na, nb);
          for (int64_t j = na; j <= nb; ++j) next_off[r][j - na] *= elem;
          next_k = NextRows{static_cast<const char*>(kv.k), next_off[r], int(nb - na + 1), row_bytes};
          next_v = NextRows{static_cast<const char*>(kv.v), next_off[r], int(nb - na + 1), row_bytes};
        }
        for (int k = k0; k < k1;) {  // runs of up to kMaxGroup pairs that see the same keys
          const int a = first(k), b = last(k);
          int g = 1;
          while (g < max_group && k + g < k1 && first(k + g) == a && last(k + g) == b) ++g;
          if (a <= b) {
            with_group<NV>(g, [&](auto G) {
              group_scores<KV, NV, G.value>(sc + k, qbuf + k, kv.k, rows[r], hd, next_k);
            });
            runs[n_runs++] = Run{k, g, a, b, rows[r], next_v};
            next_k.n = next_v.n = 0;  // the first run prefetches
          }
          k += g;
        }
        k0 = k1;
      }
      // 2. Online softmax, pair by pair: chains of dependent operations, independent of each other.
      // The corrections e^(m − m') of all pairs take one exp per 16 pairs, not one each (lanes of
      // pairs that see no key of this tile compute unused values).
      for (int r = 0; r < n_runs; ++r) {
        const __mmask16 vis = __mmask16(((1u << (runs[r].b + 1)) - 1) & ~((1u << runs[r].a) - 1));
        for (int k = runs[r].k; k < runs[r].k + runs[r].g; ++k) {
          const __m512 sv = _mm512_mask_mul_ps(_mm512_set1_ps(-kInf), vis, _mm512_load_ps(sc[k]), _mm512_set1_ps(p.scale));
          const float m_new = fmax_(m_run[k], _mm512_reduce_max_ps(sv));
          const __m512 pv = _mm512_maskz_mov_ps(vis, exp_ps(_mm512_sub_ps(sv, _mm512_set1_ps(m_new))));
          corr[k] = m_run[k] - m_new;
          psum[k] = hsum(pv);
          m_run[k] = m_new;
          _mm512_store_ps(sc[k], pv);
        }
      }
      for (int k = 0; k < np; k += 16) _mm512_storeu_ps(corr + k, exp_ps(_mm512_loadu_ps(corr + k)));
      for (int r = 0; r < n_runs; ++r)
        for (int k = runs[r].k; k < runs[r].k + runs[r].g; ++k) l_run[k] = l_run[k] * corr[k] + psum[k];
      // 3. Values, run by run.
      for (int r = 0; r < n_runs; ++r) {
        const Run& u = runs[r];
        with_group<NV>(u.g, [&](auto G) {
          group_values<KV, NV, G.value>(acc + u.k, sc + u.k, corr + u.k, kv.v, u.rows, u.a, u.b, hd, u.next);
        });
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
  switch (kv.head_dim) {
    case 64: return attention_impl<KV, 4>(out, q, seq, kv, p, kh0, kh1, i0, i1);
    case 80: return attention_impl<KV, 5>(out, q, seq, kv, p, kh0, kh1, i0, i1);
    case 96: return attention_impl<KV, 6>(out, q, seq, kv, p, kh0, kh1, i0, i1);
    case 128: return attention_impl<KV, 8>(out, q, seq, kv, p, kh0, kh1, i0, i1);
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
