// Scalar pieces the SIMD kernels hand their tails to (the elements past the last whole vector),
// so no ISA file re-pastes a reference loop. Each computes its range in order, as the reference.
#include <cmath>

#include "kernels/ref/ref.h"

namespace pensieve {

float sum_squares_ref(const float* x, int64_t i0, int64_t i1) {
  float s = 0;
  for (int64_t i = i0; i < i1; ++i) s += x[i] * x[i];
  return s;
}

void rmsnorm_scale_ref(float* y, const float* x, const float* w, float inv, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) y[i] = x[i] * inv * w[i];
}

void rope_pairs_ref(float* v, const float* c, const float* s, int half, int i0, int i1) {
  for (int i = i0; i < i1; ++i) {
    float a = v[i], b = v[i + half];
    v[i] = a * c[i] - b * s[i];
    v[i + half] = b * c[i] + a * s[i];
  }
}

void silu_mul_range_ref(float* out, const float* g, const float* u, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

float dot_dense_ref(const void* w, DType dtype, const float* x, int64_t i0, int64_t i1) {
  float s = 0;
  for (int64_t i = i0; i < i1; ++i) s += load_as_f32(w, dtype, i) * x[i];
  return s;
}

void load_f32_ref(float* dst, const void* src, DType dtype, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) dst[i] = load_as_f32(src, dtype, i);
}

}  // namespace pensieve
