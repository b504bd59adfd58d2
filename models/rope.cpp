#include "models/rope.h"

#include <algorithm>
#include <bit>
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

void RopeTables::fill(int64_t pos, bool long_rope, float* cos, float* sin) {
  const size_t half = inv_short_.size();
  if (pos < 0 || pos >= kCached || half == 0) return compute(pos, long_rope, cos, sin);
  std::vector<float>& t = cached_[long_rope ? 1 : 0];
  const int64_t have = int64_t(t.size() / (2 * half));
  if (pos >= have) {  // grow to the next power of two (at least 256 positions)
    const int64_t want = std::min(kCached, std::max<int64_t>(256, int64_t(std::bit_ceil(uint64_t(pos) + 1))));
    t.resize(size_t(want) * 2 * half);
    for (int64_t p = have; p < want; ++p) compute(p, long_rope, &t[size_t(p) * 2 * half], &t[size_t(p) * 2 * half + half]);
  }
  const float* row = &t[size_t(pos) * 2 * half];
  std::copy(row, row + half, cos);
  std::copy(row + half, row + 2 * half, sin);
}

void RopeTables::compute(int64_t pos, bool long_rope, float* cos, float* sin) const {
  const std::vector<double>& inv = long_rope ? inv_long_ : inv_short_;
  const double p = double(pos) / linear_factor_;
  for (size_t j = 0; j < inv.size(); ++j) {
    double angle = p * inv[j];
    cos[j] = float(std::cos(angle) * attention_factor_);
    sin[j] = float(std::sin(angle) * attention_factor_);
  }
}

}  // namespace pensieve
