// The x86 kernel tables. Compiled without ISA flags: it only takes the addresses of the
// variants; cpu_dispatch.cpp hands a table out only when CPUID says the CPU runs it.
#include "kernels/x86/x86.h"

namespace pensieve {

#define PENSIEVE_X86_TABLE(isa)                                                                            \
  {                                                                                                        \
    #isa, matmul_dense_##isa, prepare_act_##isa, matmul_q_##isa, quantize_act_##isa, matmul_act8_##isa,    \
        rmsnorm_##isa, rope_##isa, attention_##isa, silu_mul_##isa, add_##isa, f16_to_f32_##isa,           \
        f32_to_f16_##isa, bf16_to_f32_##isa, f32_to_bf16_##isa                                             \
  }

#if defined(PENSIEVE_HAVE_AVX2)
static const CpuKernels kAvx2 = PENSIEVE_X86_TABLE(avx2);
const CpuKernels* cpu_kernels_avx2() { return &kAvx2; }
#endif

#if defined(PENSIEVE_HAVE_AVX512)
static const CpuKernels kAvx512 = PENSIEVE_X86_TABLE(avx512);
const CpuKernels* cpu_kernels_avx512() { return &kAvx512; }
#endif

}  // namespace pensieve
