// The int8-activation ("fast") matmul driver shared by matmul_act8_neon.cpp (widening
// multiplies) and matmul_act8_dotprod.cpp (sdot): they differ only in how one 32-value block of
// one row and one token becomes int32 lanes (Dot::block). Included by those two files only;
// internal linkage, so each gets its own copy compiled with its own flags.
//
// Lanes: a block of 32 values is one activation block (one d) inside one weight group (one
// scale), so per output and block: acc += cvt(Σ lanes' int32 products) · (scale · d), all four
// lanes sharing one factor; at the end y = Σ lanes(acc) + Σ_g bias'_g · gsum_g, where for q8
// bias' = bias + 128·scale (the kernels multiply w − 128 so every product fits a signed byte
// instruction; gsum holds Σ d·q, which puts the 128·Σx back).
//   q4 block: 16 bytes of words (value 2p in the low nibble of byte p, 2p+1 in the high one)
//             against the activation block stored as its 16 even values then its 16 odd ones.
//   q8 block: 32 bytes (value p = byte p) against the block in natural order.
#pragma once

#include <type_traits>

#include "kernels/arm/simd_neon.h"
#include "kernels/ref/ref.h"

namespace pensieve {
namespace {

// Activation bytes per token block: small enough to stay in L1 while the call's rows (<= 256,
// ~400 KiB of q4) stream from L2 once per block; larger blocks made batches L2-bound on AVX-512.
constexpr int64_t kAct8L2Bytes = 32 * 1024;

// One row's block, decoded once and used for every token of the tile.
struct WBlock {
  int8x16_t a, b;  // q4: low / high nibbles; q8: bytes 0..15 / 16..31, each minus 128
};

template <int Bits>
inline WBlock decode_block(const uint8_t* p) {
  if constexpr (Bits == 4) {
    const uint8x16_t v = vld1q_u8(p);
    return {vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), vreinterpretq_s8_u8(vshrq_n_u8(v, 4))};
  } else {
    const uint8x16_t flip = vdupq_n_u8(0x80);
    return {vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p), flip)), vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p + 16), flip))};
  }
}

template <int Bits, DType S, class Dot, int R, int T>
void act8_tile(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t t0) {
  const int64_t cols = w.cols, groups = groups_per_row(w), blocks = cols / kActBlock;
  const int gshift = __builtin_ctz(unsigned(w.group_size));
  float32x4_t acc[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * kActBlock;
    WBlock wb[R];
    float s[R];
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) {
      const uint8_t* wr = row_bytes(w, r0 + r) + c0 * Bits / 8;
      __builtin_prefetch(wr + 16 * 1024);  // rows are contiguous: one stream, prefetched ahead
      wb[r] = decode_block<Bits>(wr);
      s[r] = load1<S>(w.scales, (r0 + r) * groups + (c0 >> gshift));
    }
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const int8_t* xq = a.q + (t0 + t) * cols + c0;
      const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
      const float d = a.d[(t0 + t) * blocks + b];
      PENSIEVE_UNROLL
      for (int r = 0; r < R; ++r)
        acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(Dot::block(wb[r], x0, x1)), s[r] * d);
    }
  }
  const int64_t gv = groups / 4 * 4;
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    const int64_t base = (r0 + r) * groups;
    float tail_bias[4];
    const int64_t nt = groups - gv;
    for (int64_t k = 0; k < nt; ++k)
      tail_bias[k] = load1<S>(w.biases, base + gv + k) + (Bits == 8 ? 128.0f * load1<S>(w.scales, base + gv + k) : 0.0f);
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const float* gs = a.gsum + (t0 + t) * groups;
      float32x4_t bacc = vdupq_n_f32(0);
      for (int64_t k = 0; k < gv; k += 4) {
        float32x4_t bv = load4<S>(w.biases, base + k);
        if constexpr (Bits == 8) bv = vfmaq_n_f32(bv, load4<S>(w.scales, base + k), 128.0f);
        bacc = vfmaq_f32(bacc, bv, vld1q_f32(gs + k));
      }
      y[(t0 + t) * ldy + r0 + r] = hsum(vaddq_f32(acc[r][t], bacc)) + dot_dense_ref(tail_bias, DType::f32, gs + gv, 0, nt);
    }
  }
}

template <int Bits, DType S, class Dot, int R, int T>
void act8_tile_at(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r, int64_t r1, int64_t t0) {
  if (r + R <= r1) {
    act8_tile<Bits, S, Dot, R, T>(y, ldy, a, w, r, t0);
  } else {  // the last rows one by one: each output's arithmetic does not depend on R
    for (; r < r1; ++r) act8_tile<Bits, S, Dot, 1, T>(y, ldy, a, w, r, t0);
  }
}

template <int Bits, DType S, class Dot>
void act8_impl(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  constexpr int R = 4, T = 4;
  const int64_t block = imax(T, kAct8L2Bytes / w.cols / T * T);
  for (int64_t b0 = 0; b0 < a.n; b0 += block) {
    const int64_t b1 = imin(a.n, b0 + block);
    for (int64_t r = r0; r < r1; r += R) {
      int64_t t = b0;
      for (; t + T <= b1; t += T) act8_tile_at<Bits, S, Dot, R, T>(y, ldy, a, w, r, r1, t);
      switch (b1 - t) {
        case 3: act8_tile_at<Bits, S, Dot, R, 3>(y, ldy, a, w, r, r1, t); break;
        case 2: act8_tile_at<Bits, S, Dot, R, 2>(y, ldy, a, w, r, r1, t); break;
        case 1: act8_tile_at<Bits, S, Dot, R, 1>(y, ldy, a, w, r, r1, t); break;
        default: break;
      }
    }
  }
}

template <class Dot4, class Dot8>
void act8_dispatch(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  dispatch_q(w, [&]<int Bits, DType S>() {
    using Dot = std::conditional_t<Bits == 4, Dot4, Dot8>;
    act8_impl<Bits, S, Dot>(y, ldy, a, w, r0, r1);
  });
}

}  // namespace
}  // namespace pensieve
