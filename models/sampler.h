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
  // How many of a row's best logits sample() needs with these parameters (largest first, ties to
  // the lower id; k <= max_k), or 0 when it needs the whole row (penalties; top_p, min_p or no
  // top_k with temperature > 0 and no top_k <= max_k). Greedy needs 1.
  int candidates_needed(int max_k) const;
  // The same token sample() picks from the full row, given that row's k = candidates_needed()
  // best (value, id) pairs, largest first (draws the same random numbers).
  int32_t sample_top(const float* values, const int32_t* ids, int k);
  const SamplingParams& params() const { return p_; }

 private:
  struct Cand {
    float scaled;  // logit / temperature
    float logit;
    int32_t id;
  };
  // top-p, min-p and the draw over cand_[0, n) (sorted by logit, best first, where top-k or top-p
  // need it); max_scaled = the largest scaled logit of the row.
  int32_t draw(size_t n, float max_scaled);

  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<Cand> cand_;                       // scratch
  std::vector<int32_t> counts_;                  // scratch: output token counts (sparse reset)
};

}  // namespace pensieve
