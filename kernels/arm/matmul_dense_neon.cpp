// Dense W (f32 / f16 / bf16) × f32 activations, NEON. Lanes: 4 consecutive columns; each
// output accumulates lane-wise FMAs over its whole vectors, sums the lanes, then adds the
// columns past the last whole vector (scalar helper). Tiles of 4 rows × 4 tokens share loads.
#include "kernels/arm/arm.h"
#include "kernels/arm/simd_neon.h"
#include "kernels/ref/ref.h"

namespace pensieve {
namespace {

template <DType D, int R, int T>
void tile(float* y, int64_t ldy, const float* x, int64_t ldx, const WeightMatrix& w, int64_t r0, int64_t t0) {
  const int64_t cols = w.cols, cv = cols / 4 * 4;
  float32x4_t acc[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0);
  for (int64_t c = 0; c < cv; c += 4) {
    float32x4_t wv[R];
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) wv[r] = load4<D>(w.data, (r0 + r) * cols + c);
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const float32x4_t xv = vld1q_f32(x + (t0 + t) * ldx + c);
      PENSIEVE_UNROLL
      for (int r = 0; r < R; ++r) acc[r][t] = vfmaq_f32(acc[r][t], wv[r], xv);
    }
  }
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    const void* wr = static_cast<const char*>(w.data) + (r0 + r) * cols * scalar_bytes(D);
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t)
      y[(t0 + t) * ldy + r0 + r] = hsum(acc[r][t]) + dot_dense_ref(wr, D, x + (t0 + t) * ldx, cv, cols);
  }
}

template <DType D, int R, int T>
void tile_at(float* y, int64_t ldy, const float* x, int64_t ldx, const WeightMatrix& w, int64_t r, int64_t r1, int64_t t0) {
  if (r + R <= r1) {
    tile<D, R, T>(y, ldy, x, ldx, w, r, t0);
  } else {  // the last rows one by one: each output's arithmetic does not depend on R
    for (; r < r1; ++r) tile<D, 1, T>(y, ldy, x, ldx, w, r, t0);
  }
}

template <DType D>
void impl(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w, int64_t r0, int64_t r1) {
  constexpr int R = 4, T = 4;
  const int64_t block = imax(T, 256 * 1024 / (w.cols * 4) / T * T);  // tokens kept in L2
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t b1 = imin(n, b0 + block);
    for (int64_t r = r0; r < r1; r += R) {
      int64_t t = b0;
      for (; t + T <= b1; t += T) tile_at<D, R, T>(y, ldy, x, ldx, w, r, r1, t);
      for (; t < b1; ++t) tile_at<D, R, 1>(y, ldy, x, ldx, w, r, r1, t);
    }
  }
}

}  // namespace

void matmul_dense_neon(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w,
                       int64_t r0, int64_t r1) {
  switch (w.dtype) {
    case DType::f16: return impl<DType::f16>(y, ldy, x, ldx, n, w, r0, r1);
    case DType::bf16: return impl<DType::bf16>(y, ldy, x, ldx, n, w, r0, r1);
    default: return impl<DType::f32>(y, ldy, x, ldx, n, w, r0, r1);
  }
}

}  // namespace pensieve
