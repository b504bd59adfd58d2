// Causal GQA attention over the paged KV cache, NEON: the shared tiled kernel
// (kernels/attention_tiled.h) with 4-lane vectors.
#include "kernels/arm/arm.h"
#include "kernels/arm/simd_neon.h"
#include "kernels/attention_tiled.h"

namespace pensieve {

void attention_neon(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                    int kh1, int64_t i0, int64_t i1) {
  attention_tiled<NeonVec>(out, q, seq, kv, p, kh0, kh1, i0, i1);
}

}  // namespace pensieve
