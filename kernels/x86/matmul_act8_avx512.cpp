// Quantized W (q4 / q8) × int8 activations, the "fast" precision, AVX-512 VNNI (vpdpbusd:
// unsigned weight bytes × signed activation bytes, 4 products summed into each int32 lane).
//
// Lanes, q4, slabs of 512 values (16 activation blocks of 32, 256 bytes of a row). A block is
// 4 words, word m holding its values 8m..8m+7 (value 2j+h in nibble h of byte j). Four 64-byte
// loads Z_k hold words 16k..16k+15; a 4 x 4 transpose of 32-bit elements inside each 128-bit
// lane (8 unpacks) gives W_m with lane p = 4L + k holding word m of block b(p) = 4k + L. AND
// 0x0F / shift-and-AND split W_m into the even / odd values of those words. quantize_act stores
// each slab of x as 8 sections (m, h) of 64 bytes, lane p of section (m, h) holding values
// 8m + 2j + h (j = 0..3) of block b(p), and the slab's 16 block scales d in the same lane order.
// Then 8 vpdpbusd leave in lane p the whole int32 dot product of block b(p): one convert and one
// FMA per 512 values and output, not per 128.
// Values past the last whole slab go in chunks of 128: a 64-byte load split into even / odd
// values, x stored as the chunk's 64 even values then its 64 odd ones, two vpdpbusd giving
// lane i = values 8i..8i+7 (a last chunk of m < 128 values: m/2 bytes per half, masked).
// q8: weights are bytes already (value p = byte p); x stays in natural order, chunks of 64
// values, lane i = values 4i..4i+3.
// Either way a lane lies inside one activation block (32 values) and one weight group, so
// per output and chunk: acc += cvt(isum) ⊙ (scale lanes ⊙ d lanes), and at the end
// y = Σ lanes of (acc + Σ_g bias_g · gsum_g). The sequence per output is fixed, whatever tile
// (and so whatever batch or row split) computes it.
#include <cstdlib>

#include "kernels/x86/simd_avx512.h"
#include "kernels/x86/x86.h"

namespace pensieve {
namespace {

// Tile: 2 rows x 4 tokens: each x load feeds both rows' vpdpbusd (one load per multiply with a
// single row, which kept the load ports as busy as the multipliers). Live across a slab: 8
// transposed weight words, 8 int32 sums, 8 accumulators, the section's 4 nibble vectors and 2 x
// vectors. Measured on Zen 5 (pensieve-kernel-bench, 2 threads, Phi-3 shapes, bench/RESULTS.md):
// +4-20% over 1 x 8 at batches 4-512; 2 x 6 spills (slower at 16). One token keeps 1 row.
constexpr int kRows = 2, kTokens = 4;
// Rows are contiguous, so the weights of a call are one stream: each load is prefetched 16 KiB
// ahead (measured, 1 thread: 8–32 rows of 3072 q4 values ahead were ~20% faster than 1 row, and
// alike among themselves; no prefetch was ~2x slower). Into L2 (T1), not L1: on Zen 4 batch 1
// read ~23 GB/s with prefetches into L1 and ~30 into L2 (medians, 2 threads; batch 16 +20%),
// likely L1's few miss buffers; on Zen 5 it made no difference to batched tiles (bench/RESULTS.md).
constexpr int64_t kPrefetchBytes = 16 * 1024;
// Activation bytes of a token tile that stay in the 48 KiB L1 next to the streamed weights (Zen 5;
// on Zen 4's 32 KiB L1, 16 KiB, i.e. 2 tokens for down_proj, was slower: 19 vs 22 M rows x tokens/s).
constexpr int64_t kL1Act = 32 * 1024;
// Weight bytes of a piece of rows that every token tile re-reads from the 1 MiB L2 (a call's
// <= 256 rows of 8192 values are 1 MiB: down_proj's tiles read L3 without pieces, ~10% slower).
constexpr int64_t kL2Weights = 384 * 1024;
// Prefill: unpacked, a tile's weight slabs are transposed and split into nibble vectors again
// for every token tile (128 times per row at 512 tokens). From kPackMinTokens tokens on, each
// piece of rows is transposed and split once into a per-thread buffer of kPackBytes (one byte per
// q4 value, so it stays in L2), and tiles of kPackTokens tokens load the nibble vectors from
// there; without the transpose's registers, 2 x 6 tiles fit the 32 (Zen 4, 1 thread, 256 x 3072
// in L2, 512 tokens: 138 vs 122 GMAC/s; 2 x 4 packed 135, 2 x 5 137, 2 x 7 133, 3 x 4 133).
// At 16-32 tokens the repacking did not pay. Only for rows whose kPackTokens activation rows fit
// kL1Act (3072 values: not down_proj's 8192, where packing was no faster, also in passes over the
// columns). Outputs are bitwise the same either way (bench/RESULTS.md).
constexpr int kPackTokens = 6;
constexpr int64_t kPackMinTokens = 64;
constexpr int64_t kPackBytes = 384 * 1024;

// Block of a slab in lane p of its int32 sums (and, as the map is its own inverse, the lane of block p).
constexpr int slab_block(int p) { return 4 * (p % 4) + p / 4; }
// Values [0, slab_end) of a row are in slab layout (q4 only), for quantize_act and the kernel alike.
template <int Bits>
constexpr int64_t slab_end(int64_t cols) { return Bits == 4 ? cols / 512 * 512 : 0; }

inline __mmask64 first_bytes(int64_t n) { return n >= 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1; }

struct Lanes {
  int64_t groups;     // weight groups per row
  int group;          // group size
  int gshift;         // log2(group size): shifts, not divisions, in the chunk loop
  int64_t blocks;     // activation blocks per row
  __m512i group_idx;  // lane -> weight group within the chunk
  __m512i block_idx;  // lane -> activation block within the chunk
  // q4 slabs: lane p holds block slab_block(p) of the slab (and d holds them in that order).
  __m512i slab_group_idx;  // lane -> weight group within the slab
  __mmask16 slab_group_mask;  // the slab's groups (512 / group size)
};

// A slab of one q4 row (256 bytes at wr) as 4 vectors of words, lane p of wm[m] holding word m of
// block slab_block(p): each 128-bit lane's 4 x 4 transpose of 32-bit elements.
PENSIEVE_INLINE void transposed_words(const uint8_t* wr, __m512i (&wm)[4]) {
  __m512i z[4];
  PENSIEVE_UNROLL
  for (int k = 0; k < 4; ++k) {
    _mm_prefetch(reinterpret_cast<const char*>(wr + kPrefetchBytes + 64 * k), _MM_HINT_T1);
    z[k] = _mm512_loadu_si512(wr + 64 * k);
  }
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  wm[0] = _mm512_unpacklo_epi64(t0, t2);
  wm[1] = _mm512_unpackhi_epi64(t0, t2);
  wm[2] = _mm512_unpacklo_epi64(t1, t3);
  wm[3] = _mm512_unpackhi_epi64(t1, t3);
}

// A section's even / odd values: each byte's low / high nibble.
PENSIEVE_INLINE void split_nibbles(__m512i wm, __m512i& lo, __m512i& hi) {
  const __m512i nib = _mm512_set1_epi8(0x0f);
  lo = _mm512_and_si512(wm, nib);
  hi = _mm512_and_si512(_mm512_srli_epi16(wm, 4), nib);
}

// Sums one chunk (P values, or the last m < P) of R rows against T tokens into acc.
// Full chunks use plain loads; the last one masks (the values read are the same either way).
template <int Bits, DType S, int R, int T, bool Last>
PENSIEVE_INLINE void chunk(__m512 (&acc)[R][T], const uint8_t* w0, int64_t wstride, const void* scales, int64_t sstride,
                  const int8_t* x0, const float* d0, int64_t xstride, int64_t dstride, int m, const Lanes& ln) {
  constexpr int P = Bits == 4 ? 128 : 64;
  const int bytes = Last ? (Bits == 4 ? m / 2 : m) : (Bits == 4 ? P / 2 : P);  // per weight load
  const __mmask64 bm = Last ? first_bytes(bytes) : ~__mmask64(0);
  const __mmask16 gm = first_lanes16(imax(1, (Last ? m : P) >> ln.gshift));
  const __mmask16 dm = first_lanes16((Last ? m : P) / kActBlock);
  __m512i lo[R], hi[R];
  alignas(64) float s[R][16];  // scale lanes, read back as memory operands (registers go to acc)
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    const uint8_t* wr = w0 + r * wstride;
    _mm_prefetch(reinterpret_cast<const char*>(wr + kPrefetchBytes), _MM_HINT_T1);
    const __m512i v = Last ? _mm512_maskz_loadu_epi8(bm, wr) : _mm512_loadu_si512(wr);
    if constexpr (Bits == 4) split_nibbles(v, lo[r], hi[r]);
    else lo[r] = v;
    _mm512_store_ps(s[r], _mm512_permutexvar_ps(ln.group_idx, load_scalars<S>(scales, r * sstride, gm)));
  }
  PENSIEVE_UNROLL
  for (int t = 0; t < T; ++t) {
    const int8_t* xq = x0 + t * xstride;
    const __m512 d = _mm512_permutexvar_ps(ln.block_idx, _mm512_maskz_loadu_ps(dm, d0 + t * dstride));
    const __m512i xlo = Last ? _mm512_maskz_loadu_epi8(bm, xq) : _mm512_loadu_si512(xq);
    __m512i xhi = xlo;
    if constexpr (Bits == 4) xhi = Last ? _mm512_maskz_loadu_epi8(bm, xq + bytes) : _mm512_loadu_si512(xq + bytes);
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) {
      __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], xlo);
      if constexpr (Bits == 4) isum = _mm512_dpbusd_epi32(isum, hi[r], xhi);
      acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(_mm512_load_ps(s[r]), d), acc[r][t]);
    }
  }
}

// One 512-value slab of R consecutive q4 rows against T tokens (see the top comment).
// Packed: the split nibble vectors of the slab's rows are at pw + r * pstride,
// section m's even values at 128m, odd at 128m + 64 (repack_rows).
template <DType S, int R, int T, bool Packed>
PENSIEVE_INLINE void slab(__m512 (&acc)[R][T], const uint8_t* w0, int64_t wstride, const void* scales, int64_t sstride,
                          const int8_t* x0, const float* d0, int64_t xstride, int64_t dstride, const Lanes& ln,
                          const uint8_t* pw, int64_t pstride) {
  // Each section's even / odd values (lo / hi) are split from the transposed words wm: for one
  // row all four sections up front (independent work while the single token's loads arrive), for
  // more rows section by section, so that 4R words instead of 8R nibble vectors stay live.
  constexpr bool kEager = R == 1;
  __m512i wm[R][4], lo[R][4], hi[R][4];
  __m512 s[R];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    s[r] = _mm512_permutexvar_ps(ln.slab_group_idx, load_scalars<S>(scales, r * sstride, ln.slab_group_mask));
    if constexpr (!Packed) {
      transposed_words(w0 + r * wstride, wm[r]);
      if constexpr (kEager) {
        PENSIEVE_UNROLL
        for (int m = 0; m < 4; ++m) split_nibbles(wm[r][m], lo[r][m], hi[r][m]);
      }
    }
  }
  // Integer sums are exact, so the order of the 8 vpdpbusd per output is free: sections outer,
  // outputs inner keeps R·T independent chains in flight instead of one chain of 8 at a time.
  __m512i isum[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) isum[r][t] = _mm512_setzero_si512();
  PENSIEVE_UNROLL
  for (int m = 0; m < 4; ++m) {
    if constexpr (Packed) {
      PENSIEVE_UNROLL
      for (int r = 0; r < R; ++r) {
        lo[r][m] = _mm512_load_si512(pw + r * pstride + 128 * m);
        hi[r][m] = _mm512_load_si512(pw + r * pstride + 128 * m + 64);
      }
    } else if constexpr (!kEager) {
      PENSIEVE_UNROLL
      for (int r = 0; r < R; ++r) split_nibbles(wm[r][m], lo[r][m], hi[r][m]);
    }
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const int8_t* xq = x0 + t * xstride + 128 * m;
      const __m512i xlo = _mm512_loadu_si512(xq), xhi = _mm512_loadu_si512(xq + 64);
      PENSIEVE_UNROLL
      for (int r = 0; r < R; ++r) {
        isum[r][t] = _mm512_dpbusd_epi32(isum[r][t], lo[r][m], xlo);
        isum[r][t] = _mm512_dpbusd_epi32(isum[r][t], hi[r][m], xhi);
      }
    }
  }
  PENSIEVE_UNROLL
  for (int t = 0; t < T; ++t) {
    const __m512 d = _mm512_loadu_ps(d0 + t * dstride);  // in lane order (quantize_impl)
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r)
      acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][t]), _mm512_mul_ps(s[r], d), acc[r][t]);
  }
}

// A piece's rows packed for prefill: row r's slabs at base + (r - r0) * stride (repack_rows).
struct Packed {
  const uint8_t* base = nullptr;
  int64_t stride = 0, r0 = 0;
};

// Outputs y[t0 + t, r0 + r] for t < T, r < R; Pk: the slabs' weights from pk.
template <int Bits, DType S, int R, int T, bool Pk>
void tile(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t t0, const Lanes& ln,
          const Packed& pk) {
  constexpr int P = Bits == 4 ? 128 : 64;  // values per chunk
  const int64_t cols = w.cols;
  __m512 acc[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  // Rows of a tile are consecutive in memory: one pointer and a stride.
  const int64_t wstride = cols * Bits / 8, sstride = ln.groups;
  const uint8_t* w0 = reinterpret_cast<const uint8_t*>(row_words(w, r0));
  const uint8_t* pw = Pk ? pk.base + (r0 - pk.r0) * pk.stride : nullptr;
  if constexpr (!Pk) prefetch_scalars(w, r0, R, kPrefetchBytes / wstride + 1);
  const int64_t slabs = slab_end<Bits>(cols), full = cols / P * P;
  // Two slabs per iteration: the next slab's loads and transposes get scheduled among this one's
  // dependent vpdpbusd chains (+4-9% at 16 tokens).
#pragma GCC unroll 2
  for (int64_t c0 = 0; c0 < slabs; c0 += 512)
    slab<S, R, T, Pk>(acc, w0 + c0 / 2, wstride, scalars_at<S>(w.scales, r0 * ln.groups + (c0 >> ln.gshift)), sstride,
                     a.q + t0 * cols + c0, a.d + t0 * ln.blocks + c0 / kActBlock, cols, ln.blocks, ln,
                     Pk ? pw + c0 : nullptr, pk.stride);
  for (int64_t c0 = slabs; c0 < full; c0 += P)
    chunk<Bits, S, R, T, false>(acc, w0 + c0 * Bits / 8, wstride, scalars_at<S>(w.scales, r0 * ln.groups + (c0 >> ln.gshift)),
                                sstride, a.q + t0 * cols + c0, a.d + t0 * ln.blocks + c0 / kActBlock, cols, ln.blocks, P, ln);
  if (full < cols)
    chunk<Bits, S, R, T, true>(acc, w0 + full * Bits / 8, wstride, scalars_at<S>(w.scales, r0 * ln.groups + (full >> ln.gshift)),
                               sstride, a.q + t0 * cols + full, a.d + t0 * ln.blocks + full / kActBlock, cols, ln.blocks,
                               int(cols - full), ln);
  // Σ_g bias_g · gsum_g, 16 groups at a time: each row's biases converted once for the T tokens,
  // each token's group sums loaded once for the R rows (one (r, t) at a time cost 15% at 16 tokens).
  __m512 bacc[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) bacc[r][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < ln.groups; k += 16) {
    const __mmask16 km = first_lanes16(ln.groups - k);
    __m512 b[R];
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) b[r] = load_scalars<S>(w.biases, (r0 + r) * ln.groups + k, km);
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const __m512 g = _mm512_maskz_loadu_ps(km, a.gsum + (t0 + t) * ln.groups + k);
      PENSIEVE_UNROLL
      for (int r = 0; r < R; ++r) bacc[r][t] = _mm512_fmadd_ps(b[r], g, bacc[r][t]);
    }
  }
  if constexpr (R * T >= 8) {  // 8 reductions at a time (a last partial 8 padded with zeros)
    constexpr int N = (R * T + 7) / 8 * 8;
    __m512 v[N];
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t)
      PENSIEVE_UNROLL
      for (int r = 0; r < R; ++r) v[t * R + r] = _mm512_add_ps(acc[r][t], bacc[r][t]);
    PENSIEVE_UNROLL
    for (int i = R * T; i < N; ++i) v[i] = _mm512_setzero_ps();
    float out[N];
    PENSIEVE_UNROLL
    for (int i = 0; i < N; i += 8) hsum8(v + i, out + i);
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) __builtin_memcpy(y + (t0 + t) * ldy + r0, out + t * R, R * sizeof(float));
  } else {
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r)
      PENSIEVE_UNROLL
      for (int t = 0; t < T; ++t) y[(t0 + t) * ldy + r0 + r] = hsum(_mm512_add_ps(acc[r][t], bacc[r][t]));
  }
}

template <int Bits, DType S, int R, int T, bool P>
void tile_at(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r, int64_t r1, int64_t t0,
             const Lanes& ln, const Packed& pk) {
  if (r + R <= r1) {
    tile<Bits, S, R, T, P>(y, ldy, a, w, r, t0, ln, pk);
  } else {  // the last rows one by one: each output's arithmetic does not depend on R
    for (; r < r1; ++r) tile<Bits, S, 1, T, P>(y, ldy, a, w, r, t0, ln, pk);
  }
}

// One token (decode): one row per tile (two rows cost ~10% of batch 1's bandwidth), with the
// tile inlined into the loop (flatten: tile<1, 1> has other callers, and a call per row cost ~3%
// of decode).
template <int Bits, DType S>
__attribute__((flatten)) void one_token(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0,
                                        int64_t r1, int64_t t, const Lanes& ln) {
  for (int64_t r = r0; r < r1; ++r) tile<Bits, S, 1, 1, false>(y, ldy, a, w, r, t, ln, Packed{});
}

// Rows [p0, p1) against every token: tiles of T tokens, then one tile of the rest.
template <int Bits, DType S, int T, bool P>
void piece_tiles(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t p0, int64_t p1, const Lanes& ln,
                 const Packed& pk) {
  constexpr int R = kRows;
  int64_t t = 0;
  for (; t + T <= a.n; t += T)
    for (int64_t r = p0; r < p1; r += R) tile_at<Bits, S, R, T, P>(y, ldy, a, w, r, p1, t, ln, pk);
  const int64_t rest = a.n - t;  // 0 .. T - 1
  if (rest == 1 && !P) {
    one_token<Bits, S>(y, ldy, a, w, p0, p1, t, ln);
    return;
  }
  for (int64_t r = p0; r < p1 && rest > 0; r += R) {
    switch (rest) {
      case 7: if constexpr (T > 7) tile_at<Bits, S, R, 7, P>(y, ldy, a, w, r, p1, t, ln, pk); break;
      case 6: if constexpr (T > 6) tile_at<Bits, S, R, 6, P>(y, ldy, a, w, r, p1, t, ln, pk); break;
      case 5: if constexpr (T > 5) tile_at<Bits, S, R, 5, P>(y, ldy, a, w, r, p1, t, ln, pk); break;
      case 4: if constexpr (T > 4) tile_at<Bits, S, R, 4, P>(y, ldy, a, w, r, p1, t, ln, pk); break;
      case 3: if constexpr (T > 3) tile_at<Bits, S, R, 3, P>(y, ldy, a, w, r, p1, t, ln, pk); break;
      case 2: if constexpr (T > 2) tile_at<Bits, S, R, 2, P>(y, ldy, a, w, r, p1, t, ln, pk); break;
      case 1: if constexpr (P) tile_at<Bits, S, R, 1, P>(y, ldy, a, w, r, p1, t, ln, pk); break;
    }
  }
}

// Rows [r0, r1)'s slabs, transposed and split once (slab's layout, section m's even values at
// 128m and odd at 128m + 64), at out + (r - r0) * cols.
inline void repack_rows(uint8_t* out, const WeightMatrix& w, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* wr = reinterpret_cast<const uint8_t*>(row_words(w, r));
    uint8_t* o = out + (r - r0) * w.cols;
    for (int64_t c0 = 0; c0 < w.cols; c0 += 512) {
      __m512i wm[4];
      transposed_words(wr + c0 / 2, wm);
      PENSIEVE_UNROLL
      for (int m = 0; m < 4; ++m) {
        __m512i lo, hi;
        split_nibbles(wm[m], lo, hi);
        _mm512_store_si512(o + c0 + 128 * m, lo);
        _mm512_store_si512(o + c0 + 128 * m + 64, hi);
      }
    }
  }
}

// The calling thread's buffer of kPackBytes for repack_rows, allocated on its first use (nullptr
// if that failed: the caller then does without).
uint8_t* pack_buffer() {
  struct Buffer {
    uint8_t* p = nullptr;
    bool tried = false;
    ~Buffer() { free(p); }
  };
  thread_local Buffer b;
  if (!b.tried) {
    b.tried = true;
    b.p = static_cast<uint8_t*>(aligned_alloc(64, kPackBytes));
  }
  return b.p;
}

template <int Bits, DType S>
void matmul_impl(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  constexpr int V = Bits == 4 ? 8 : 4;  // values per int32 lane
  Lanes ln;
  ln.groups = groups_per_row(w);
  ln.group = w.group_size;
  ln.gshift = __builtin_ctz(unsigned(w.group_size));
  ln.blocks = w.cols / kActBlock;
  alignas(64) int32_t gi[16], bi[16];
  for (int i = 0; i < 16; ++i) {
    gi[i] = V * i / ln.group;
    bi[i] = V * i / kActBlock;
  }
  ln.group_idx = _mm512_load_si512(gi);
  ln.block_idx = _mm512_load_si512(bi);
  alignas(64) int32_t sg[16];
  for (int p = 0; p < 16; ++p) sg[p] = slab_block(p) * kActBlock / ln.group;
  ln.slab_group_idx = _mm512_load_si512(sg);
  ln.slab_group_mask = first_lanes16(512 / ln.group);
  // Token tiles outer, rows inner: a tile's activations (T x cols bytes, 12 KiB for 4 x 3072)
  // stay in L1 while a piece's rows (below) stream from L2 once per tile. (Rows outer re-read
  // every token of the block from L2 for each row: L2-bound.)
  constexpr int R = kRows, T = kTokens;
  if constexpr (Bits == 4) {
    uint8_t* pack = nullptr;
    if (slab_end<Bits>(w.cols) == w.cols && a.n >= kPackMinTokens && w.cols * kPackTokens <= kL1Act) pack = pack_buffer();
    if (pack) {
      const int64_t piece = kPackBytes / w.cols / R * R;  // >= 72 rows, as w.cols <= kL1Act / kPackTokens
      for (int64_t p0 = r0; p0 < r1; p0 += piece) {
        const int64_t p1 = imin(r1, p0 + piece);
        repack_rows(pack, w, p0, p1);
        piece_tiles<Bits, S, kPackTokens, true>(y, ldy, a, w, p0, p1, ln, Packed{pack, w.cols, p0});
      }
      return;
    }
  }
  // Rows in pieces of <= kL2Weights bytes: every token tile of a piece reads its weights from L2.
  const int64_t piece = imax(R, kL2Weights / (w.cols * Bits / 8) / R * R);
  for (int64_t p0 = r0; p0 < r1; p0 += piece) {
    const int64_t p1 = imin(r1, p0 + piece);
    if (w.cols * T <= kL1Act) piece_tiles<Bits, S, T, false>(y, ldy, a, w, p0, p1, ln, Packed{});
    else piece_tiles<Bits, S, T / 2, false>(y, ldy, a, w, p0, p1, ln, Packed{});  // longer rows: half the tokens, so they still fit L1
  }
}

// One block of 32 values: d, id = 1/d, q = x·id rounded half to even (the MXCSR default, as
// the reference's nearbyint/lrint), returned as two int32 vectors (values 0..15, 16..31).
inline float quantize_block(const float* x, __m512i& q0, __m512i& q1) {
  const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
  const float amax = hmax(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
  const float d = amax / 127.0f;
  const __m512 id = _mm512_set1_ps(d != 0 ? 1.0f / d : 0.0f);
  q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, id));
  q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, id));
  return d;
}

template <int Bits>
void quantize_impl(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  constexpr int P = Bits == 4 ? 128 : 64;
  const int64_t cols = a.cols, blocks = cols / kActBlock, groups = cols / a.group_size;
  const int bpg = a.group_size / kActBlock;
  // Even / odd int32 lanes of a pair of vectors (q4's two halves).
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t t = t0; t < t1; ++t) {
    const float* xs = x + t * ldx;
    int8_t* qd = a.q + t * cols;
    float gsum = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      __m512i q0, q1;
      const float d = quantize_block(xs + b * kActBlock, q0, q1);
      const int64_t c = b * kActBlock, c0 = c / P * P;
      const bool in_slab = c < slab_end<Bits>(cols);
      a.d[t * blocks + (in_slab ? b / 16 * 16 + slab_block(int(b % 16)) : b)] = d;
      gsum += d * float(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
      if ((b + 1) % bpg == 0) {
        a.gsum[t * groups + b / bpg] = gsum;
        gsum = 0;
      }
      if (in_slab) {
        // Slab layout: section (m, h) at 128m + 64h of the slab, this block (b % 16 within the slab) at lane
        // p = slab_block(b % 16) of it, values 8m + 2j + h at bytes 4p + j.
        const int64_t s0 = c / 512 * 512, p = slab_block(int(b % 16));
        alignas(16) int8_t ev[16], od[16];  // even / odd values of the block, in order
        _mm_store_si128(reinterpret_cast<__m128i*>(ev), _mm512_cvtsepi32_epi8(_mm512_permutex2var_epi32(q0, even, q1)));
        _mm_store_si128(reinterpret_cast<__m128i*>(od), _mm512_cvtsepi32_epi8(_mm512_permutex2var_epi32(q0, odd, q1)));
        for (int m = 0; m < 4; ++m) {
          __builtin_memcpy(qd + s0 + 128 * m + 4 * p, ev + 4 * m, 4);
          __builtin_memcpy(qd + s0 + 128 * m + 64 + 4 * p, od + 4 * m, 4);
        }
      } else if constexpr (Bits == 4) {
        const int64_t half = imin(P, cols - c0) / 2;
        const int64_t k = (c - c0) / 2;  // position of this block's first even value in its half
        _mm_storeu_si128(reinterpret_cast<__m128i*>(qd + c0 + k), _mm512_cvtsepi32_epi8(_mm512_permutex2var_epi32(q0, even, q1)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(qd + c0 + half + k), _mm512_cvtsepi32_epi8(_mm512_permutex2var_epi32(q0, odd, q1)));
      } else {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(qd + c), _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(qd + c + 16), _mm512_cvtsepi32_epi8(q1));
      }
    }
  }
}

}  // namespace

void quantize_act_avx512(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  if (a.bits == 4) quantize_impl<4>(a, x, ldx, t0, t1);
  else quantize_impl<8>(a, x, ldx, t0, t1);
}

void matmul_act8_avx512(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  dispatch_q(w, [&]<int Bits, DType S>() { matmul_impl<Bits, S>(y, ldy, a, w, r0, r1); });
}

}  // namespace pensieve
