// `pensieve quantize`: converts a Hugging Face safetensors model (f16, bf16 or f32; one file, or
// shards listed by model.safetensors.index.json) into the MLX-community quantized layout, as
// mlx-lm's convert writes it:
//   - each quantized module M (see should_quantize) becomes M.weight (uint32, packed values),
//     M.scales and M.biases (in the source float dtype), by quant/quantize.h's reference quantizer;
//   - other tensors are copied unchanged; rotary_emb.inv_freq buffers are dropped (mlx-lm's
//     sanitize does so), and lm_head.weight too when the config ties the embeddings;
//   - model.safetensors, or model-0000K-of-0000N.safetensors + index above 5 GiB, with metadata
//     {"format": "mlx"};
//   - config.json with "quantization" and "quantization_config" = {"group_size", "bits"}, written
//     as mlx_lm.utils.save_config does (top-level keys sorted, indent 4);
//   - the tokenizer and generation files copied.
// Streaming: one tensor at a time from the memory map, quantized by rows on the thread pool and
// written out; the output appears under its name only when complete (built in OUT.tmp-<pid>).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/store/progress.h"
#include "tensor/result.h"

namespace pensieve {

struct QuantizeOptions {
  int bits = 4;         // 4 or 8
  int group_size = 64;  // 32, 64 or 128
  uint64_t max_shard_bytes = 5ull << 30;  // mlx-lm's MAX_FILE_SIZE_GB = 5
  int threads = 0;                        // 0: ThreadPool::default_threads()
  ProgressReporter* progress = nullptr;
};

struct QuantizeReport {
  int quantized = 0;  // modules
  int copied = 0;     // tensors kept as they were
  int dropped = 0;
  uint64_t bytes_in = 0, bytes_out = 0;  // tensor data
  std::vector<std::string> files;        // weight files written
};

Result<QuantizeReport> quantize_model(const std::string& src_dir, const std::string& out_dir,
                                      const QuantizeOptions& options);

// mlx-lm quantizes a module when it has to_quantized (Linear, Embedding) and
// weight.shape[-1] % group_size == 0. Without the module tree this reads: a 2-D f16/bf16/f32
// tensor named *.weight whose last dimension the group size divides (norm weights are 1-D).
bool should_quantize(const std::string& name, const std::vector<int64_t>& shape, std::string_view dtype,
                     int group_size);

// config.json's text with the quantization added, formatted as mlx_lm.utils.save_config writes
// it (json.dump(indent=4) of the top-level-sorted dict; "_name_or_path" removed).
Result<std::string> quantized_config_json(const std::string& config_text, int bits, int group_size);

}  // namespace pensieve
