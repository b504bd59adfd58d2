// Dense W (f32 / f16 / bf16) × f32 activations, AVX-512.
//
// Lanes: 16 consecutive columns per vector; each output (t, r) accumulates lane-wise FMAs over
// its columns in order (the last partial vector with masked loads), then sums the 16 lanes in
// a fixed order. Tiles of 4 rows × 4 tokens share the weight and activation loads; every
// output runs the same sequence whatever tile it is in.
#include "kernels/x86/simd_avx512.h"
#include "kernels/x86/x86.h"

namespace pensieve {
namespace {

template <DType D>
inline __m512 load_w(const void* base, int64_t i, __mmask16 m) { return load_scalars<D>(base, i, m); }

template <DType D, int R, int T>
void tile(float* y, int64_t ldy, const float* x, int64_t ldx, const WeightMatrix& w, const int64_t (&rows)[R],
          int n_rows, int64_t t0) {
  const int64_t cols = w.cols;
  __m512 acc[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t c = 0; c < cols; c += 16) {
    const __mmask16 m = first_lanes16(cols - c);
    __m512 wv[R];
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) wv[r] = load_w<D>(w.data, rows[r] * cols + c, m);
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + (t0 + t) * ldx + c);
      PENSIEVE_UNROLL
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < n_rows; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) y[(t0 + t) * ldy + rows[r]] = hsum(acc[r][t]);
}

template <DType D, int R, int T>
void tile_at(float* y, int64_t ldy, const float* x, int64_t ldx, const WeightMatrix& w, int64_t r, int64_t r1, int64_t t0) {
  int64_t rows[R];
  PENSIEVE_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = imin(r + i, r1 - 1);
  tile<D, R, T>(y, ldy, x, ldx, w, rows, int(imin(R, r1 - r)), t0);
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
      switch (b1 - t) {
        case 3: tile_at<D, R, 3>(y, ldy, x, ldx, w, r, r1, t); break;
        case 2: tile_at<D, R, 2>(y, ldy, x, ldx, w, r, r1, t); break;
        case 1: tile_at<D, R, 1>(y, ldy, x, ldx, w, r, r1, t); break;
        default: break;
      }
    }
  }
}

}  // namespace

void matmul_dense_avx512(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w,
                         int64_t r0, int64_t r1) {
  switch (w.dtype) {
    case DType::f16: return impl<DType::f16>(y, ldy, x, ldx, n, w, r0, r1);
    case DType::bf16: return impl<DType::bf16>(y, ldy, x, ldx, n, w, r0, r1);
    default: return impl<DType::f32>(y, ldy, x, ldx, n, w, r0, r1);
  }
}

}  // namespace pensieve
