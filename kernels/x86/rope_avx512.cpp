// Rotate-half RoPE, AVX-512. Lanes: 16 consecutive i of a head's first half, paired with the
// same lanes at i + half. Separate multiplies and a subtract/add (no FMA), as the reference
// rounds, so results are bitwise the reference's.
#include "kernels/x86/simd_avx512.h"
#include "kernels/x86/x86.h"

namespace pensieve {

void rope_avx512(float* x, int64_t stride, int n_heads, int head_dim, int rot_dim, const float* cos, const float* sin,
                 int64_t t0, int64_t t1) {
  const int half = rot_dim / 2;
  for (int64_t t = t0; t < t1; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + t * stride + int64_t(h) * head_dim;
      for (int i = 0; i < half; i += 16) {
        const __mmask16 m = first_lanes16(half - i);
        const __m512 a = _mm512_maskz_loadu_ps(m, v + i), b = _mm512_maskz_loadu_ps(m, v + i + half);
        const __m512 cv = _mm512_maskz_loadu_ps(m, c + i), sv = _mm512_maskz_loadu_ps(m, s + i);
        _mm512_mask_storeu_ps(v + i, m, _mm512_sub_ps(_mm512_mul_ps(a, cv), _mm512_mul_ps(b, sv)));
        _mm512_mask_storeu_ps(v + i + half, m, _mm512_add_ps(_mm512_mul_ps(b, cv), _mm512_mul_ps(a, sv)));
      }
    }
  }
}

}  // namespace pensieve
