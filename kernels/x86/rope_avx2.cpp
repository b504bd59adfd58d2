// Rotate-half RoPE, AVX2. Lanes: 8 consecutive i of a head's first half, paired with the same
// lanes at i + half; separate multiplies and a subtract/add as the reference rounds (bitwise
// equal); the i past the last whole vector go to the scalar helper.
#include "kernels/ref/ref.h"
#include "kernels/x86/simd_avx2.h"
#include "kernels/x86/x86.h"

namespace pensieve {

void rope_avx2(float* x, int64_t stride, int n_heads, int head_dim, int rot_dim, const float* cos, const float* sin,
               int64_t t0, int64_t t1) {
  const int half = rot_dim / 2, hv = half / 8 * 8;
  for (int64_t t = t0; t < t1; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + t * stride + int64_t(h) * head_dim;
      for (int i = 0; i < hv; i += 8) {
        const __m256 a = _mm256_loadu_ps(v + i), b = _mm256_loadu_ps(v + i + half);
        const __m256 cv = _mm256_loadu_ps(c + i), sv = _mm256_loadu_ps(s + i);
        _mm256_storeu_ps(v + i, _mm256_sub_ps(_mm256_mul_ps(a, cv), _mm256_mul_ps(b, sv)));
        _mm256_storeu_ps(v + i + half, _mm256_add_ps(_mm256_mul_ps(b, cv), _mm256_mul_ps(a, sv)));
      }
      rope_pairs_ref(v, c, s, half, hv, half);
    }
  }
}

}  // namespace pensieve
