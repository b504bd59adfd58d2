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
  void fill(int64_t pos, bool long_rope, float* cos, float* sin) const;

 private:
  double linear_factor_, attention_factor_;
  std::vector<double> inv_short_, inv_long_;
};

}  // namespace pensieve
