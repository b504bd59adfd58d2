#include "quant/format.h"

namespace pensieve {

int64_t WeightMatrix::nbytes() const {
  if (!quantized()) return rows * cols * int64_t(dtype_size(dtype));
  int64_t planes = 2 * rows * groups_per_row() * int64_t(dtype_size(scale_dtype));
  return rows * words_per_row() * 4 + planes;
}

Status check_quant_params(int bits, int group_size, DType scale_dtype, int64_t rows, int64_t cols) {
  if (bits != 4 && bits != 8) return errorf("quant: bits is %d, expected 4 or 8", bits);
  if (group_size != 32 && group_size != 64 && group_size != 128)
    return errorf("quant: group size is %d, expected 32, 64 or 128", group_size);
  if (scale_dtype != DType::f16 && scale_dtype != DType::bf16 && scale_dtype != DType::f32)
    return errorf("quant: scale type is %s, expected f16, bf16 or f32", dtype_name(scale_dtype));
  if (rows <= 0 || cols <= 0)
    return errorf("quant: shape [%lld, %lld] must be positive", (long long)rows, (long long)cols);
  if (cols % group_size != 0)
    return errorf("quant: %lld columns are not divisible by the group size %d", (long long)cols, group_size);
  return Status::Ok();
}

Result<WeightMatrix> make_quant_matrix(int bits, int group_size, int64_t rows, int64_t cols,
                                       const void* packed, int64_t packed_bytes,
                                       const void* scales, int64_t scales_bytes,
                                       const void* biases, int64_t biases_bytes, DType scale_dtype) {
  PENSIEVE_TRY(check_quant_params(bits, group_size, scale_dtype, rows, cols));
  WeightMatrix w;
  w.dtype = bits == 4 ? DType::q4 : DType::q8;
  w.rows = rows;
  w.cols = cols;
  w.data = packed;
  w.scales = scales;
  w.biases = biases;
  w.scale_dtype = scale_dtype;
  w.group_size = group_size;
  int64_t want_packed = rows * w.words_per_row() * 4;
  int64_t want_plane = rows * w.groups_per_row() * int64_t(dtype_size(scale_dtype));
  if (packed_bytes != want_packed)
    return errorf("quant: packed weights are %lld bytes, expected %lld for [%lld, %lld] at %d bits",
                  (long long)packed_bytes, (long long)want_packed, (long long)rows, (long long)cols, bits);
  if (scales_bytes != want_plane)
    return errorf("quant: scales are %lld bytes, expected %lld", (long long)scales_bytes, (long long)want_plane);
  if (biases_bytes != want_plane)
    return errorf("quant: biases are %lld bytes, expected %lld", (long long)biases_bytes, (long long)want_plane);
  if (!packed || !scales || !biases) return errorf("quant: null buffer");
  return w;
}

}  // namespace pensieve
