// The CPU ops the model calls: each splits its work across the shared thread pool and runs the
// selected kernel table's entries (kernels/kernels.h) on the slices.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"
#include "tensor/tensor.h"
#include "tensor/thread_pool.h"

namespace pensieve {

// exact: f32 activations everywhere (matches float64 references to ~1e-5 relative).
// fast:  activations of quantized matmuls quantized to int8 per block of 32 for integer dot
//        products (as llama.cpp's q8_0 path); the error this adds is measured in kernels/README.md.
//        Dense weights always run exact.
// Either way each token's result is independent of the batch it runs in.
enum class Precision : uint8_t { exact, fast };

// Threads, the kernel table and scratch memory for one engine (used by one thread at a time).
class KernelContext {
 public:
  explicit KernelContext(ThreadPool& pool, const CpuKernels& k = cpu_kernels()) : pool_(pool), k_(k) {}
  ThreadPool& pool() const { return pool_; }
  const CpuKernels& k() const { return k_; }
  // Scratch for prepared activations (one matmul at a time); grows on first use of a larger
  // size, then is reused, so decode steps never allocate.
  ActF32 act_f32_scratch(int64_t n, int64_t cols, int bits, int group_size);
  ActQ8 act_q8_scratch(int64_t n, int64_t cols, int bits, int group_size);

 private:
  ThreadPool& pool_;
  const CpuKernels& k_;
  Buffer act_;
};

namespace ops {

// y[n, w.rows] = x[n, w.cols] · Wᵀ.  ldx/ldy default to dense rows.
void matmul(KernelContext& c, float* y, const float* x, int64_t n, const WeightMatrix& w, Precision p,
            int64_t ldx = 0, int64_t ldy = 0);
void rmsnorm(KernelContext& c, float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps);
void rope(KernelContext& c, float* x, int64_t n, int64_t stride, int n_heads, int head_dim, int rot_dim,
          const float* cos, const float* sin);
void attention(KernelContext& c, float* out, const float* q, const AttnSeq* seqs, int n_seqs, const KvLayer& kv,
               const AttnParams& p);
void silu_mul(KernelContext& c, float* out, const float* gu, int64_t n, int64_t ffn);
void add(KernelContext& c, float* y, const float* x, int64_t n);
// out[t, :] = dequantized row ids[t] of the table (quantized or dense). ids must be < table.rows.
void embed(KernelContext& c, float* out, const int32_t* ids, int64_t n, const WeightMatrix& table);

// Small helpers used by samplers (single-threaded: a vocab row is short work).
int64_t argmax(const float* x, int64_t n);
void softmax(float* x, int64_t n);

}  // namespace ops
}  // namespace pensieve
