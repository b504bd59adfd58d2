// The aarch64 kernel tables. "dotprod" is "neon" with the int8 matmul on the dot-product
// extension (sdot); cpu_dispatch.cpp hands it out only when HWCAP says the CPU has it.
#include "kernels/arm/arm.h"

namespace pensieve {

#if defined(PENSIEVE_HAVE_NEON)
static const CpuKernels kNeon = {
    "neon",          matmul_dense_neon, prepare_act_neon, matmul_q_neon,   quantize_act_neon,
    matmul_act8_neon, rmsnorm_neon,     rope_neon,        attention_neon,  silu_mul_neon,
    add_neon,        f16_to_f32_neon,   f32_to_f16_neon,  bf16_to_f32_neon, f32_to_bf16_neon,
};
const CpuKernels* cpu_kernels_neon() { return &kNeon; }
#endif

#if defined(PENSIEVE_HAVE_DOTPROD)
static const CpuKernels kDotprod = {
    "dotprod",          matmul_dense_neon, prepare_act_neon, matmul_q_neon,   quantize_act_neon,
    matmul_act8_dotprod, rmsnorm_neon,     rope_neon,        attention_neon,  silu_mul_neon,
    add_neon,           f16_to_f32_neon,   f32_to_f16_neon,  bf16_to_f32_neon, f32_to_bf16_neon,
};
const CpuKernels* cpu_kernels_dotprod() { return &kDotprod; }
#endif

}  // namespace pensieve
