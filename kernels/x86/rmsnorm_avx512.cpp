// RMSNorm, AVX-512. Lanes: 16 consecutive elements of a row; the sum of squares is lane-wise
// FMAs (last partial vector masked) then a fixed-order lane sum; y = (x · inv) · w as in the
// reference, so after the sum every element rounds exactly as there.
#include "kernels/x86/simd_avx512.h"
#include "kernels/x86/x86.h"

namespace pensieve {

void rmsnorm_avx512(float* y, const float* x, const float* w, int64_t dim, float eps, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    __m512 ss = _mm512_setzero_ps();
    for (int64_t i = 0; i < dim; i += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(first_lanes16(dim - i), xr + i);
      ss = _mm512_fmadd_ps(v, v, ss);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / sqrt_(hsum(ss) / float(dim) + eps));
    for (int64_t i = 0; i < dim; i += 16) {
      const __mmask16 m = first_lanes16(dim - i);
      const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + i), inv);
      _mm512_mask_storeu_ps(yr + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i)));
    }
  }
}

}  // namespace pensieve
