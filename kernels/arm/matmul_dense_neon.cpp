// Dense W (f32 / f16 / bf16) × f32 activations, NEON: the shared tiled kernel
// (kernels/matmul_dense_tiled.h) with 4-lane vectors, tiles of 4 rows × 4 tokens.
#include "kernels/arm/arm.h"
#include "kernels/arm/simd_neon.h"
#include "kernels/matmul_dense_tiled.h"

namespace pensieve {

void matmul_dense_neon(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w,
                       int64_t r0, int64_t r1) {
  matmul_dense_tiled<NeonVec, 4, 4>(y, ldy, x, ldx, n, w, r0, r1);
}

}  // namespace pensieve
