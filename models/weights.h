// Weights: named views of a model's matrices, read in place from mmap'd safetensors (single file
// or sharded with model.safetensors.index.json). MLX 4/8-bit modules (.weight uint32 + .scales +
// .biases) are used as they are; dense f16/bf16/f32 matrices are quantized to 4-bit group 64 at
// load, or kept dense with `quantize = false` (reference runs). Norm vectors are converted to f32.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/config.h"
#include "quant/quantize.h"
#include "tensor/safetensors.h"
#include "tensor/thread_pool.h"

namespace pensieve {

// A projection whose output may be split over several tensors (Llama's separate q/k/v, gate/up)
// or fused in one (Phi-3's qkv_proj, gate_up_proj). Part i writes output columns
// [offset_i, offset_i + parts[i].rows) of the fused result.
struct Projection {
  std::vector<WeightMatrix> parts;
  int64_t rows() const;
  int64_t cols() const { return parts.empty() ? 0 : parts[0].cols; }
};

struct LayerWeights {
  std::vector<float> attn_norm;  // [hidden]   input_layernorm
  std::vector<float> mlp_norm;   // [hidden]   post_attention_layernorm
  Projection qkv;                // [q_dim + 2 kv_dim, hidden]   rows: q heads, k heads, v heads
  WeightMatrix o;                // [hidden, q_dim]
  Projection gate_up;            // [2 ffn, hidden]   rows: gate, then up
  WeightMatrix down;             // [hidden, ffn]
};

struct LoadOptions {
  // Dense (f16/bf16/f32) files: quantize to 4-bit at load, or keep the matrices as they are.
  // automatic: quantize when the dense matrices exceed kAutoQuantizeBytes — a small model gains
  // no speed from it and keeps its exact numerics (the demo model must match llama2.c bit for bit).
  enum class Quantize { automatic, yes, no } quantize = Quantize::automatic;
  int quant_bits = 4;
  int quant_group = 64;
};
inline constexpr int64_t kAutoQuantizeBytes = int64_t(256) << 20;

class Weights {
 public:
  static Result<std::unique_ptr<Weights>> load(const std::string& dir, const ModelConfig& config,
                                               const LoadOptions& options, ThreadPool& pool);

  WeightMatrix embed;                // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;     // [hidden]
  WeightMatrix lm_head;              // [vocab, hidden]; the embedding itself when tied
  bool quantized_at_load = false;

  // Bytes of all matrices as held in memory (mapped or owned), counted once.
  int64_t nbytes() const;
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  std::vector<SafetensorsFile> files_;
  std::vector<std::unique_ptr<QuantizedMatrix>> owned_;
  friend class WeightLoader;
};

}  // namespace pensieve
