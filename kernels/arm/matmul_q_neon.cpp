// Quantized W (q4 / q8) × f32 activations, the "exact" precision, NEON.
//
// As matmul_q_avx512.cpp with 4 lanes: a 16-byte load holds 4 words, lane i = word i, which
// holds V = 32/bits values (value V·i + j in bits j·bits). One chunk is P = 4·V values (32 for
// q4, 16 for q8), always inside one weight group (groups are >= 32), and cols is a multiple of
// 32, so there is no partial chunk. Value j of every lane is one AND (q·2^(bits·j), exact in
// f32) or, for the last, a shift; prepare_act stores each chunk as V vectors
// X_j[i] = x[V·i + j] · 2^(−bits·j) (the last unscaled).
// Per output and chunk: dot = Σ_j cvt(q_j) · X_j, acc += dot · scale; at the end
// y = Σ lanes(acc) + Σ_g bias_g · gsum_g (4 groups per vector, the rest by the scalar helper).
#include "kernels/arm/arm.h"
#include "kernels/arm/simd_neon.h"
#include "kernels/ref/ref.h"

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
inline float32x4_t decode(uint32x4_t w) {
  constexpr int V = 32 / Bits;
  if constexpr (J == V - 1) return vcvtq_f32_u32(vshrq_n_u32(w, Bits * J));
  else return vcvtq_f32_u32(vandq_u32(w, vdupq_n_u32(((1u << Bits) - 1) << (Bits * J))));
}

template <int Bits, int R, int T, int J = 0>
PENSIEVE_INLINE void chunk_dots(float32x4_t (&dot)[R][T], const uint32x4_t (&wv)[R], const float* x, int64_t cols) {
  if constexpr (J < 32 / Bits) {
    float32x4_t xv[T];
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) xv[t] = vld1q_f32(x + t * cols + J * 4);
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) {
      const float32x4_t wf = decode<Bits, J>(wv[r]);
      PENSIEVE_UNROLL
      for (int t = 0; t < T; ++t) dot[r][t] = vfmaq_f32(dot[r][t], wf, xv[t]);
    }
    chunk_dots<Bits, R, T, J + 1>(dot, wv, x, cols);
  }
}

template <int Bits, DType S, int R, int T>
void tile(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t t0) {
  constexpr int V = 32 / Bits, P = 4 * V;
  const int64_t cols = w.cols, groups = groups_per_row(w);
  const int gshift = __builtin_ctz(unsigned(w.group_size));
  float32x4_t acc[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0);
  const float* xt = a.x + t0 * cols;
  for (int64_t c0 = 0; c0 < cols; c0 += P) {
    uint32x4_t wv[R];
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) {
      const uint32_t* wr = row_words(w, r0 + r) + c0 / V;
      __builtin_prefetch(reinterpret_cast<const char*>(wr) + 16 * 1024);  // rows are one stream
      wv[r] = vld1q_u32(wr);
    }
    float32x4_t dot[R][T];
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r)
      PENSIEVE_UNROLL
      for (int t = 0; t < T; ++t) dot[r][t] = vdupq_n_f32(0);
    chunk_dots<Bits, R, T>(dot, wv, xt + c0, cols);
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) {
      const float s = load1<S>(w.scales, (r0 + r) * groups + (c0 >> gshift));
      PENSIEVE_UNROLL
      for (int t = 0; t < T; ++t) acc[r][t] = vfmaq_n_f32(acc[r][t], dot[r][t], s);
    }
  }
  const int64_t gv = groups / 4 * 4;
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    const void* b = static_cast<const char*>(w.biases) + (r0 + r) * groups * scalar_bytes(S);
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const float* gs = a.gsum + (t0 + t) * groups;
      float32x4_t bacc = vdupq_n_f32(0);
      for (int64_t k = 0; k < gv; k += 4) bacc = vfmaq_f32(bacc, load4<S>(b, k), vld1q_f32(gs + k));
      y[(t0 + t) * ldy + r0 + r] = hsum(vaddq_f32(acc[r][t], bacc)) + dot_dense_ref(b, S, gs, gv, groups);
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
    for (int64_t r = r0; r < r1; r += 8) tile_at<Bits, S, 8, 1>(y, ldy, a, w, r, r1, 0);
    return;
  }
  const int64_t block = imax(2, kL2Bytes / (w.cols * 4) / 2 * 2);
  for (int64_t b0 = 0; b0 < a.n; b0 += block) {
    const int64_t b1 = imin(a.n, b0 + block);
    for (int64_t r = r0; r < r1; r += 4) {
      int64_t t = b0;
      for (; t + 2 <= b1; t += 2) tile_at<Bits, S, 4, 2>(y, ldy, a, w, r, r1, t);
      if (t < b1) tile_at<Bits, S, 4, 1>(y, ldy, a, w, r, r1, t);
    }
  }
}

template <int Bits>
void prepare_impl(ActF32& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  constexpr int V = 32 / Bits, P = 4 * V;
  const int64_t cols = a.cols, groups = cols / a.group_size;
  for (int64_t t = t0; t < t1; ++t) {
    const float* xs = x + t * ldx;
    float* xd = a.x + t * cols;
    for (int64_t c0 = 0; c0 < cols; c0 += P)
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < V; ++j) xd[c0 + j * 4 + i] = xs[c0 + V * i + j] * x_scale<Bits>(j);
    for (int64_t gi = 0; gi < groups; ++gi) {  // group sizes are multiples of 4
      float32x4_t s = vdupq_n_f32(0);
      for (int64_t c = gi * a.group_size; c < (gi + 1) * a.group_size; c += 4) s = vaddq_f32(s, vld1q_f32(xs + c));
      a.gsum[t * groups + gi] = hsum(s);
    }
  }
}

}  // namespace

void prepare_act_neon(ActF32& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  if (a.bits == 4) prepare_impl<4>(a, x, ldx, t0, t1);
  else prepare_impl<8>(a, x, ldx, t0, t1);
}

void matmul_q_neon(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  dispatch_q(w, [&]<int Bits, DType S>() { matmul_q_impl<Bits, S>(y, ldy, a, w, r0, r1); });
}

}  // namespace pensieve
