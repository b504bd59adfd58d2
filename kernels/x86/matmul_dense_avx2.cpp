// Dense W (f32 / f16 / bf16) × f32 activations, AVX2: the shared tiled kernel
// (kernels/matmul_dense_tiled.h) with 8-lane vectors, tiles of 2 rows × 4 tokens.
#include "kernels/x86/simd_avx2.h"
#include "kernels/x86/x86.h"
#include "kernels/matmul_dense_tiled.h"

namespace pensieve {

void matmul_dense_avx2(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w,
                       int64_t r0, int64_t r1) {
  matmul_dense_tiled<Avx2Vec, 2, 4>(y, ldy, x, ldx, n, w, r0, r1);
}

}  // namespace pensieve
