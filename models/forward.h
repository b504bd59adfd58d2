// The forward pass interface shared by the CPU and Vulkan backends: a batch of sequence chunks
// in, logits out. Prefill, decode and mixed batches are the same call.
#pragma once

#include <cstdint>
#include <vector>

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
};

// Rows of logits a batch produces: per chunk, n (all), 1 (last) or 0 (none).
int64_t logits_rows(const std::vector<SeqChunk>& batch);

class Forward {
 public:
  virtual ~Forward() = default;
  virtual const char* name() const = 0;
  // Runs the batch, writes K/V of every new token into the cache, and writes logits
  // [logits_rows(batch), vocab] in batch order.
  virtual Status run(const std::vector<SeqChunk>& batch, float* logits) = 0;
};

}  // namespace pensieve
