// Helpers for the AVX2 kernels. Included only by *_avx2.cpp files (all compiled with the same
// AVX2 + FMA + F16C flags); everything here has internal linkage, so no AVX2 copy of a function
// can be picked by the linker for baseline code.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/isa_helpers.h"

// Fully unrolls the small loops over a tile's rows and tokens, so per-output accumulators
// live in registers (GCC keeps arrays indexed by a rolled loop in memory).
#define PENSIEVE_UNROLL _Pragma("GCC unroll 16")

namespace pensieve {
namespace {

// Sum of 8 lanes in a fixed order (halves, then quarters, then pairs).
inline float hsum(__m256 v) {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

inline float hmax(__m256 v) {
  __m128 q = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  q = _mm_max_ps(q, _mm_movehl_ps(q, q));
  q = _mm_max_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

inline int hsum_epi32(__m256i v) {
  __m128i q = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0x4e));
  q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0xb1));
  return _mm_cvtsi128_si32(q);
}

// 8 f16 / bf16 / f32 values at p as f32 lanes.
inline __m256 load8_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256 load8_bf16(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
template <DType S>
inline __m256 load8(const void* base, int64_t i) {
  if constexpr (S == DType::f16) return load8_f16(static_cast<const uint16_t*>(base) + i);
  else if constexpr (S == DType::bf16) return load8_bf16(static_cast<const uint16_t*>(base) + i);
  else return _mm256_loadu_ps(static_cast<const float*>(base) + i);
}
// One value as f32.
template <DType S>
inline float load1(const void* base, int64_t i) {
  if constexpr (S == DType::f16) return _cvtsh_ss(static_cast<const uint16_t*>(base)[i]);
  else if constexpr (S == DType::bf16) return __builtin_bit_cast(float, uint32_t(static_cast<const uint16_t*>(base)[i]) << 16);
  else return static_cast<const float*>(base)[i];
}

// 2^n for integer-valued n in [-126, 127], built in the exponent field.
inline __m256 pow2i(__m256i n) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23)); }

// e^x for 8 lanes (Cephes expf: x = n·ln2 + r, |r| <= ln2/2, degree-6 polynomial; 2^n applied
// as two factors 2^(n/2) so results reach 0 / Inf / subnormals past the f32 range): within 2 ulp.
// NaN stays NaN (the clamps keep it: max/min return their second operand for NaN).
inline __m256 exp_ps(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x);
  x = _mm256_min_ps(_mm256_set1_ps(104.0f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2i(n1)), pow2i(_mm256_sub_epi32(ni, n1)));
}

// The vector type of the kernels shared with the NEON table (kernels/attention_tiled.h,
// kernels/matmul_dense_tiled.h): 8 f32 lanes.
struct Avx2Vec {
  static constexpr int W = 8;
  using V = __m256;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static V load_f16(const uint16_t* p) { return load8_f16(p); }
  template <DType S>
  static V load_scalars(const void* base, int64_t i) { return load8<S>(base, i); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V exp(V x) { return exp_ps(x); }
  static float hsum(V v) { return pensieve::hsum(v); }
  static float hmax(V v) { return pensieve::hmax(v); }
  static float first(V v) { return _mm256_cvtss_f32(v); }
  static V visible(V s, V x) { return _mm256_and_ps(_mm256_cmp_ps(s, _mm256_set1_ps(-kInf), _CMP_NEQ_OQ), x); }
};

}  // namespace
}  // namespace pensieve
