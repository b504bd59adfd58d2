// y[r, :] = x[r, :] · w / sqrt(mean(x[r, :]²) + eps)      x, y: [rows, dim]   w: [dim]
#include <cmath>

#include "kernels/ref/ref.h"

namespace pensieve {

void rmsnorm_ref(float* y, const float* x, const float* w, int64_t dim, float eps, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    float inv = 1.0f / std::sqrt(sum_squares_ref(xr, 0, dim) / float(dim) + eps);
    rmsnorm_scale_ref(yr, xr, w, inv, 0, dim);
  }
}

}  // namespace pensieve
