// RMSNorm, NEON. Lanes: 4 consecutive elements; sum of squares by lane-wise FMAs, a fixed-order
// lane sum plus the tail (scalar helper); y = (x · inv) · w as in the reference.
#include "kernels/arm/arm.h"
#include "kernels/arm/simd_neon.h"
#include "kernels/ref/ref.h"

namespace pensieve {

void rmsnorm_neon(float* y, const float* x, const float* w, int64_t dim, float eps, int64_t r0, int64_t r1) {
  const int64_t dv = dim / 4 * 4;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    float32x4_t ss = vdupq_n_f32(0);
    for (int64_t i = 0; i < dv; i += 4) {
      const float32x4_t v = vld1q_f32(xr + i);
      ss = vfmaq_f32(ss, v, v);
    }
    const float inv = 1.0f / sqrt_((hsum(ss) + sum_squares_ref(xr, dv, dim)) / float(dim) + eps);
    for (int64_t i = 0; i < dv; i += 4) vst1q_f32(yr + i, vmulq_f32(vmulq_n_f32(vld1q_f32(xr + i), inv), vld1q_f32(w + i)));
    rmsnorm_scale_ref(yr, xr, w, inv, dv, dim);
  }
}

}  // namespace pensieve
