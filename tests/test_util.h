// Helpers shared by the kernel tests: seeded inputs already rounded to their storage type,
// weight matrices, error metrics and guarded output buffers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "quant/quantize.h"
#include "tensor/dtype.h"

namespace pensieve::test {

// Base seed: PENSIEVE_TEST_SEED if set (to replay a failure), else a fixed one. Each case
// derives its own seed from it and prints it on failure.
inline uint64_t base_seed() {
  const char* env = std::getenv("PENSIEVE_TEST_SEED");
  return env ? std::strtoull(env, nullptr, 10) : 20260801;
}

inline std::vector<float> normal(std::mt19937_64& rng, size_t n, float sigma = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> nd(mean, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// Activations like a transformer's: mostly N(0, 1), a few channels 20x larger (the outlier
// features of LLM residual streams), so int8 blocks see realistic dynamic range.
inline std::vector<float> activations(std::mt19937_64& rng, int64_t n, int64_t cols) {
  std::vector<float> x = normal(rng, size_t(n * cols));
  std::uniform_int_distribution<int64_t> pick(0, cols - 1);
  for (int k = 0; k < int(cols / 256) + 1; ++k) {
    int64_t c = pick(rng);
    for (int64_t t = 0; t < n; ++t) x[size_t(t * cols + c)] *= 20.0f;
  }
  return x;
}

inline uint16_t to_storage(float v, DType t) { return t == DType::bf16 ? f32_to_bf16(v) : f32_to_f16(v); }

// Values as the storage type holds them (f16/bf16 round-trip; f32 unchanged).
inline void round_to(std::vector<float>& v, DType t) {
  if (t == DType::f16) for (float& x : v) x = f16_to_f32(f32_to_f16(x));
  if (t == DType::bf16) for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
}

// A weight matrix with its own storage: quantized (q4/q8, MLX affine) or dense (f32/f16/bf16).
struct TestWeights {
  QuantizedMatrix q;              // quantized
  std::vector<uint8_t> dense;     // dense values in their storage type
  WeightMatrix w;
  const WeightMatrix& view() const { return w; }
};

inline TestWeights make_weights(std::mt19937_64& rng, DType dtype, int64_t rows, int64_t cols, int group = 64,
                                DType scale_dtype = DType::f16, float sigma = 0.05f) {
  TestWeights tw;
  std::vector<float> v = normal(rng, size_t(rows * cols), sigma);
  if (dtype == DType::q4 || dtype == DType::q8) {
    auto q = quantize(v.data(), DType::f32, rows, cols, dtype == DType::q4 ? 4 : 8, group, scale_dtype);
    if (!q.ok()) std::abort();  // test setup bug, not a kernel failure
    tw.q = std::move(*q);
    tw.w = tw.q.matrix;
    return tw;
  }
  size_t es = dtype_size(dtype);
  tw.dense.resize(size_t(rows * cols) * es);
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == DType::f32) std::memcpy(&tw.dense[i * 4], &v[i], 4);
    else {
      uint16_t h = to_storage(v[i], dtype);
      std::memcpy(&tw.dense[i * 2], &h, 2);
    }
  }
  tw.w.dtype = dtype;
  tw.w.rows = rows;
  tw.w.cols = cols;
  tw.w.data = tw.dense.data();
  return tw;
}

// Error of `got` against `want`: NMSE = Σ(got−want)² / Σ want², max_rel = max|got−want| / max|want|,
// and the count of non-finite values where `want` is finite.
struct Errors {
  double nmse = 0, max_rel = 0;
  int64_t nonfinite = 0;
};
inline Errors compare(const float* got, const float* want, int64_t n) {
  double num = 0, den = 0, max_err = 0, max_want = 0;
  Errors e;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(want[i])) continue;
    if (!std::isfinite(got[i])) { ++e.nonfinite; continue; }
    double d = double(got[i]) - double(want[i]);
    num += d * d;
    den += double(want[i]) * double(want[i]);
    max_err = std::fmax(max_err, std::fabs(d));
    max_want = std::fmax(max_want, std::fabs(double(want[i])));
  }
  e.nmse = den > 0 ? num / den : num;
  e.max_rel = max_want > 0 ? max_err / max_want : max_err;
  return e;
}

// A float array with guard bytes on both sides; the body starts as NaN so unwritten outputs
// are caught as non-finite, and guard() says whether anything wrote outside it.
class Guarded {
 public:
  static constexpr size_t kGuard = 256;
  static constexpr uint8_t kPattern = 0xA5;
  explicit Guarded(int64_t n) : n_(size_t(n)), raw_(n_ * sizeof(float) + 2 * kGuard, kPattern) {
    for (size_t i = 0; i < n_; ++i) data()[i] = NAN;
  }
  Guarded(int64_t n, const std::vector<float>& init) : Guarded(n) { std::memcpy(data(), init.data(), n_ * 4); }
  float* data() { return reinterpret_cast<float*>(raw_.data() + kGuard); }
  const float* data() const { return reinterpret_cast<const float*>(raw_.data() + kGuard); }
  bool guard_intact() const {
    for (size_t i = 0; i < kGuard; ++i)
      if (raw_[i] != kPattern || raw_[kGuard + n_ * 4 + i] != kPattern) return false;
    return true;
  }

 private:
  size_t n_;
  std::vector<uint8_t> raw_;  // data() is only 16-byte aligned: kernels must not assume more
};

}  // namespace pensieve::test
