// Causal GQA attention over the paged KV cache, NEON: the shared tiled kernel
// (kernels/attention_tiled.h) with 4-lane vectors.
#include "kernels/arm/arm.h"
#include "kernels/arm/simd_neon.h"
#include "kernels/attention_tiled.h"

namespace pensieve {
namespace {

struct NeonVec {
  static constexpr int W = 4;
  using V = float32x4_t;
  static V load(const float* p) { return vld1q_f32(p); }
  static V loadu(const float* p) { return vld1q_f32(p); }
  static V load_f16(const uint16_t* p) { return load4_f16(p); }
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

void attention_neon(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                    int kh1, int64_t i0, int64_t i1) {
  attention_tiled<NeonVec>(out, q, seq, kv, p, kh0, kh1, i0, i1);
}

}  // namespace pensieve
