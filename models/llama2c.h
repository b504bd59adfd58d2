// Import of llama2.c checkpoints (Karpathy's run.c format) into pensieve's native layout: a
// LlamaForCausalLM model directory with config.json, model.safetensors (f32) and tokenizer.json.
#pragma once

#include <string>

#include "tensor/result.h"

namespace pensieve {

// Reads `checkpoint` (llama2.c .bin) and `tokenizer` (llama2.c tokenizer .bin) and writes the
// model directory `out_dir` (created; must not exist). The checkpoint is validated against its
// header: a truncated or oversized file is an error naming the sizes.
Status import_llama2c(const std::string& checkpoint, const std::string& tokenizer, const std::string& out_dir);

}  // namespace pensieve
