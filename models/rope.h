// RoPE cos/sin tables: what the rope kernels take (kernels/kernels.h), computed once per token in
// double precision as the reference does, with the attention factor folded in:
//   inv_freq[i] = 1 / (ext[i] · theta^(2i / rot_dim)),  ext = longrope short or long factors (else 1)
//   angle = (pos / linear_factor) · inv_freq[i],  cos[i] = cos(angle) · attention_factor (sin alike)
#pragma once

#include <vector>

#include "models/config.h"

namespace pensieve {

class RopeTables {
 public:
  explicit RopeTables(const RopeConfig& rope);
  int half() const { return int(inv_short_.size()); }
  // cos[0, half) and sin[0, half) for position `pos`; long_rope picks longrope's long factors.
  // Positions below kCached come from tables grown as positions are asked for (a 20-sequence
  // decode step asks for ~2,000 cos/sin a step otherwise); the values are the same either way.
  void fill(int64_t pos, bool long_rope, float* cos, float* sin);

  static constexpr int64_t kCached = 32768;  // at most 2 x 12 MiB of tables for Phi-3's 48 pairs

 private:
  void compute(int64_t pos, bool long_rope, float* cos, float* sin) const;

  double linear_factor_, attention_factor_;
  std::vector<double> inv_short_, inv_long_;
  std::vector<float> cached_[2];  // [short, long]: per position, half cos then half sin
};

}  // namespace pensieve
