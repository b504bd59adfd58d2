// Helpers for the AVX-512 kernels. Included only by *_avx512.cpp files (all compiled with the
// same AVX-512 flags); everything here has internal linkage, so no AVX-512 copy of a function
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

inline __mmask16 first_lanes16(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// Sum of 16 lanes in a fixed order (halves, then quarters, ...): every caller that reduces an
// accumulator with this gets the same bits for the same lanes.
inline float hsum(__m512 v) {
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

inline float hmax(__m512 v) { return _mm512_reduce_max_ps(v); }

// n (<= 16) f16 / bf16 / f32 values from p as 16 f32 lanes (lanes >= n are zero).
inline __m512 load_f16(const uint16_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
inline __m512 load_bf16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
template <DType S>
inline __m512 load_scalars(const void* base, int64_t i, __mmask16 m) {
  if constexpr (S == DType::f16) return load_f16(static_cast<const uint16_t*>(base) + i, m);
  else if constexpr (S == DType::bf16) return load_bf16(static_cast<const uint16_t*>(base) + i, m);
  else return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + i);
}

template <DType S>
inline const void* scalars_at(const void* base, int64_t i) {
  return static_cast<const char*>(base) + i * (S == DType::f32 ? 4 : 2);
}

// e^x for 16 lanes (Cephes expf: x = n·ln2 + r, |r| <= ln2/2, degree-6 polynomial, then
// scaled by 2^n with vscalefps, which gives 0 / Inf past the f32 range): within 2 ulp.
// NaN stays NaN (the clamps keep it: max/min return their second operand for NaN).
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  x = _mm512_min_ps(_mm512_set1_ps(104.0f), x);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

}  // namespace
}  // namespace pensieve
