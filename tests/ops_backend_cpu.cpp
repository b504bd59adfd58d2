// One OpsBackend per CPU kernel table this machine runs: the model's ops:: front-end (thread
// pool splitting included) on that table.
#include <memory>

#include "tests/ops_backend.h"

namespace pensieve {
namespace {

class CpuBackend final : public OpsBackend {
 public:
  CpuBackend(const CpuKernels& k, int threads) : pool_(threads), ctx_(pool_, k) {}
  std::string name() const override { return std::string("cpu-") + ctx_.k().name; }

  bool matmul(float* y, const float* x, int64_t n, const WeightMatrix& w, Precision p) override {
    ops::matmul(ctx_, y, x, n, w, p);
    return true;
  }
  bool rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps) override {
    ops::rmsnorm(ctx_, y, x, w, rows, dim, eps);
    return true;
  }
  bool rope(float* x, int64_t n, int64_t stride, int n_heads, int head_dim, int rot_dim, const float* cos,
            const float* sin) override {
    ops::rope(ctx_, x, n, stride, n_heads, head_dim, rot_dim, cos, sin);
    return true;
  }
  bool attention(float* out, const float* q, const AttnSeq* seqs, int n_seqs, const KvLayer& kv, const AttnParams& p,
                 int64_t, int64_t) override {
    if (kv.head_dim > kMaxHeadDim) return false;
    ops::attention(ctx_, out, q, seqs, n_seqs, kv, p);
    return true;
  }
  bool silu_mul(float* out, const float* gu, int64_t n, int64_t ffn) override {
    ops::silu_mul(ctx_, out, gu, n, ffn);
    return true;
  }
  bool add(float* y, const float* x, int64_t n) override {
    ops::add(ctx_, y, x, n);
    return true;
  }
  bool embed(float* out, const int32_t* ids, int64_t n, const WeightMatrix& table) override {
    ops::embed(ctx_, out, ids, n, table);
    return true;
  }

 private:
  ThreadPool pool_;
  KernelContext ctx_;
};

}  // namespace

std::vector<std::unique_ptr<OpsBackend>> cpu_ops_backends() {
  const CpuKernels* tables[8];
  int n = cpu_kernel_tables(tables, 8);
  std::vector<std::unique_ptr<OpsBackend>> out;
  // Two threads: the pool splits rows, so the split itself is under test too.
  for (int i = 0; i < n; ++i) out.push_back(std::make_unique<CpuBackend>(*tables[i], 2));
  return out;
}

}  // namespace pensieve
