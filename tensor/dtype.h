// Element types and scalar half-precision conversions.
//
// The scalar conversions here are the reference (round to nearest even, NaN/Inf kept); bulk
// conversions with F16C / AVX-512-BF16 / NEON live in kernels/ and are tested against these.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace pensieve {

enum class DType : uint8_t {
  f32,
  f16,
  bf16,
  i32,
  u32,
  u8,
  q4,  // MLX affine 4-bit: 8 values per little-endian uint32, scale and bias per group
  q8,  // MLX affine 8-bit: 4 values per little-endian uint32, scale and bias per group
};

// Bytes per element for plain types; 0 for the packed quantized ones (see quant/format.h).
size_t dtype_size(DType t);
const char* dtype_name(DType t);
// Parses safetensors dtype names ("F32", "F16", "BF16", "I32", "U32", "U8"); false if unknown.
bool dtype_from_safetensors(std::string_view name, DType* out);

inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float f32_from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// IEEE half -> float, exact.
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13));  // Inf / NaN
  if (exp == 0) {
    if (mant == 0) return f32_from_bits(sign);
    // Subnormal: value = mant * 2^-24.
    float v = float(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

// float -> IEEE half, round to nearest even; overflow gives Inf, NaN stays NaN.
inline uint16_t f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return uint16_t(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // rounds to >= 65520: Inf
  if (ax < 0x38800000u) {
    // Result is subnormal (or zero): round ax * 2^24 to an integer, ties to even.
    // Adding 0.5f makes the FPU do the rounding: 0.5 has exponent -1, so the sum's ulp is 2^-24.
    float v = f32_from_bits(ax) + 0.5f;
    return uint16_t(sign | (f32_bits(v) - 0x3f000000u));
  }
  uint32_t mant_odd = (ax >> 13) & 1;
  ax += 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round to nearest even
  return uint16_t(sign | (ax >> 13));
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }

// float -> bfloat16, round to nearest even; NaN stays (quiet) NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);
  x += 0x7fffu + ((x >> 16) & 1);
  return uint16_t(x >> 16);
}

// Reads element i of a plain float-like array of type t (f32, f16 or bf16) as float.
inline float load_as_f32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

}  // namespace pensieve
