#include "models/rope.h"

#include <cmath>

namespace pensieve {

RopeTables::RopeTables(const RopeConfig& r) : linear_factor_(r.linear_factor), attention_factor_(r.attention_factor) {
  const int half = r.rot_dim / 2;
  for (int i = 0; i < half; ++i) {
    double base = std::pow(r.theta, 2.0 * i / r.rot_dim);
    inv_short_.push_back(1.0 / ((r.longrope ? r.short_factor[size_t(i)] : 1.0) * base));
    inv_long_.push_back(1.0 / ((r.longrope ? r.long_factor[size_t(i)] : 1.0) * base));
  }
}

void RopeTables::fill(int64_t pos, bool long_rope, float* cos, float* sin) const {
  const std::vector<double>& inv = long_rope ? inv_long_ : inv_short_;
  const double p = double(pos) / linear_factor_;
  for (size_t j = 0; j < inv.size(); ++j) {
    double angle = p * inv[j];
    cos[j] = float(std::cos(angle) * attention_factor_);
    sin[j] = float(std::sin(angle) * attention_factor_);
  }
}

}  // namespace pensieve
