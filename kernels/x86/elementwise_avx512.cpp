// SiLU-gated multiply, residual add and half-precision conversions, AVX-512. Lanes: 16
// consecutive elements; the last partial vector is masked. f16 uses F16C (exact widening,
// round-to-nearest-even narrowing with subnormals). bf16 narrowing is integer rounding: the
// AVX-512-BF16 instruction (vcvtneps2bf16) treats subnormal inputs as zero, which the spec
// (tensor/dtype.h) does not, so it is not used.
#include "kernels/x86/simd_avx512.h"
#include "kernels/x86/x86.h"

namespace pensieve {

void silu_mul_avx512(float* out, const float* gu, int64_t ffn, int64_t t0, int64_t t1) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t t = t0; t < t1; ++t) {
    const float* g = gu + t * 2 * ffn;
    const float* u = g + ffn;
    float* o = out + t * ffn;
    for (int64_t i = 0; i < ffn; i += 16) {
      const __mmask16 m = first_lanes16(ffn - i);
      const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
      const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), gv));
      const __m512 silu = _mm512_div_ps(gv, _mm512_add_ps(one, e));
      _mm512_mask_storeu_ps(o + i, m, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(m, u + i)));
    }
  }
}

void add_avx512(float* y, const float* x, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 16) {
    const __mmask16 m = first_lanes16(i1 - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_maskz_loadu_ps(m, x + i)));
  }
}

void f16_to_f32_avx512(float* dst, const uint16_t* src, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 16) {
    const __mmask16 m = first_lanes16(i1 - i);
    _mm512_mask_storeu_ps(dst + i, m, load_f16(src + i, m));
  }
}

void f32_to_f16_avx512(uint16_t* dst, const float* src, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 16) {
    const __mmask16 m = first_lanes16(i1 - i);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_mask_storeu_epi16(dst + i, m, h);
  }
}

void bf16_to_f32_avx512(float* dst, const uint16_t* src, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 16) {
    const __mmask16 m = first_lanes16(i1 - i);
    _mm512_mask_storeu_ps(dst + i, m, load_bf16(src + i, m));
  }
}

// Round to nearest even on the bit pattern: x + 0x7fff + (bit 16 of x), keep the top half;
// NaN keeps its top bits with the quiet bit set.
void f32_to_bf16_avx512(uint16_t* dst, const float* src, int64_t i0, int64_t i1) {
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  for (int64_t i = i0; i < i1; i += 16) {
    const __mmask16 m = first_lanes16(i1 - i);
    const __m512i x = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, src + i));
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(x, 16), one);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(bias, odd)), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, abs_mask), inf);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40)));
    _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtepi32_epi16(r));
  }
}

}  // namespace pensieve
