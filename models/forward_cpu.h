// The decoder forward pass on the CPU kernels (kernels/ops.h).
#pragma once

#include <vector>

#include "kernels/ops.h"
#include "models/forward.h"
#include "models/kv_cache.h"
#include "models/rope.h"
#include "models/weights.h"

namespace pensieve {

class CpuForward : public Forward {
 public:
  CpuForward(const ModelConfig& config, const Weights& weights, KvCache& cache, KernelContext& ctx, Precision precision);
  const char* name() const override { return "cpu"; }
  int64_t vocab() const override { return c_.vocab; }
  Status run(const std::vector<SeqChunk>& batch, float* logits) override;

 private:
  void attention_block(int l, const std::vector<SeqChunk>& batch, int64_t T);
  void mlp_block(int l, int64_t T);
  void project(const Projection& p, float* y, const float* x, int64_t T);
  void rope_tables(const std::vector<SeqChunk>& batch, int64_t T);
  void store_kv(int l, const std::vector<SeqChunk>& batch);

  const ModelConfig& c_;
  const Weights& w_;
  KvCache& cache_;
  KernelContext& ctx_;
  Precision precision_;
  RopeTables rope_;

  // Scratch, sized for the largest batch seen (grows, never shrinks).
  std::vector<float> x_, xn_, qkv_, attn_, proj_, gu_, act_, cos_, sin_;
  std::vector<AttnSeq> seqs_;
};

}  // namespace pensieve
