// int8 activations ("fast" precision) on baseline NEON: quantize_act for both aarch64 tables,
// and the matmul with widening multiplies (smull / smlal to int16, pairwise adds to int32).
// The layouts and the accumulation are in matmul_act8_tile.h.
#include "kernels/arm/arm.h"
#include "kernels/arm/matmul_act8_tile.h"

namespace pensieve {
namespace {

// Σ over one block as int32 lanes. Products are <= 15·127 (q4) or 128·127 (q8) in magnitude;
// two per int16 lane stay below 2^15.
struct DotWiden4 {
  static int32x4_t block(const WBlock& w, int8x16_t x0, int8x16_t x1) {
    int16x8_t lo = vmull_s8(vget_low_s8(w.a), vget_low_s8(x0));
    lo = vmlal_s8(lo, vget_low_s8(w.b), vget_low_s8(x1));
    int16x8_t hi = vmull_high_s8(w.a, x0);
    hi = vmlal_high_s8(hi, w.b, x1);
    return vpadalq_s16(vpaddlq_s16(lo), hi);
  }
};
using DotWiden8 = DotWiden4;  // same pairing: (w.a, x0) are values 0..15, (w.b, x1) 16..31

template <int Bits>
void quantize_impl(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  const int64_t cols = a.cols, blocks = cols / kActBlock, groups = cols / a.group_size;
  const int bpg = a.group_size / kActBlock;
  for (int64_t t = t0; t < t1; ++t) {
    const float* xs = x + t * ldx;
    int8_t* qd = a.q + t * cols;
    float gsum = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      const float* xb = xs + b * kActBlock;
      float32x4_t v[8];
      float32x4_t amax = vdupq_n_f32(0);
      for (int i = 0; i < 8; ++i) {
        v[i] = vld1q_f32(xb + 4 * i);
        amax = vmaxq_f32(amax, vabsq_f32(v[i]));
      }
      const float d = hmax(amax) / 127.0f;
      const float id = d != 0 ? 1.0f / d : 0.0f;
      int32x4_t q[8];  // round half to even, as the reference's lrint
      int32x4_t qs = vdupq_n_s32(0);
      for (int i = 0; i < 8; ++i) {
        q[i] = vcvtnq_s32_f32(vmulq_n_f32(v[i], id));
        qs = vaddq_s32(qs, q[i]);
      }
      int8x16_t q01, q23;  // values 0..15, 16..31
      {
        const int16x8_t h0 = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1])), h1 = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
        const int16x8_t h2 = vcombine_s16(vqmovn_s32(q[4]), vqmovn_s32(q[5])), h3 = vcombine_s16(vqmovn_s32(q[6]), vqmovn_s32(q[7]));
        q01 = vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1));
        q23 = vcombine_s8(vqmovn_s16(h2), vqmovn_s16(h3));
      }
      int8_t* dst = qd + b * kActBlock;
      if constexpr (Bits == 4) {
        vst1q_s8(dst, vuzp1q_s8(q01, q23));       // even values
        vst1q_s8(dst + 16, vuzp2q_s8(q01, q23));  // odd values
      } else {
        vst1q_s8(dst, q01);
        vst1q_s8(dst + 16, q23);
      }
      a.d[t * blocks + b] = d;
      gsum += d * float(vaddvq_s32(qs));
      if ((b + 1) % bpg == 0) {
        a.gsum[t * groups + b / bpg] = gsum;
        gsum = 0;
      }
    }
  }
}

}  // namespace

void quantize_act_neon(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  if (a.bits == 4) quantize_impl<4>(a, x, ldx, t0, t1);
  else quantize_impl<8>(a, x, ldx, t0, t1);
}

void matmul_act8_neon(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  act8_dispatch<DotWiden4, DotWiden8>(y, ldy, a, w, r0, r1);
}

}  // namespace pensieve
