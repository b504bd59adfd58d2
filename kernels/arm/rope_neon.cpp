// Rotate-half RoPE, NEON. Lanes: 4 consecutive i of a head's first half, paired with the same
// lanes at i + half; separate multiplies and a subtract/add as the reference rounds (bitwise
// equal); the tail goes to the scalar helper.
#include "kernels/arm/arm.h"
#include "kernels/arm/simd_neon.h"
#include "kernels/ref/ref.h"

namespace pensieve {

void rope_neon(float* x, int64_t stride, int n_heads, int head_dim, int rot_dim, const float* cos, const float* sin,
               int64_t t0, int64_t t1) {
  const int half = rot_dim / 2, hv = half / 4 * 4;
  for (int64_t t = t0; t < t1; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + t * stride + int64_t(h) * head_dim;
      for (int i = 0; i < hv; i += 4) {
        const float32x4_t a = vld1q_f32(v + i), b = vld1q_f32(v + i + half);
        const float32x4_t cv = vld1q_f32(c + i), sv = vld1q_f32(s + i);
        vst1q_f32(v + i, vsubq_f32(vmulq_f32(a, cv), vmulq_f32(b, sv)));
        vst1q_f32(v + i + half, vaddq_f32(vmulq_f32(b, cv), vmulq_f32(a, sv)));
      }
      rope_pairs_ref(v, c, s, half, hv, half);
    }
  }
}

}  // namespace pensieve
