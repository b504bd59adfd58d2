// Reference MLX affine quantizer and dequantizer. Deterministic: the same input gives the same
// bytes on every machine, and the same bytes as MLX's CPU quantizer (quant/FORMAT.md).
#pragma once

#include <cstdint>

#include "quant/format.h"
#include "tensor/tensor.h"

namespace pensieve {

// An owning quantized matrix; view() is valid while it lives.
struct QuantizedMatrix {
  Buffer packed, scales, biases;
  WeightMatrix matrix;
  const WeightMatrix& view() const { return matrix; }
};

// Quantizes W[rows, cols] given as f32, f16 or bf16 with MLX's rule. Scales and biases are stored
// in `scale_dtype` (MLX stores them in the weight's own dtype).
Result<QuantizedMatrix> quantize(const void* w, DType w_dtype, int64_t rows, int64_t cols,
                                 int bits, int group_size, DType scale_dtype);

// Quantizes rows [r0, r1) into caller-provided planes laid out as for the whole matrix
// (used to quantize large matrices in parallel and to write files in a streaming way).
void quantize_rows(const void* w, DType w_dtype, int64_t cols, int bits, int group_size, DType scale_dtype,
                   int64_t r0, int64_t r1, uint32_t* packed, void* scales, void* biases);

// Dequantized row r of a quantized or dense matrix, as float32 (out has w.cols elements).
void dequantize_row(const WeightMatrix& w, int64_t r, float* out);

}  // namespace pensieve
