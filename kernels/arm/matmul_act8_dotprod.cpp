// int8 activations ("fast" precision) with the dot-product extension (sdot: 4 signed byte
// products summed into each int32 lane). Activations come from quantize_act_neon; the layouts
// and the accumulation are in matmul_act8_tile.h.
#include "kernels/arm/arm.h"
#include "kernels/arm/matmul_act8_tile.h"

namespace pensieve {
namespace {

struct DotProd {
  static int32x4_t block(const WBlock& w, int8x16_t x0, int8x16_t x1) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w.a, x0), w.b, x1);
  }
};

}  // namespace

void matmul_act8_dotprod(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  act8_dispatch<DotProd, DotProd>(y, ldy, a, w, r0, r1);
}

}  // namespace pensieve
