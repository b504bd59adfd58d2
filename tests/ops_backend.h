// A backend under test for tests/test_ops.cpp (and bench/): it runs the ops of kernels/kernels.h
// on host arrays, whatever it does inside (a CPU kernel table, or uploads + a Vulkan dispatch).
// The harness has no backend-specific branches: a backend that cannot run a case returns false
// from the op (counted as skipped, never passed).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/ops.h"

namespace pensieve {

class OpsBackend {
 public:
  virtual ~OpsBackend() = default;
  virtual std::string name() const = 0;

  // Shapes and semantics as in kernels/kernels.h; whole ops (all rows / tokens / heads).
  virtual bool matmul(float* y, const float* x, int64_t n, const WeightMatrix& w, Precision p) = 0;
  virtual bool rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps) = 0;
  virtual bool rope(float* x, int64_t n, int64_t stride, int n_heads, int head_dim, int rot_dim, const float* cos,
                    const float* sin) = 0;
  virtual bool attention(float* out, const float* q, const AttnSeq* seqs, int n_seqs, const KvLayer& kv,
                         const AttnParams& p, int64_t n_q_rows, int64_t kv_blocks) = 0;
  virtual bool silu_mul(float* out, const float* gu, int64_t n, int64_t ffn) = 0;
  virtual bool add(float* y, const float* x, int64_t n) = 0;
  virtual bool embed(float* out, const int32_t* ids, int64_t n, const WeightMatrix& table) = 0;
};

// One backend per CPU kernel table this machine runs (reference first).
std::vector<std::unique_ptr<OpsBackend>> cpu_ops_backends();
// Vulkan devices usable for tests (empty when built without Vulkan or no device is present).
std::vector<std::unique_ptr<OpsBackend>> vulkan_ops_backends();

}  // namespace pensieve
