// RMSNorm, AVX2. Lanes: 8 consecutive elements of a row; the sum of squares is lane-wise FMAs,
// a fixed-order lane sum, plus the elements past the last whole vector (scalar helper);
// y = (x · inv) · w as in the reference, tail by the scalar helper.
#include "kernels/ref/ref.h"
#include "kernels/x86/simd_avx2.h"
#include "kernels/x86/x86.h"

namespace pensieve {

void rmsnorm_avx2(float* y, const float* x, const float* w, int64_t dim, float eps, int64_t r0, int64_t r1) {
  const int64_t dv = dim / 8 * 8;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    __m256 ss = _mm256_setzero_ps();
    for (int64_t i = 0; i < dv; i += 8) {
      const __m256 v = _mm256_loadu_ps(xr + i);
      ss = _mm256_fmadd_ps(v, v, ss);
    }
    const float inv = 1.0f / sqrt_((hsum(ss) + sum_squares_ref(xr, dv, dim)) / float(dim) + eps);
    const __m256 iv = _mm256_set1_ps(inv);
    for (int64_t i = 0; i < dv; i += 8)
      _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), iv), _mm256_loadu_ps(w + i)));
    rmsnorm_scale_ref(yr, xr, w, inv, dv, dim);
  }
}

}  // namespace pensieve
