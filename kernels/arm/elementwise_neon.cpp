// SiLU-gated multiply, residual add and half-precision conversions, NEON (fcvt for f16: exact
// widening, round-to-nearest-even narrowing with subnormals under the default FPCR). Lanes: 4
// consecutive elements; the tail goes to the scalar reference.
#include "kernels/arm/arm.h"
#include "kernels/arm/simd_neon.h"
#include "kernels/ref/ref.h"

namespace pensieve {

void silu_mul_neon(float* out, const float* gu, int64_t ffn, int64_t t0, int64_t t1) {
  const int64_t fv = ffn / 4 * 4;
  for (int64_t t = t0; t < t1; ++t) {
    const float* g = gu + t * 2 * ffn;
    const float* u = g + ffn;
    float* o = out + t * ffn;
    for (int64_t i = 0; i < fv; i += 4) {
      const float32x4_t gv = vld1q_f32(g + i);
      const float32x4_t e = exp_ps(vnegq_f32(gv));
      vst1q_f32(o + i, vmulq_f32(vdivq_f32(gv, vaddq_f32(vdupq_n_f32(1.0f), e)), vld1q_f32(u + i)));
    }
    silu_mul_range_ref(o, g, u, fv, ffn);
  }
}

void add_neon(float* y, const float* x, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
  add_ref(y, x, i, i1);
}

void f16_to_f32_neon(float* dst, const uint16_t* src, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) vst1q_f32(dst + i, load4_f16(src + i));
  f16_to_f32_ref(dst, src, i, i1);
}

void f32_to_f16_neon(uint16_t* dst, const float* src, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
  f32_to_f16_ref(dst, src, i, i1);
}

void bf16_to_f32_neon(float* dst, const uint16_t* src, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) vst1q_f32(dst + i, load4_bf16(src + i));
  bf16_to_f32_ref(dst, src, i, i1);
}

// Round to nearest even on the bit pattern (x + 0x7fff + bit 16, keep the top half); NaN keeps
// its top bits with the quiet bit set.
void f32_to_bf16_neon(uint16_t* dst, const float* src, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) {
    const uint32x4_t x = vreinterpretq_u32_f32(vld1q_f32(src + i));
    const uint32x4_t odd = vandq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(1));
    const uint32x4_t r = vshrq_n_u32(vaddq_u32(x, vaddq_u32(vdupq_n_u32(0x7fff), odd)), 16);
    const uint32x4_t nan = vcgtq_u32(vandq_u32(x, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
    const uint32x4_t q = vorrq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(0x40));
    vst1_u16(dst + i, vmovn_u32(vbslq_u32(nan, q, r)));
  }
  f32_to_bf16_ref(dst, src, i, i1);
}

}  // namespace pensieve
