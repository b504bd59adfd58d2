// Dense W (f32 / f16 / bf16) × f32 activations, AVX2.
//
// Lanes: 8 consecutive columns per vector; each output (t, r) accumulates lane-wise FMAs over
// its whole vectors in order, sums the lanes in a fixed order, then adds the columns past the
// last whole vector (scalar helper, in order). Tiles of 2 rows × 4 tokens share the loads;
// every output runs the same sequence whatever tile it is in.
#include "kernels/ref/ref.h"
#include "kernels/x86/simd_avx2.h"
#include "kernels/x86/x86.h"

namespace pensieve {
namespace {

template <DType D, int R, int T>
void tile(float* y, int64_t ldy, const float* x, int64_t ldx, const WeightMatrix& w, int64_t r0, int64_t t0) {
  const int64_t cols = w.cols, cv = cols / 8 * 8;
  __m256 acc[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t c = 0; c < cv; c += 8) {
    __m256 wv[R];
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) wv[r] = load8<D>(w.data, (r0 + r) * cols + c);
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_loadu_ps(x + (t0 + t) * ldx + c);
      PENSIEVE_UNROLL
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  const int64_t es = scalar_bytes(D);
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    const void* wr = static_cast<const char*>(w.data) + (r0 + r) * cols * es;
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
  constexpr int R = 2, T = 4;
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

void matmul_dense_avx2(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w,
                       int64_t r0, int64_t r1) {
  switch (w.dtype) {
    case DType::f16: return impl<DType::f16>(y, ldy, x, ldx, n, w, r0, r1);
    case DType::bf16: return impl<DType::bf16>(y, ldy, x, ldx, n, w, r0, r1);
    default: return impl<DType::f32>(y, ldy, x, ldx, n, w, r0, r1);
  }
}

}  // namespace pensieve
