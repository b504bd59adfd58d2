// Causal GQA attention over the paged KV cache, AVX2: the shared tiled kernel
// (kernels/attention_tiled.h) with 8-lane vectors.
#include "kernels/x86/simd_avx2.h"
#include "kernels/x86/x86.h"
#include "kernels/attention_tiled.h"

namespace pensieve {
namespace {

struct Avx2Vec {
  static constexpr int W = 8;
  using V = __m256;
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static V load_f16(const uint16_t* p) { return load8_f16(p); }
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

void attention_avx2(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                    int kh1, int64_t i0, int64_t i1) {
  attention_tiled<Avx2Vec>(out, q, seq, kv, p, kh0, kh1, i0, i1);
}

}  // namespace pensieve
