// y[r, :] = x[r, :] · w / sqrt(mean(x[r, :]²) + eps)      x, y: [rows, dim]   w: [dim]
#include <cmath>

#include "kernels/ref/ref.h"

namespace pensieve {

void rmsnorm_ref(float* y, const float* x, const float* w, int64_t dim, float eps, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    float ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    float inv = 1.0f / std::sqrt(ss / float(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * w[i];
  }
}

}  // namespace pensieve
