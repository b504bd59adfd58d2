// The weight formats every kernel reads: MLX affine quantization (native) and plain dense matrices.
//
// MLX affine layout of a matrix W[rows, cols] (see quant/FORMAT.md for the full rule):
//   packed  uint32 [rows, cols * bits / 32]   bits=4: value j of a word in bits 4j..4j+3 (8 per word)
//                                             bits=8: value j of a word in bits 8j..8j+7 (4 per word)
//   scales  [rows, cols / group_size]         f16, bf16 or f32
//   biases  [rows, cols / group_size]         same type as scales
//   W[r, c] = scales[r, c / group_size] * q[r, c] + biases[r, c / group_size]
// The packed words of a row are contiguous (a row is rows_bytes() long), so a matrix can be read
// with 32-bit loads and split by rows across threads; scales and biases are separate planes.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"
#include "tensor/result.h"

namespace pensieve {

// A read-only view of a weight matrix [rows = out features, cols = in features], quantized or dense.
struct WeightMatrix {
  DType dtype = DType::f32;  // q4 / q8: MLX affine; f32 / f16 / bf16: dense row-major
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;  // q4/q8: packed uint32 words; dense: the values

  // Quantized only.
  const void* scales = nullptr;
  const void* biases = nullptr;
  DType scale_dtype = DType::f16;
  int group_size = 0;

  bool quantized() const { return dtype == DType::q4 || dtype == DType::q8; }
  int bits() const { return dtype == DType::q4 ? 4 : 8; }
  int64_t words_per_row() const { return cols * bits() / 32; }      // quantized only
  int64_t groups_per_row() const { return cols / group_size; }       // quantized only
  const uint32_t* row_words(int64_t r) const { return static_cast<const uint32_t*>(data) + r * words_per_row(); }
  // Bytes the matrix occupies in memory (packed + scales + biases, or the dense values).
  int64_t nbytes() const;
};

// Checks a quantization description: bits 4 or 8, group size 32/64/128, cols divisible by the
// group size, scale type f16/bf16/f32.
Status check_quant_params(int bits, int group_size, DType scale_dtype, int64_t rows, int64_t cols);

// Builds a quantized view after checking that each buffer has exactly the size the shape implies.
Result<WeightMatrix> make_quant_matrix(int bits, int group_size, int64_t rows, int64_t cols,
                                       const void* packed, int64_t packed_bytes,
                                       const void* scales, int64_t scales_bytes,
                                       const void* biases, int64_t biases_bytes, DType scale_dtype);

}  // namespace pensieve
