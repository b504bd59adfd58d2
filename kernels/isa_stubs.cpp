// Placeholders for ISA tables not built into this binary (the real ones live in x86/ and arm/).
#include "kernels/kernels.h"

namespace pensieve {

#if !defined(PENSIEVE_HAVE_AVX2)
const CpuKernels* cpu_kernels_avx2() { return nullptr; }
#endif
#if !defined(PENSIEVE_HAVE_AVX512)
const CpuKernels* cpu_kernels_avx512() { return nullptr; }
#endif
#if !defined(PENSIEVE_HAVE_NEON)
const CpuKernels* cpu_kernels_neon() { return nullptr; }
#endif
#if !defined(PENSIEVE_HAVE_DOTPROD)
const CpuKernels* cpu_kernels_dotprod() { return nullptr; }
#endif

}  // namespace pensieve
