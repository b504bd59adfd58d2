// Full-size models with random weights in the MLX 4-bit layout, with the real configs of the
// published models, so speed can be measured without downloading weights.
#pragma once

#include <string>

#include "tensor/result.h"

namespace pensieve {

struct RandomModelOptions {
  std::string like;            // "phi3-mini", "phi3-mini-128k", "phi4-mini"
  std::string out_dir;         // created; must not exist
  std::string tokenizer_dir;   // optional: tokenizer files copied from here
  int bits = 4;
  int group_size = 64;
  uint64_t seed = 1;
};

// The names `like` accepts, for messages.
const char* random_model_presets();
Status write_random_model(const RandomModelOptions& o);

}  // namespace pensieve
