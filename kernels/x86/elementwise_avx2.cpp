// SiLU-gated multiply, residual add and half-precision conversions, AVX2 + F16C. Lanes: 8
// consecutive elements; elements past the last whole vector go to the scalar reference.
#include "kernels/ref/ref.h"
#include "kernels/x86/simd_avx2.h"
#include "kernels/x86/x86.h"

namespace pensieve {

void silu_mul_avx2(float* out, const float* gu, int64_t ffn, int64_t t0, int64_t t1) {
  const int64_t fv = ffn / 8 * 8;
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t t = t0; t < t1; ++t) {
    const float* g = gu + t * 2 * ffn;
    const float* u = g + ffn;
    float* o = out + t * ffn;
    for (int64_t i = 0; i < fv; i += 8) {
      const __m256 gv = _mm256_loadu_ps(g + i);
      const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), gv));
      _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    silu_mul_range_ref(o, g, u, fv, ffn);
  }
}

void add_avx2(float* y, const float* x, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  add_ref(y, x, i, i1);
}

void f16_to_f32_avx2(float* dst, const uint16_t* src, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) _mm256_storeu_ps(dst + i, load8_f16(src + i));
  f16_to_f32_ref(dst, src, i, i1);
}

void f32_to_f16_avx2(uint16_t* dst, const float* src, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  f32_to_f16_ref(dst, src, i, i1);
}

void bf16_to_f32_avx2(float* dst, const uint16_t* src, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) _mm256_storeu_ps(dst + i, load8_bf16(src + i));
  bf16_to_f32_ref(dst, src, i, i1);
}

// Round to nearest even on the bit pattern (x + 0x7fff + bit 16, keep the top half); NaN keeps
// its top bits with the quiet bit set.
void f32_to_bf16_avx2(uint16_t* dst, const float* src, int64_t i0, int64_t i1) {
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    const __m256i x = _mm256_castps_si256(_mm256_loadu_ps(src + i));
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(x, 16), one);
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(bias, odd)), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), inf);
    const __m256i q = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    const __m256i v = _mm256_blendv_epi8(r, q, nan);
    // 8 x 32-bit lanes (values < 2^16) to 8 x 16-bit: pack per half, then take the two halves.
    const __m256i p = _mm256_packus_epi32(v, v);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm_unpacklo_epi64(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
  }
  f32_to_bf16_ref(dst, src, i, i1);
}

}  // namespace pensieve
