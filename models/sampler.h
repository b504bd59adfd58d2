// Sampling one token from a row of logits. The order follows Hugging Face's logits processors:
// penalties, then temperature, then top-k, top-p and min-p, then a draw from the remaining mass.
// temperature 0 is greedy (argmax, lowest id on ties). A seed makes the draws reproducible.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "tensor/result.h"

namespace pensieve {

struct SamplingParams {
  float temperature = 1.0f;         // 0: greedy
  int top_k = 0;                    // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off; keeps tokens with p >= min_p · p_max
  float repetition_penalty = 1.0f;  // HF/CTRL: logit / penalty if > 0 else logit · penalty, over prompt + output
  float presence_penalty = 0.0f;    // OpenAI: logit −= presence · [count > 0], over the output
  float frequency_penalty = 0.0f;   // OpenAI: logit −= frequency · count, over the output
  uint64_t seed = 0;
  bool has_seed = false;            // false: seeded from the clock
};

// Checks ranges (temperature >= 0, 0 < top_p <= 1, 0 <= min_p <= 1, top_k >= 0, penalties).
Status validate(const SamplingParams& p);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // Picks a token from logits[0, vocab) (modified in place). `prompt` and `output` are the
  // tokens so far, for the penalties.
  int32_t sample(float* logits, int64_t vocab, const std::vector<int32_t>& prompt, const std::vector<int32_t>& output);
  const SamplingParams& params() const { return p_; }

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;  // scratch: (logit, id)
  std::vector<int32_t> counts_;                  // scratch: output token counts (sparse reset)
};

}  // namespace pensieve
