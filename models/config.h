// ModelConfig: everything the forward pass needs, read from a model directory's config.json and
// validated. Phi3ForCausalLM (fused qkv_proj / gate_up_proj) and LlamaForCausalLM (separate
// projections) share one decoder: pre-norm blocks, RMSNorm, rotate-half RoPE, GQA, SiLU-gated MLP.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/result.h"

namespace pensieve {

enum class Arch : uint8_t { phi3, llama };

struct RopeConfig {
  double theta = 10000.0;
  int rot_dim = 0;  // rotated dims per head: head_dim * partial_rotary_factor (even)
  // longrope (Phi-3-mini-128k, Phi-3.5, Phi-4-mini): inv_freq[i] /= factor[i]; the long factors
  // apply when a sequence is longer than original_max (HF's rule), cos/sin are scaled by
  // attention_factor at every length.
  bool longrope = false;
  std::vector<double> short_factor, long_factor;
  int64_t original_max = 0;
  double attention_factor = 1.0;
  double linear_factor = 1.0;  // rope_scaling.type "linear": positions are divided by this
};

struct ModelConfig {
  Arch arch = Arch::phi3;
  std::string model_type;  // "phi3", "llama"
  int64_t vocab = 0;
  int64_t hidden = 0;
  int64_t ffn = 0;  // intermediate_size
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  double rms_eps = 1e-5;
  RopeConfig rope;
  int64_t max_positions = 0;     // max_position_embeddings
  int64_t sliding_window = 0;    // 0: none; else a query at p sees keys at positions > p - window
  bool tie_embeddings = false;
  std::vector<int32_t> eos_ids;  // eos_token_id (int or list)
  int32_t bos_id = -1;
  // Quantization as declared in config.json (0 = not quantized). Per-tensor bits and group size
  // are re-derived from the tensor shapes at load time.
  int quant_bits = 0;
  int quant_group = 0;

  int64_t q_dim() const { return int64_t(n_heads) * head_dim; }
  int64_t kv_dim() const { return int64_t(n_kv_heads) * head_dim; }
  int64_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }
  // True when a sequence of `len` tokens uses longrope's long factors.
  bool long_rope(int64_t len) const { return rope.longrope && len > rope.original_max; }
};

// Parses and validates config.json text; errors name the field ("config.json: num_key_value_heads
// is 5, which does not divide num_attention_heads 32").
Result<ModelConfig> parse_model_config(const std::string& json_text);
Result<ModelConfig> load_model_config(const std::string& model_dir);

}  // namespace pensieve
