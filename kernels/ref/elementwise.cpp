// Small elementwise ops: SiLU-gated multiply, residual add, half-precision conversions.
#include <cmath>

#include "kernels/ref/ref.h"

namespace pensieve {

// out[t, i] = silu(g) · u with g = gu[t, i], u = gu[t, ffn + i]; silu(g) = g / (1 + e^−g).
void silu_mul_ref(float* out, const float* gu, int64_t ffn, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    const float* g = gu + t * 2 * ffn;
    silu_mul_range_ref(out + t * ffn, g, g + ffn, 0, ffn);
  }
}

void add_ref(float* y, const float* x, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) y[i] += x[i];
}

void f16_to_f32_ref(float* dst, const uint16_t* src, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) dst[i] = f16_to_f32(src[i]);
}

void f32_to_f16_ref(uint16_t* dst, const float* src, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) dst[i] = f32_to_f16(src[i]);
}

void bf16_to_f32_ref(float* dst, const uint16_t* src, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) dst[i] = bf16_to_f32(src[i]);
}

void f32_to_bf16_ref(uint16_t* dst, const float* src, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) dst[i] = f32_to_bf16(src[i]);
}

}  // namespace pensieve
