// Helpers shared by the ops_*.cpp files (not part of the public API).
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/vulkan/ops.h"

namespace pensieve::vulkan::detail {

// WTYPE / STYPE spec-constant values for a weight; error for types no shader reads.
inline Result<WeightType> weight_type(DType t) {
  switch (t) {
    case DType::q4: return kWtQ4;
    case DType::q8: return kWtQ8;
    case DType::f32: return kWtF32;
    case DType::f16: return kWtF16;
    case DType::bf16: return kWtBf16;
    default: return errorf("vulkan: weight dtype %s is not supported", dtype_name(t));
  }
}
inline Result<ScaleType> scale_type(DType t) {
  switch (t) {
    case DType::f32: return kStF32;
    case DType::f16: return kStF16;
    case DType::bf16: return kStBf16;
    default: return errorf("vulkan: scale dtype %s is not supported", dtype_name(t));
  }
}

// Splits `blocks` workgroups over grid x and z (shaders compute z * gridX + x and skip the
// excess), since the x dimension may be limited to 65535.
inline Status fold_grid(const Context& ctx, uint64_t blocks, uint32_t* gx, uint32_t* gz) {
  uint64_t mx = ctx.info().max_workgroup_count[0];
  uint64_t x = std::min<uint64_t>(std::max<uint64_t>(blocks, 1), mx);
  uint64_t z = (blocks + x - 1) / x;
  if (z > ctx.info().max_workgroup_count[2]) return errorf("vulkan: %llu workgroups exceed the grid", (unsigned long long)blocks);
  *gx = uint32_t(x);
  *gz = uint32_t(std::max<uint64_t>(z, 1));
  return Status::Ok();
}

// Shaders index with 32-bit unsigned integers: every index they form must stay below 2^32.
inline bool fits_u32(int64_t v) { return v >= 0 && v <= int64_t(UINT32_MAX); }

inline uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// The slice must hold at least `bytes`.
inline Status need(const char* op, const char* what, const BufferSlice& s, uint64_t bytes) {
  if (!s.valid() || s.size < bytes)
    return errorf("vulkan %s: %s slice holds %llu bytes, needs %llu", op, what,
                  (unsigned long long)(s.valid() ? s.size : 0), (unsigned long long)bytes);
  return Status::Ok();
}

}  // namespace pensieve::vulkan::detail
