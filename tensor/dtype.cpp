#include "tensor/dtype.h"

namespace pensieve {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::u32: return 4;
    case DType::u8: return 1;
    case DType::q4:
    case DType::q8: return 0;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::u32: return "u32";
    case DType::u8: return "u8";
    case DType::q4: return "q4";
    case DType::q8: return "q8";
  }
  return "?";
}

bool dtype_from_safetensors(std::string_view name, DType* out) {
  struct Entry { std::string_view name; DType t; };
  static constexpr Entry kTable[] = {{"F32", DType::f32}, {"F16", DType::f16}, {"BF16", DType::bf16},
                                     {"I32", DType::i32}, {"U32", DType::u32}, {"U8", DType::u8}};
  for (const Entry& e : kTable)
    if (e.name == name) { *out = e.t; return true; }
  return false;
}

}  // namespace pensieve
