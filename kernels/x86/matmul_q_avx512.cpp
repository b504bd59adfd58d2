// Quantized W (q4 / q8) × f32 activations, the "exact" precision, AVX-512.
//
// Lanes. A 64-byte load of a row holds 16 words; lane i is word i, which holds V = 32/bits
// values: value V·i + j sits in bits j·bits of the word. So one chunk is P = 16·V values (128 for
// q4, 64 for q8). Value j of every lane is decoded by one AND with mask << (bits·j), which leaves
// q·2^(bits·j) as an exact integer below 2^28, converted exactly to f32; the last value (j = V−1)
// is a shift instead, so the sign bit never matters. prepare_act stores each chunk of x as V
// vectors X_j with X_j[i] = x[V·i + j] · 2^(−bits·j) (X_{V−1} unscaled): products are exact
// powers-of-two rescalings of q·x, so nothing is lost and no shift is needed per weight.
// A last chunk of m < P values (cols is a multiple of 32) uses L = m/V lanes (masked loads) and
// vectors X_j of L values.
//
// Per output (token t, row r) and chunk: dot = Σ_{even j} cvt(q_j) · X_j + Σ_{odd j} (two
// lane-wise FMA chains in j order); acc += dot ⊙ scale lanes (lane i gets the scale of the group holding its values). At the end
// y = Σ lanes of (acc + Σ_g bias_g · gsum_g), with the bias term vectorised over groups. Every
// output runs exactly this sequence whatever the tile it is computed in, so results do not
// depend on batch size, position in the batch or row split.
#include "kernels/x86/simd_avx512.h"
#include "kernels/x86/x86.h"

namespace pensieve {
namespace {

constexpr int64_t kL2Bytes = 256 * 1024;  // activation bytes per token block (half of a 1 MiB L2)
// Rows are contiguous: the call's weights are one stream, prefetched this far ahead (see
// matmul_act8_avx512.cpp for the measurements).
constexpr int64_t kPrefetchBytes = 16 * 1024;

template <int Bits>
constexpr float x_scale(int j) {  // 2^(−bits·j) for j < V − 1, else 1
  constexpr int V = 32 / Bits;
  return j == V - 1 ? 1.0f : 1.0f / float(1u << (Bits * j));
}

template <int Bits, int J>
inline __m512 decode(__m512i w) {
  constexpr int V = 32 / Bits;
  if constexpr (J == V - 1) return _mm512_cvtepi32_ps(_mm512_srli_epi32(w, Bits * J));
  else return _mm512_cvtepi32_ps(_mm512_and_si512(w, _mm512_set1_epi32(int(((1u << Bits) - 1) << (Bits * J)))));
}

// Per call: which group each lane of a chunk reads (lane i holds values V·i .. V·i+V−1 of the
// chunk, and a chunk starts on a group boundary or, for q8 with group 128, inside one group).
struct Groups {
  int64_t per_row;   // groups per row
  int size;          // group size
  int shift;         // log2(size): shifts, not divisions, in the chunk loop
  __m512i lane_idx;  // lane i -> group index within the chunk
};

// dot[j % 2] += cvt(q_j) · X_j for j = J .. V−1: two chains per output, so even a 4 x 1 tile
// keeps 8 FMA chains in flight.
template <int Bits, int R, int T, bool Last, int J = 0>
PENSIEVE_INLINE void chunk_dots(__m512 (&dot)[2][R][T], const __m512i (&wv)[R], const float* x, int64_t cols, int L, __mmask16 lm) {
  if constexpr (J < 32 / Bits) {
    __m512 xv[T];
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) xv[t] = Last ? _mm512_maskz_loadu_ps(lm, x + t * cols + J * L) : _mm512_loadu_ps(x + t * cols + J * 16);
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m512 wf = decode<Bits, J>(wv[r]);
      PENSIEVE_UNROLL
      for (int t = 0; t < T; ++t) dot[J % 2][r][t] = _mm512_fmadd_ps(wf, xv[t], dot[J % 2][r][t]);
    }
    chunk_dots<Bits, R, T, Last, J + 1>(dot, wv, x, cols, L, lm);
  }
}

// One chunk (P values, or the last m < P) of R consecutive rows against T tokens.
template <int Bits, DType S, int R, int T, bool Last>
PENSIEVE_INLINE void chunk(__m512 (&acc)[R][T], const uint32_t* w0, int64_t wstride, const void* scales, int64_t sstride,
                  const float* x, int64_t cols, int m, const Groups& g) {
  constexpr int V = 32 / Bits, P = 16 * V;
  const int L = (Last ? m : P) / V;
  const __mmask16 lm = first_lanes16(L);
  const __mmask16 gm = first_lanes16(imax(1, (Last ? m : P) >> g.shift));
  __m512i wv[R];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    const uint32_t* wr = w0 + r * wstride;
    _mm_prefetch(reinterpret_cast<const char*>(wr) + kPrefetchBytes, _MM_HINT_T1);
    wv[r] = Last ? _mm512_maskz_loadu_epi32(lm, wr) : _mm512_loadu_si512(wr);
  }
  __m512 dot[2][R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) dot[0][r][t] = dot[1][r][t] = _mm512_setzero_ps();
  chunk_dots<Bits, R, T, Last>(dot, wv, x, cols, L, lm);
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    const __m512 s = _mm512_permutexvar_ps(g.lane_idx, load_scalars<S>(scales, r * sstride, gm));
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_fmadd_ps(_mm512_add_ps(dot[0][r][t], dot[1][r][t]), s, acc[r][t]);
  }
}

// Outputs y[t0 + t, r0 + r] for t < T, r < R.
template <int Bits, DType S, int R, int T>
void tile(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t t0, const Groups& g) {
  constexpr int V = 32 / Bits, P = 16 * V;
  const int64_t cols = w.cols;
  __m512 acc[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const uint32_t* w0 = row_words(w, r0);
  const int64_t wstride = cols / V, full = cols / P * P;
  const float* xt = a.x + t0 * cols;
  // Decode streams the rows once: their scales and biases too (batch 1 +20-45% on Zen 5). Token
  // tiles of a batch re-read rows from L2, where the prefetches cost 10% at 16 tokens.
  if constexpr (T == 1) prefetch_scalars(w, r0, R, kPrefetchBytes / (wstride * 4) + 1);
  for (int64_t c0 = 0; c0 < full; c0 += P)
    chunk<Bits, S, R, T, false>(acc, w0 + c0 / V, wstride, scalars_at<S>(w.scales, r0 * g.per_row + (c0 >> g.shift)),
                                g.per_row, xt + c0, cols, P, g);
  if (full < cols)
    chunk<Bits, S, R, T, true>(acc, w0 + full / V, wstride, scalars_at<S>(w.scales, r0 * g.per_row + (full >> g.shift)),
                               g.per_row, xt + full, cols, int(cols - full), g);
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      __m512 bacc = _mm512_setzero_ps();
      const float* gs = a.gsum + (t0 + t) * g.per_row;
      for (int64_t k = 0; k < g.per_row; k += 16) {
        const __mmask16 km = first_lanes16(g.per_row - k);
        bacc = _mm512_fmadd_ps(load_scalars<S>(w.biases, (r0 + r) * g.per_row + k, km), _mm512_maskz_loadu_ps(km, gs + k), bacc);
      }
      y[(t0 + t) * ldy + r0 + r] = hsum(_mm512_add_ps(acc[r][t], bacc));
    }
  }
}

template <int Bits, DType S, int R, int T>
void tile_at(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r, int64_t r1, int64_t t0,
             const Groups& g) {
  if (r + R <= r1) {
    tile<Bits, S, R, T>(y, ldy, a, w, r, t0, g);
  } else {  // the last rows one by one: each output's arithmetic does not depend on R
    for (; r < r1; ++r) tile<Bits, S, 1, T>(y, ldy, a, w, r, t0, g);
  }
}

template <int Bits, DType S>
void matmul_q_impl(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  constexpr int V = 32 / Bits;
  Groups g;
  g.per_row = groups_per_row(w);
  g.size = w.group_size;
  g.shift = __builtin_ctz(unsigned(w.group_size));
  alignas(64) int32_t idx[16];
  for (int i = 0; i < 16; ++i) idx[i] = V * i / g.size;
  g.lane_idx = _mm512_load_si512(idx);
  if (a.n == 1) {  // decode: 4 rows x 1 token (8 FMA chains)
    for (int64_t r = r0; r < r1; r += 4) tile_at<Bits, S, 4, 1>(y, ldy, a, w, r, r1, 0, g);
    return;
  }
  // Batches: token tiles outer (their activations stay in L1), rows inner (the call's rows
  // stream from L2 once per tile); 1 row x 4 tokens shares each decoded weight vector 4 times.
  int64_t t = 0;
  for (; t + 4 <= a.n; t += 4)
    for (int64_t r = r0; r < r1; ++r) tile<Bits, S, 1, 4>(y, ldy, a, w, r, t, g);
  for (int64_t r = r0; r < r1 && t < a.n; ++r) {
    switch (a.n - t) {
      case 3: tile<Bits, S, 1, 3>(y, ldy, a, w, r, t, g); break;
      case 2: tile<Bits, S, 1, 2>(y, ldy, a, w, r, t, g); break;
      default: tile<Bits, S, 1, 1>(y, ldy, a, w, r, t, g); break;
    }
  }
}

template <int Bits>
void prepare_impl(ActF32& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  constexpr int V = 32 / Bits, P = 16 * V;
  const int64_t cols = a.cols, groups = cols / a.group_size;
  for (int64_t t = t0; t < t1; ++t) {
    const float* xs = x + t * ldx;
    float* xd = a.x + t * cols;
    for (int64_t c0 = 0; c0 < cols; c0 += P) {
      const int L = int(imin(P, cols - c0)) / V;
      for (int i = 0; i < L; ++i)
        for (int j = 0; j < V; ++j) xd[c0 + j * L + i] = xs[c0 + V * i + j] * x_scale<Bits>(j);
    }
    for (int64_t gi = 0; gi < groups; ++gi) {  // group sizes are multiples of 16
      __m512 s = _mm512_setzero_ps();
      for (int64_t c = gi * a.group_size; c < (gi + 1) * a.group_size; c += 16) s = _mm512_add_ps(s, _mm512_loadu_ps(xs + c));
      a.gsum[t * groups + gi] = hsum(s);
    }
  }
}

}  // namespace

void prepare_act_avx512(ActF32& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  if (a.bits == 4) prepare_impl<4>(a, x, ldx, t0, t1);
  else prepare_impl<8>(a, x, ldx, t0, t1);
}

void matmul_q_avx512(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  dispatch_q(w, [&]<int Bits, DType S>() { matmul_q_impl<Bits, S>(y, ldy, a, w, r0, r1); });
}

}  // namespace pensieve
