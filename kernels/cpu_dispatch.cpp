// Picks the kernel table for this CPU once, at first use.
//   x86-64: CPUID + XGETBV (the OS must really enable the AVX / AVX-512 register state);
//   aarch64: NEON is baseline, the dot-product extension comes from getauxval(AT_HWCAP).
// PENSIEVE_CPU=ref|avx2|avx512|neon|dotprod forces a table (if this CPU can run it); the choice
// is logged once to stderr when PENSIEVE_VERBOSE is set.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/ref/ref.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace pensieve {

static const CpuKernels kRef = {
    "ref",
    matmul_ref,
    prepare_act_ref,
    matmul_q_ref,
    quantize_act_ref,
    matmul_act8_ref,
    rmsnorm_ref,
    rope_ref,
    attention_ref,
    silu_mul_ref,
    add_ref,
    f16_to_f32_ref,
    f32_to_f16_ref,
    bf16_to_f32_ref,
    f32_to_bf16_ref,
};

const CpuKernels& cpu_kernels_ref() { return kRef; }

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
  bool neon = false, dotprod = false;
};

static CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  bool osxsave = c & (1u << 27);
  bool avx = c & (1u << 28);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  unsigned xlo, xhi;
  __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  bool ymm_state = (xlo & 0x6) == 0x6;             // SSE + AVX state enabled by the OS
  bool zmm_state = ymm_state && (xlo & 0xe0) == 0xe0;  // opmask + upper ZMM state
  if (!ymm_state) return f;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.avx2 = b & (1u << 5);
    if (zmm_state) {
      f.avx512f = b & (1u << 16);
      f.avx512bw = b & (1u << 30);
      f.avx512vl = b & (1u << 31);
      f.avx512vnni = c & (1u << 11);
    }
  }
  if (zmm_state && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512bf16 = a & (1u << 5);
#elif defined(__aarch64__)
  f.neon = true;
#if defined(__linux__)
  f.dotprod = getauxval(AT_HWCAP) & (1ul << 20);  // HWCAP_ASIMDDP
#elif defined(__APPLE__)
  f.dotprod = true;  // every Apple Silicon core has it
#endif
#endif
  return f;
}

// Tables other files provide (compiled with their ISA flags); nullptr where not built.
const CpuKernels* cpu_kernels_avx2();
const CpuKernels* cpu_kernels_avx512();
const CpuKernels* cpu_kernels_neon();
const CpuKernels* cpu_kernels_dotprod();

int cpu_kernel_tables(const CpuKernels** out, int max) {
  static const CpuFeatures f = detect();
  int n = 0;
  auto push = [&](const CpuKernels* k) { if (k && n < max) out[n++] = k; };
  push(&kRef);
  if (f.avx2 && f.fma && f.f16c) push(cpu_kernels_avx2());
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni && f.f16c) push(cpu_kernels_avx512());
  if (f.neon) push(cpu_kernels_neon());
  if (f.dotprod) push(cpu_kernels_dotprod());
  return n;
}

const CpuKernels* cpu_kernels_by_name(const char* name) {
  const CpuKernels* tables[8];
  int n = cpu_kernel_tables(tables, 8);
  for (int i = 0; i < n; ++i)
    if (std::strcmp(tables[i]->name, name) == 0) return tables[i];
  return nullptr;
}

static const CpuKernels& choose() {
  const CpuKernels* tables[8];
  int n = cpu_kernel_tables(tables, 8);
  const CpuKernels* pick = tables[n - 1];  // tables are listed from plainest to best
  if (const char* env = std::getenv("PENSIEVE_CPU")) {
    if (const CpuKernels* forced = cpu_kernels_by_name(env)) {
      pick = forced;
    } else {
      std::fprintf(stderr, "pensieve: PENSIEVE_CPU=%s is not available on this CPU; using %s\n", env, pick->name);
    }
  }
  if (std::getenv("PENSIEVE_VERBOSE")) std::fprintf(stderr, "pensieve: CPU kernels: %s\n", pick->name);
  return *pick;
}

const CpuKernels& cpu_kernels() {
  static const CpuKernels& k = choose();
  return k;
}

}  // namespace pensieve
