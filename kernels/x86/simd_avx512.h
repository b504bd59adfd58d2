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

// out[i] = hsum(v[i]) for 8 vectors, bit for bit (the same halves, quarters and pairs), with the
// 8 reductions sharing each shuffle and add: 17 instructions instead of 48.
inline void hsum8(const __m512* v, float* out) {
  // Halves: v[i] and v[i + 4] share p[i], 128-bit lanes [i, i, i + 4, i + 4].
  __m512 p[4];
  for (int i = 0; i < 4; ++i)
    p[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[i], v[i + 4], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(v[i], v[i + 4], _MM_SHUFFLE(3, 2, 3, 2)));
  // Quarters: q[j]'s 128-bit lanes hold vectors 2j, 2j + 4, 2j + 1, 2j + 5.
  __m512 q[2];
  for (int j = 0; j < 2; ++j)
    q[j] = _mm512_add_ps(_mm512_shuffle_f32x4(p[2 * j], p[2 * j + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(p[2 * j], p[2 * j + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  // Pairs, then the last two: element 4L of r ends with q[0]'s lane-L vector, 4L + 2 with q[1]'s.
  __m512 r = _mm512_add_ps(_mm512_shuffle_ps(q[0], q[1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_ps(q[0], q[1], _MM_SHUFFLE(3, 2, 3, 2)));
  r = _mm512_add_ps(r, _mm512_movehdup_ps(r));
  const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 14, 6, 12, 4, 10, 2, 8, 0);
  _mm256_storeu_ps(out, _mm512_castps512_ps256(_mm512_permutexvar_ps(idx, r)));
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
