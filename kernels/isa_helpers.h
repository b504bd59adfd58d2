// Scalar helpers for the ISA kernel files (x86/*_avx2.cpp, arm/*_neon.cpp, ...), included only
// through their simd_*.h headers. Everything has internal linkage: an ISA file must not call a
// shared header's inline function or a std:: template (std::min, std::copy, WeightMatrix's
// accessors), because where the compiler does not inline it (debug builds) it emits a weak copy
// compiled with the ISA's flags, and the linker may then use that copy from baseline code on a
// CPU without the ISA. tests/check_isa_symbols.cmake checks the objects for such copies.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

// For the per-chunk helpers of the SIMD tiles: left to itself GCC may call them out of line,
// passing the accumulator arrays through memory.
#define PENSIEVE_INLINE inline __attribute__((always_inline))

namespace pensieve {
namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline float fmax_(float a, float b) { return a > b ? a : b; }
inline float sqrt_(float x) { return __builtin_sqrtf(x); }
constexpr float kInf = __builtin_inff();

// WeightMatrix's accessors, restated here for the reason above.
inline int64_t groups_per_row(const WeightMatrix& w) { return w.cols / w.group_size; }
inline const uint8_t* row_bytes(const WeightMatrix& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + r * (w.cols * (w.dtype == DType::q4 ? 4 : 8) / 8);
}
inline const uint32_t* row_words(const WeightMatrix& w, int64_t r) { return reinterpret_cast<const uint32_t*>(row_bytes(w, r)); }
inline int scalar_bytes(DType t) { return t == DType::f32 ? 4 : 2; }  // f32 / f16 / bf16

// Prefetches the scales and biases of rows [r0, r0 + rows), `ahead` rows early. They are two
// streams of their own (1/16 of the q4 weight bytes each, read 16-96 bytes at a time) that the
// hardware prefetchers leave to DRAM latency: on Zen 5 (1 thread, weights from DRAM) prefetching
// them as many rows ahead as the weights made the int8 q4 matmul 15% faster at batch 1 and 14%
// at batch 16 (bench/RESULTS.md). Prefetches past the arrays' ends are harmless.
inline void prefetch_scalars(const WeightMatrix& w, int64_t r0, int64_t rows, int64_t ahead) {
  const int64_t row = groups_per_row(w) * scalar_bytes(w.scale_dtype);
  const char* s = static_cast<const char*>(w.scales) + (r0 + ahead) * row;
  const char* b = static_cast<const char*>(w.biases) + (r0 + ahead) * row;
  for (int64_t o = 0; o < rows * row + 63; o += 64) {
    __builtin_prefetch(s + o);
    __builtin_prefetch(b + o);
  }
}

// Prefetches bytes [off_bytes, off_bytes + bytes) of base into the outer caches (locality 2:
// prefetcht1 on x86, PLDL2KEEP on aarch64): the attention kernels' next tile of the paged KV
// cache, whose scattered blocks no hardware prefetcher guesses. Into L2 rather than L1: on Zen 4,
// Phi-3 decode attention at ctx 4096 read 25 GB/s of KV this way, 15 with prefetches into L1.
inline void prefetch_l2(const void* base, int64_t off_bytes, int64_t bytes) {
  const char* p = static_cast<const char*>(base) + off_bytes;
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, 0, 2);
  __builtin_prefetch(p + bytes - 1, 0, 2);  // rows need not start on a cache line
}

// A compile-time count for a generic lambda: f(Count<3>{}) sees decltype(c)::value == 3.
template <int N>
struct Count {
  static constexpr int value = N;
};

// Calls f.template operator()<Bits, S>() for a quantized weight's bits (4 or 8) and scale type
// (f16, bf16, else f32): the quantized kernels' one dispatch to their compile-time variants.
template <class F>
PENSIEVE_INLINE void dispatch_q(const WeightMatrix& w, F&& f) {
  const bool q4 = w.dtype == DType::q4;
  switch (w.scale_dtype) {
    case DType::f16: return q4 ? f.template operator()<4, DType::f16>() : f.template operator()<8, DType::f16>();
    case DType::bf16: return q4 ? f.template operator()<4, DType::bf16>() : f.template operator()<8, DType::bf16>();
    default: return q4 ? f.template operator()<4, DType::f32>() : f.template operator()<8, DType::f32>();
  }
}

}  // namespace
}  // namespace pensieve
