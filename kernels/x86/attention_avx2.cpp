// Causal GQA attention over the paged KV cache, AVX2: the shared tiled kernel
// (kernels/attention_tiled.h) with 8-lane vectors.
#include "kernels/x86/simd_avx2.h"
#include "kernels/x86/x86.h"
#include "kernels/attention_tiled.h"

namespace pensieve {

void attention_avx2(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                    int kh1, int64_t i0, int64_t i1) {
  attention_tiled<Avx2Vec>(out, q, seq, kv, p, kh0, kh1, i0, i1);
}

}  // namespace pensieve
