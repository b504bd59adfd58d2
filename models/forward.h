// The forward pass interface shared by the CPU and Vulkan backends: a batch of sequence chunks
// in, logits out. Prefill, decode and mixed batches are the same call.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "models/config.h"
#include "tensor/result.h"

namespace pensieve {

// One sequence's new tokens in a batch: tokens[i] sits at position pos0 + i, and the KV cache
// already holds positions [0, pos0). block_table covers positions [0, pos0 + n).
struct SeqChunk {
  const int32_t* tokens = nullptr;
  int64_t n = 0;
  int64_t pos0 = 0;
  const int32_t* block_table = nullptr;
  bool long_rope = false;   // longrope models: the sequence uses long factors (ModelConfig::long_rope)
  enum class Logits : uint8_t { none, last, all } logits = Logits::last;
  // run_topk: > 0 (<= kMaxTopK) returns this chunk's logits rows as their top_k best candidates
  // instead of full rows (sampling on the GPU: a few numbers cross back per token). run() ignores it.
  int top_k = 0;
};

inline constexpr int kMaxTopK = 64;

// Candidates of the rows of chunks with top_k > 0, in batch order: row i holds the top_k largest
// logits of its row, largest first, ties to the lower token id (entries past top_k unspecified).
struct TopK {
  float* values = nullptr;  // [rows, kMaxTopK]
  int32_t* ids = nullptr;   // [rows, kMaxTopK]
};

// Rows of logits a batch produces: per chunk, n (all), 1 (last) or 0 (none).
int64_t logits_rows(const std::vector<SeqChunk>& batch);

// The attention parameters of a model's layers, queries read from its fused qkv rows
// ([q heads | k heads | v heads]) and written as [q heads] rows: one definition for every backend.
AttnParams attn_params(const ModelConfig& c);
// Of those, the rows of chunks with top_k > 0 (run_topk returns them as TopK rows).
int64_t topk_rows(const std::vector<SeqChunk>& batch);

class Forward {
 public:
  virtual ~Forward() = default;
  virtual const char* name() const = 0;
  virtual int64_t vocab() const = 0;
  // Runs the batch, writes K/V of every new token into the cache, and writes logits
  // [logits_rows(batch), vocab] in batch order.
  virtual Status run(const std::vector<SeqChunk>& batch, float* logits) = 0;
  // As run(), but the rows of chunks with top_k > 0 come back in `top` (see TopK) and `logits`
  // gets only the other rows [logits_rows - topk_rows, vocab], in batch order. The default runs
  // full logits and selects on the CPU; a GPU backend selects on the device.
  virtual Status run_topk(const std::vector<SeqChunk>& batch, float* logits, const TopK& top);
  // True when a token's results never depend on the batch it runs in (chunking, other sequences,
  // recomputation after preemption give the same tokens).
  virtual bool batch_invariant() const { return true; }
  // True when the first step of each size class builds its GPU pipelines (a stall of up to
  // hundreds of ms the first time a binary runs on a machine): Engine::warm_up() runs those
  // classes before serving.
  virtual bool builds_on_first_use() const { return false; }
  // One line for logs and benchmarks: backend, device, memory.
  virtual std::string describe() const { return name(); }

 private:
  std::vector<float> topk_scratch_;
};

// The k best (value, id) of x[0, n): largest first, ties to the lower id (the same order as the
// GPU top-k and the sampler's).
void select_topk(const float* x, int64_t n, int k, float* values, int32_t* ids);

}  // namespace pensieve
