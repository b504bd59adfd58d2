// The dense matmul shared by the AVX2 and NEON tables (x86/matmul_dense_avx2.cpp,
// arm/matmul_dense_neon.cpp): dense W (f32 / f16 / bf16) × f32 activations.
//
// Lanes: W consecutive columns per vector (Vec, as in kernels/attention_tiled.h, plus zero and
// load_scalars<D>); each output (t, r) accumulates lane-wise FMAs over its whole vectors in order,
// sums the lanes in a fixed order, then adds the columns past the last whole vector (scalar
// helper, in order). Tiles of R rows × T tokens share the loads; every output runs the same
// sequence whatever tile it is in. Internal linkage (isa_helpers.h says why).
#pragma once

#include "kernels/isa_helpers.h"
#include "kernels/ref/ref.h"

namespace pensieve {
namespace {

template <class Vec, DType D, int R, int T>
void dense_tile(float* y, int64_t ldy, const float* x, int64_t ldx, const WeightMatrix& w, int64_t r0, int64_t t0) {
  using V = typename Vec::V;
  const int64_t cols = w.cols, cv = cols / Vec::W * Vec::W;
  V acc[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) acc[r][t] = Vec::zero();
  for (int64_t c = 0; c < cv; c += Vec::W) {
    V wv[R];
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) wv[r] = Vec::template load_scalars<D>(w.data, (r0 + r) * cols + c);
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const V xv = Vec::loadu(x + (t0 + t) * ldx + c);
      PENSIEVE_UNROLL
      for (int r = 0; r < R; ++r) acc[r][t] = Vec::fma(wv[r], xv, acc[r][t]);
    }
  }
  const int64_t es = scalar_bytes(D);
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    const void* wr = static_cast<const char*>(w.data) + (r0 + r) * cols * es;
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t)
      y[(t0 + t) * ldy + r0 + r] = Vec::hsum(acc[r][t]) + dot_dense_ref(wr, D, x + (t0 + t) * ldx, cv, cols);
  }
}

template <class Vec, DType D, int R, int T>
void dense_tile_at(float* y, int64_t ldy, const float* x, int64_t ldx, const WeightMatrix& w, int64_t r, int64_t r1,
                   int64_t t0) {
  if (r + R <= r1) {
    dense_tile<Vec, D, R, T>(y, ldy, x, ldx, w, r, t0);
  } else {  // the last rows one by one: each output's arithmetic does not depend on R
    for (; r < r1; ++r) dense_tile<Vec, D, 1, T>(y, ldy, x, ldx, w, r, t0);
  }
}

template <class Vec, int R, int T, DType D>
void dense_impl(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w, int64_t r0,
                int64_t r1) {
  const int64_t block = imax(T, 256 * 1024 / (w.cols * 4) / T * T);  // tokens kept in L2
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t b1 = imin(n, b0 + block);
    for (int64_t r = r0; r < r1; r += R) {
      int64_t t = b0;
      for (; t + T <= b1; t += T) dense_tile_at<Vec, D, R, T>(y, ldy, x, ldx, w, r, r1, t);
      for (; t < b1; ++t) dense_tile_at<Vec, D, R, 1>(y, ldy, x, ldx, w, r, r1, t);
    }
  }
}

// Tiles of R rows × T tokens (per ISA: as many accumulators as its registers hold).
template <class Vec, int R, int T>
void matmul_dense_tiled(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w,
                        int64_t r0, int64_t r1) {
  switch (w.dtype) {
    case DType::f16: return dense_impl<Vec, R, T, DType::f16>(y, ldy, x, ldx, n, w, r0, r1);
    case DType::bf16: return dense_impl<Vec, R, T, DType::bf16>(y, ldy, x, ldx, n, w, r0, r1);
    default: return dense_impl<Vec, R, T, DType::f32>(y, ldy, x, ldx, n, w, r0, r1);
  }
}

}  // namespace
}  // namespace pensieve
