// The decoder forward pass on a Vulkan GPU (kernels/vulkan/): the same computation as
// forward_cpu.cpp, recorded once per batch shape and replayed.
//
// Memory: the weights are uploaded once (device-local; a plain memcpy on unified-memory devices),
// each layer's K and V are their own device buffers in the KvCache layout (a binding is capped at
// 4 GiB on NVIDIA), and activations are allocated once for kMaxStepTokens tokens. A batch larger
// than that (or with more than kMaxStepRows logits rows) runs as several submissions.
//
// A step: the host writes the per-step inputs (token ids, cos/sin rows computed in double as the
// CPU path does, cache slots, per-token attention metadata, block tables, the rows that want
// logits) into host-visible input buffers (device-local where the GPU has a host-visible window,
// so the step's shaders do not read them across PCIe), then submits ONE command buffer and waits. The command
// buffer depends only on the step's shape (tokens, logits rows, top-k rows and k, attention splits),
// so it is recorded on first use and replayed after (a small cache of shapes; decode with B
// sequences is one shape until the context grows past a split boundary).
//
// Per layer the step records 6 dispatches, small ops fused into the matvecs:
//   qkv      = matvec(rmsnorm(h) · attn_norm)          (norm fused into the activation load)
//   rope_store: RoPE on q in place, roped k and v into the cache slot
//   attn     = split-K attention, one workgroup per (token, head, 512-key split)  [+ combine]
//   h       += matvec(attn) with o_proj                (residual add fused into the store)
//   gu       = matvec(rmsnorm(h) · mlp_norm)
//   h       += matvec(silu(gate) · up) with down_proj  (silu_mul fused into the activation load)
// then the rows that want logits are gathered, lm_head runs with the final norm fused, and either
// the logits rows or their top-k (GPU selection) are copied to host-visible memory.
//
// One-token steps (a single sequence decoding, context <= 512) in fast precision on NVIDIA run
// each layer as ONE persistent dispatch instead (ops::decode_layer, shaders/decode_layer.comp;
// q4 weights, head_dim <= 96): one workgroup per multiprocessor, synchronising among themselves
// between the five stages (H200, Phi-3-mini: 1.40 instead of 1.55 ms of GPU time per token). If
// its workgroups ever fail to run together (a sync gives up), the step is rerun on the path
// above, which then stays. PENSIEVE_VK_PERSISTENT=0 turns it off (A/B runs).
//
// Batch invariance: every kernel computes a token's values independently of the batch (the matvec
// by construction, attention with fixed split positions), so a sequence gets the same tokens alone,
// batched, chunked or recomputed after preemption. Precision::fast differs from exact where the
// device has integer dot products (the q4 matvec rounds x to int8 per 32 values, per token: still
// batch-invariant) or cooperative matrices: steps of >= 5 tokens then run the q4 projections in f16
// on the tensor cores (f32 accumulation), which is not the matvec's arithmetic.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/vulkan/command.h"
#include "kernels/vulkan/device.h"
#include "kernels/vulkan/ops.h"
#include "models/forward.h"
#include "models/kv_cache.h"
#include "models/rope.h"
#include "models/weights.h"

namespace pensieve {

class VulkanForward : public Forward {
 public:
  static constexpr int64_t kMaxStepTokens = 512;
  static constexpr int64_t kMaxStepRows = 64;  // logits rows per submission
  static constexpr uint32_t kAttnSplit = 512;  // keys per attention split (fixed: batch invariance)
  static constexpr int64_t kPrefillAttnMinQ = 16;  // queries in a chunk for the tiled prefill attention

  // Why this model cannot run on the Vulkan backend ("" if it can).
  static std::string unsupported(const ModelConfig& c, const Weights& w, const KvCache& cache);
  static Result<std::unique_ptr<VulkanForward>> create(const ModelConfig& c, const Weights& w, KvCache& cache,
                                                       Precision precision, std::unique_ptr<vulkan::Context> ctx);
  ~VulkanForward() override;

  const char* name() const override { return "vulkan"; }
  int64_t vocab() const override { return c_.vocab; }
  std::string describe() const override;
  // Not with Precision::fast on a device with cooperative matrices (steps of >= 64 tokens use them).
  bool batch_invariant() const override;
  bool builds_on_first_use() const override { return true; }
  Status run(const std::vector<SeqChunk>& batch, float* logits) override;
  Status run_topk(const std::vector<SeqChunk>& batch, float* logits, const TopK& top) override;

  vulkan::Context& context() { return *ctx_; }
  // Per-dispatch GPU times: on (recordings made from now on carry timestamps) or off.
  void set_profiling(bool on);
  // The timings of the last submission (profiling on), labelled "<op>/<pipeline>".
  Result<std::vector<vulkan::OpTime>> last_profile() const;
  // GPU time of the last submission (ms), profiling on or off.
  Result<double> last_gpu_ms() const;

 private:
  // Keys per attention split: kAttnSplit, or PENSIEVE_VK_ATTN_SPLIT (a multiple of 128; tuning runs).
  // Fixed for the process, so results stay independent of batching.
  static uint32_t attn_split();
  // Attention splits of a context of `len` keys.
  static uint32_t attn_splits(int64_t len) { return uint32_t((len + attn_split() - 1) / attn_split()); }
  struct Piece;
  struct Shape {
    int64_t tokens = 0, full_rows = 0, top_rows = 0;
    int k = 0;
    uint32_t splits = 0;
    // Attention work items: attn_seqs = 0: one per token (the decode kernel; batch-invariant);
    // else one per chunk of up to attn_max_q queries (the tensor-core prefill kernel) and one per
    // single-token sequence (attn_decode of them, the decode kernel); see write_inputs.
    int64_t attn_seqs = 0, attn_max_q = 0, attn_decode = 0;
    bool persistent = false;  // one token: a persistent dispatch per layer (see record())
    bool one_query = false;   // every token is the only one of its sequence (decode)
    bool operator<(const Shape& o) const {
      return std::tie(tokens, full_rows, top_rows, k, splits, attn_seqs, attn_max_q, attn_decode, persistent,
                      one_query) < std::tie(o.tokens, o.full_rows, o.top_rows, o.k, o.splits, o.attn_seqs,
                                            o.attn_max_q, o.attn_decode, o.persistent, o.one_query);
    }
  };

  VulkanForward(const ModelConfig& c, const Weights& w, KvCache& cache, Precision p, std::unique_ptr<vulkan::Context> ctx);
  Status init();
  Status upload_weights();
  Status allocate();
  Status run_pieces(const std::vector<SeqChunk>& batch, float* logits, const TopK* top);
  Status run_piece(const Piece& piece, float* logits, const TopK* top);
  Status write_inputs(const Piece& piece, Shape* shape);
  Result<vulkan::CommandList*> recording(const Shape& s);
  Status record(vulkan::CommandList& cl, const Shape& s);
  vulkan::ops::DecodeLayer layer_args(int l) const;
  Status linear(vulkan::CommandList& cl, const vulkan::BufferSlice& y, int64_t ldy, const vulkan::BufferSlice& x,
                int64_t ldx, int64_t n, const std::vector<vulkan::GpuWeight>& parts, const vulkan::MatmulFusion& f);
  uint64_t attn_scratch_per_token(uint32_t splits) const;

  const ModelConfig& c_;
  const Weights& w_;
  KvCache& cache_;
  Precision precision_;
  std::unique_ptr<vulkan::Context> ctx_;  // declared first: destroyed after every buffer below
  RopeTables rope_;

  // Weights (device).
  std::vector<vulkan::GpuWeightBuffers> owned_;
  struct Layer {
    std::vector<vulkan::GpuWeight> qkv, gate_up;  // parts (fused models: one)
    vulkan::GpuWeight o, down;
    vulkan::BufferSlice attn_norm, mlp_norm;
  };
  std::vector<Layer> layers_;
  vulkan::GpuWeight embed_, lm_head_;
  vulkan::Buffer norms_;
  vulkan::BufferSlice final_norm_;
  // KV cache (device), one K and one V buffer per layer.
  std::vector<vulkan::Buffer> k_, v_;
  std::vector<vulkan::GpuKv> kv_;
  // Activations (device).
  vulkan::Buffer x_, xn_, qkv_, attn_, gu_, act_, proj_, xl_, logits_, attn_scratch_, topv_, topi_, topk_scratch_;
  vulkan::Buffer ssq_;  // the tensor-core path's norm fusion: sums of squares of x per token and row tile
  // Prefill chunks may take the tensor-core attention: the step is not batch-invariant anyway
  // (tensor-core matmuls) and the device and cache layout support it (set by init()).
  bool chunk_attention_ = false;
  // One-token steps run each layer as one persistent dispatch (ops::decode_layer; set by init(),
  // cleared for the process if a step's workgroups ever fail to run together).
  bool persistent_ = false;
  vulkan::Buffer sync_, out_sync_;  // its counters, and the give-up flag read back
  bool sync_mapped_ = false;         // sync_ is host-visible (no out_sync_)
  uint64_t attn_scratch_bytes_ = 0;
  // Per-step inputs (host-visible) and results (host-readable).
  vulkan::Buffer ids_, slots_, cos_, sin_, meta_, tables_, gidx_;
  vulkan::Buffer out_logits_, out_topv_, out_topi_;
  int64_t table_capacity_ = 0;

  std::map<Shape, std::unique_ptr<vulkan::CommandList>> recordings_;
  vulkan::CommandList* last_ = nullptr;
  bool profiling_ = false;
  std::vector<float> full_scratch_;
};

}  // namespace pensieve
