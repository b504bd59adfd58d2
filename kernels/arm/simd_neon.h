// Helpers for the NEON kernels (aarch64: NEON is baseline). Included only by arm/*_neon.cpp and
// arm/*_dotprod.cpp; everything here has internal linkage.
#pragma once

#include <arm_neon.h>

#include <cstdint>

#include "kernels/isa_helpers.h"

// Fully unrolls the small loops over a tile's rows and tokens, so per-output accumulators
// live in registers (GCC keeps arrays indexed by a rolled loop in memory).
#define PENSIEVE_UNROLL _Pragma("GCC unroll 16")

namespace pensieve {
namespace {

// Sum / max of 4 lanes (fixed pairwise order).
inline float hsum(float32x4_t v) { return vaddvq_f32(v); }
inline float hmax(float32x4_t v) { return vmaxvq_f32(v); }

inline float32x4_t load4_f16(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
inline float32x4_t load4_bf16(const uint16_t* p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
template <DType S>
inline float32x4_t load4(const void* base, int64_t i) {
  if constexpr (S == DType::f16) return load4_f16(static_cast<const uint16_t*>(base) + i);
  else if constexpr (S == DType::bf16) return load4_bf16(static_cast<const uint16_t*>(base) + i);
  else return vld1q_f32(static_cast<const float*>(base) + i);
}
template <DType S>
inline float load1(const void* base, int64_t i) {
  if constexpr (S == DType::f16) return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_dup_u16(static_cast<const uint16_t*>(base) + i))), 0);
  else if constexpr (S == DType::bf16) return __builtin_bit_cast(float, uint32_t(static_cast<const uint16_t*>(base)[i]) << 16);
  else return static_cast<const float*>(base)[i];
}

// 2^n for integer-valued n in [-126, 127], built in the exponent field.
inline float32x4_t pow2i(int32x4_t n) { return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n, vdupq_n_s32(127)), 23)); }

// e^x for 4 lanes: Cephes expf as in the x86 kernels (degree-6 polynomial, 2^n as two factors
// so results reach 0 / Inf / subnormals), within 2 ulp. NaN stays NaN (vmaxq/vminq propagate it).
inline float32x4_t exp_ps(float32x4_t x) {
  x = vmaxq_f32(x, vdupq_n_f32(-104.0f));
  x = vminq_f32(x, vdupq_n_f32(104.0f));
  const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
  p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
  p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
  const int32x4_t ni = vcvtq_s32_f32(n);
  const int32x4_t n1 = vshrq_n_s32(ni, 1);
  return vmulq_f32(vmulq_f32(p, pow2i(n1)), pow2i(vsubq_s32(ni, n1)));
}

// The vector type of the kernels shared with the AVX2 table (kernels/attention_tiled.h,
// kernels/matmul_dense_tiled.h): 4 f32 lanes.
struct NeonVec {
  static constexpr int W = 4;
  using V = float32x4_t;
  static V zero() { return vdupq_n_f32(0); }
  static V load(const float* p) { return vld1q_f32(p); }
  static V loadu(const float* p) { return vld1q_f32(p); }
  static V load_f16(const uint16_t* p) { return load4_f16(p); }
  template <DType S>
  static V load_scalars(const void* base, int64_t i) { return load4<S>(base, i); }
  static void store(float* p, V v) { vst1q_f32(p, v); }
  static V set1(float x) { return vdupq_n_f32(x); }
  static V mul(V a, V b) { return vmulq_f32(a, b); }
  static V fma(V a, V b, V c) { return vfmaq_f32(c, a, b); }
  static V sub(V a, V b) { return vsubq_f32(a, b); }
  static V div(V a, V b) { return vdivq_f32(a, b); }
  static V exp(V x) { return exp_ps(x); }
  static float hsum(V v) { return pensieve::hsum(v); }
  static float hmax(V v) { return pensieve::hmax(v); }
  static float first(V v) { return vgetq_lane_f32(v, 0); }
  static V visible(V s, V x) {
    const uint32x4_t keep = vmvnq_u32(vceqq_f32(s, vdupq_n_f32(-kInf)));
    return vreinterpretq_f32_u32(vandq_u32(keep, vreinterpretq_u32_f32(x)));
  }
};

}  // namespace
}  // namespace pensieve
