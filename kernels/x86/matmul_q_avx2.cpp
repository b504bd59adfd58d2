// Quantized W (q4 / q8) × f32 activations, the "exact" precision, AVX2.
//
// As matmul_q_avx512.cpp with 8 lanes: a 32-byte load holds 8 words, lane i = word i, which
// holds V = 32/bits values (value V·i + j in bits j·bits). One chunk is P = 8·V values (64 for
// q4, 32 for q8). Value j of every lane is one AND (q·2^(bits·j), exact) or, for the last, a
// shift; prepare_act stores each chunk as V vectors X_j[i] = x[V·i + j] · 2^(−bits·j) (the last
// unscaled). A last q4 chunk of 32 values uses 4 lanes (16-byte loads, upper lanes zero) and
// vectors X_j of 4 values.
//
// Per output and chunk: dot = Σ_j cvt(q_j) · X_j, acc += dot ⊙ scale lanes; at the end
// y = Σ lanes(acc) + Σ_g bias_g · gsum_g (8 groups per vector, the rest by the scalar helper).
#include "kernels/ref/ref.h"
#include "kernels/x86/simd_avx2.h"
#include "kernels/x86/x86.h"

namespace pensieve {
namespace {

// Activation bytes per token block: small enough to stay in L1 while the call's rows (<= 256,
// ~400 KiB of q4) stream from L2 once per block; larger blocks made batches L2-bound on AVX-512.
constexpr int64_t kL2Bytes = 32 * 1024;

template <int Bits>
constexpr float x_scale(int j) {
  constexpr int V = 32 / Bits;
  return j == V - 1 ? 1.0f : 1.0f / float(1u << (Bits * j));
}

template <int Bits, int J>
inline __m256 decode(__m256i w) {
  constexpr int V = 32 / Bits;
  if constexpr (J == V - 1) return _mm256_cvtepi32_ps(_mm256_srli_epi32(w, Bits * J));
  else return _mm256_cvtepi32_ps(_mm256_and_si256(w, _mm256_set1_epi32(int(((1u << Bits) - 1) << (Bits * J)))));
}

// L lanes (8, or 4 for a last q4 chunk) of 32-bit values at p; upper lanes zero.
inline __m256i load_words(const uint32_t* p, int L) {
  return L == 8 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load_x(const float* p, int L) { return L == 8 ? _mm256_loadu_ps(p) : _mm256_zextps128_ps256(_mm_loadu_ps(p)); }

template <int Bits, int R, int T, int J = 0>
PENSIEVE_INLINE void chunk_dots(__m256 (&dot)[R][T], const __m256i (&wv)[R], const float* x, int64_t cols, int L) {
  if constexpr (J < 32 / Bits) {
    __m256 xv[T];
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) xv[t] = load_x(x + t * cols + J * L, L);
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m256 wf = decode<Bits, J>(wv[r]);
      PENSIEVE_UNROLL
      for (int t = 0; t < T; ++t) dot[r][t] = _mm256_fmadd_ps(wf, xv[t], dot[r][t]);
    }
    chunk_dots<Bits, R, T, J + 1>(dot, wv, x, cols, L);
  }
}

// Scale lanes of one chunk of row r: lane i holds values V·i.. of the chunk, in group
// (V·i) / G; only q4 with G = 32 has two groups in a (full) chunk.
template <int Bits, DType S>
inline __m256 scale_lanes(const WeightMatrix& w, int64_t r, int64_t c0, int L) {
  const int64_t g = r * groups_per_row(w) + c0 / w.group_size;
  if (Bits == 4 && w.group_size == 32 && L == 8)
    return _mm256_set_m128(_mm_set1_ps(load1<S>(w.scales, g + 1)), _mm_set1_ps(load1<S>(w.scales, g)));
  return _mm256_set1_ps(load1<S>(w.scales, g));
}

template <int Bits, DType S, int R, int T>
void tile(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t t0) {
  constexpr int V = 32 / Bits, P = 8 * V;
  const int64_t cols = w.cols, groups = groups_per_row(w);
  __m256 acc[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  const float* xt = a.x + t0 * cols;
  for (int64_t c0 = 0; c0 < cols; c0 += P) {
    const int L = int(imin(P, cols - c0)) / V;
    __m256i wv[R];
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) {
      const uint32_t* wr = row_words(w, r0 + r) + c0 / V;
      _mm_prefetch(reinterpret_cast<const char*>(wr) + 16 * 1024, _MM_HINT_T0);  // rows are one stream
      wv[r] = load_words(wr, L);
    }
    __m256 dot[R][T];
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r)
      PENSIEVE_UNROLL
      for (int t = 0; t < T; ++t) dot[r][t] = _mm256_setzero_ps();
    chunk_dots<Bits, R, T>(dot, wv, xt + c0, cols, L);
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m256 s = scale_lanes<Bits, S>(w, r0 + r, c0, L);
      PENSIEVE_UNROLL
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(dot[r][t], s, acc[r][t]);
    }
  }
  const int64_t gv = groups / 8 * 8;
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    const void* b = static_cast<const char*>(w.biases) + (r0 + r) * groups * scalar_bytes(S);
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const float* gs = a.gsum + (t0 + t) * groups;
      __m256 bacc = _mm256_setzero_ps();
      for (int64_t k = 0; k < gv; k += 8) bacc = _mm256_fmadd_ps(load8<S>(b, k), _mm256_loadu_ps(gs + k), bacc);
      y[(t0 + t) * ldy + r0 + r] = hsum(_mm256_add_ps(acc[r][t], bacc)) + dot_dense_ref(b, S, gs, gv, groups);
    }
  }
}

template <int Bits, DType S, int R, int T>
void tile_at(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r, int64_t r1, int64_t t0) {
  if (r + R <= r1) {
    tile<Bits, S, R, T>(y, ldy, a, w, r, t0);
  } else {  // the last rows one by one: each output's arithmetic does not depend on R
    for (; r < r1; ++r) tile<Bits, S, 1, T>(y, ldy, a, w, r, t0);
  }
}

template <int Bits, DType S>
void matmul_q_impl(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  if (a.n == 1) {
    for (int64_t r = r0; r < r1; r += 4) tile_at<Bits, S, 4, 1>(y, ldy, a, w, r, r1, 0);
    return;
  }
  const int64_t block = imax(2, kL2Bytes / (w.cols * 4) / 2 * 2);
  for (int64_t b0 = 0; b0 < a.n; b0 += block) {
    const int64_t b1 = imin(a.n, b0 + block);
    for (int64_t r = r0; r < r1; r += 2) {
      int64_t t = b0;
      for (; t + 2 <= b1; t += 2) tile_at<Bits, S, 2, 2>(y, ldy, a, w, r, r1, t);
      if (t < b1) tile_at<Bits, S, 2, 1>(y, ldy, a, w, r, r1, t);
    }
  }
}

template <int Bits>
void prepare_impl(ActF32& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  constexpr int V = 32 / Bits, P = 8 * V;
  const int64_t cols = a.cols, groups = cols / a.group_size;
  for (int64_t t = t0; t < t1; ++t) {
    const float* xs = x + t * ldx;
    float* xd = a.x + t * cols;
    for (int64_t c0 = 0; c0 < cols; c0 += P) {
      const int L = int(imin(P, cols - c0)) / V;
      for (int i = 0; i < L; ++i)
        for (int j = 0; j < V; ++j) xd[c0 + j * L + i] = xs[c0 + V * i + j] * x_scale<Bits>(j);
    }
    for (int64_t gi = 0; gi < groups; ++gi) {  // group sizes are multiples of 8
      __m256 s = _mm256_setzero_ps();
      for (int64_t c = gi * a.group_size; c < (gi + 1) * a.group_size; c += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(xs + c));
      a.gsum[t * groups + gi] = hsum(s);
    }
  }
}

}  // namespace

void prepare_act_avx2(ActF32& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  if (a.bits == 4) prepare_impl<4>(a, x, ldx, t0, t1);
  else prepare_impl<8>(a, x, ldx, t0, t1);
}

void matmul_q_avx2(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  dispatch_q(w, [&]<int Bits, DType S>() { matmul_q_impl<Bits, S>(y, ldy, a, w, r0, r1); });
}

}  // namespace pensieve
