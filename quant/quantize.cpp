#include "quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace pensieve {

static void store_scalar(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::f16: static_cast<uint16_t*>(p)[i] = f32_to_f16(v); break;
    case DType::bf16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); break;
    default: static_cast<float*>(p)[i] = v; break;
  }
}

// MLX's rule (mlx/backend/cpu/quantized.cpp, quantize), one group of `group_size` values:
//   scale = max((max - min) / n_bins, 1e-7); the edge of larger magnitude is kept exact:
//   if |min| > |max|: edge = min, scale > 0, else edge = max, scale < 0 (negative scales are normal);
//   q0 = rint(edge / scale); if q0 != 0 { scale = edge / q0; bias = edge } else bias = 0;
//   q = clip(rint((w - bias) / scale), 0, n_bins); scale and bias are then rounded to their storage type.
void quantize_rows(const void* w, DType w_dtype, int64_t cols, int bits, int group_size, DType scale_dtype,
                   int64_t r0, int64_t r1, uint32_t* packed, void* scales, void* biases) {
  const float n_bins = float((1 << bits) - 1);
  const float eps = 1e-7f;
  const int per_word = 32 / bits;
  const int64_t groups = cols / group_size;
  const int64_t words = cols / per_word;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t base = r * cols + g * group_size;
      float w_min = std::numeric_limits<float>::infinity();
      float w_max = -w_min;
      for (int j = 0; j < group_size; ++j) {
        float v = load_as_f32(w, w_dtype, base + j);
        w_max = std::max(w_max, v);
        w_min = std::min(w_min, v);
      }
      bool mask = std::fabs(w_min) > std::fabs(w_max);
      float scale = std::max((w_max - w_min) / n_bins, eps);
      scale = mask ? scale : -scale;
      float edge = mask ? w_min : w_max;
      float q0 = std::rint(edge / scale);
      float bias = 0;
      if (q0 != 0) {
        scale = edge / q0;
        bias = edge;
      }
      uint32_t* out = packed + r * words + g * (group_size / per_word);
      for (int j = 0; j < group_size / per_word; ++j) {
        uint32_t word = 0;
        for (int k = 0; k < per_word; ++k) {
          float v = load_as_f32(w, w_dtype, base + j * per_word + k);
          float q = std::rint((v - bias) / scale);
          q = std::min(std::max(q, 0.0f), n_bins);
          word |= uint32_t(q) << (k * bits);
        }
        out[j] = word;
      }
      store_scalar(scales, scale_dtype, r * groups + g, scale);
      store_scalar(biases, scale_dtype, r * groups + g, bias);
    }
  }
}

Result<QuantizedMatrix> quantize(const void* w, DType w_dtype, int64_t rows, int64_t cols,
                                 int bits, int group_size, DType scale_dtype) {
  if (w_dtype != DType::f32 && w_dtype != DType::f16 && w_dtype != DType::bf16)
    return errorf("quantize: input type is %s, expected f32, f16 or bf16", dtype_name(w_dtype));
  PENSIEVE_TRY(check_quant_params(bits, group_size, scale_dtype, rows, cols));
  QuantizedMatrix q;
  int64_t packed_bytes = rows * cols * bits / 8;
  int64_t plane_bytes = rows * (cols / group_size) * int64_t(dtype_size(scale_dtype));
  q.packed = Buffer(size_t(packed_bytes));
  q.scales = Buffer(size_t(plane_bytes));
  q.biases = Buffer(size_t(plane_bytes));
  quantize_rows(w, w_dtype, cols, bits, group_size, scale_dtype, 0, rows, q.packed.as<uint32_t>(),
                q.scales.data(), q.biases.data());
  auto m = make_quant_matrix(bits, group_size, rows, cols, q.packed.data(), packed_bytes, q.scales.data(),
                             plane_bytes, q.biases.data(), plane_bytes, scale_dtype);
  if (!m) return std::move(m).take_error();
  q.matrix = *m;
  return q;
}

void dequantize_row(const WeightMatrix& w, int64_t r, float* out) {
  if (!w.quantized()) {
    for (int64_t c = 0; c < w.cols; ++c) out[c] = load_as_f32(w.data, w.dtype, r * w.cols + c);
    return;
  }
  const int bits = w.bits();
  const int per_word = 32 / bits;
  const uint32_t mask = (1u << bits) - 1;
  const uint32_t* words = w.row_words(r);
  const int64_t groups = w.groups_per_row();
  for (int64_t c = 0; c < w.cols; ++c) {
    uint32_t q = (words[c / per_word] >> ((c % per_word) * bits)) & mask;
    int64_t g = r * groups + c / w.group_size;
    out[c] = load_as_f32(w.scales, w.scale_dtype, g) * float(q) + load_as_f32(w.biases, w.scale_dtype, g);
  }
}

}  // namespace pensieve
