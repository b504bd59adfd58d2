// Rotate-half ("NeoX") RoPE, in place, on the first rot_dim dims of each head:
//   half = rot_dim/2;  for i < half:  a = v[i], b = v[i+half]
//   v[i] = a·cos[t,i] − b·sin[t,i],   v[i+half] = b·cos[t,i] + a·sin[t,i]
// x: [n, stride], head h at x[t, h·head_dim]; cos/sin: [n, half] (attention factor folded in).
#include "kernels/ref/ref.h"

namespace pensieve {

void rope_ref(float* x, int64_t stride, int n_heads, int head_dim, int rot_dim, const float* cos, const float* sin,
              int64_t t0, int64_t t1) {
  const int half = rot_dim / 2;
  for (int64_t t = t0; t < t1; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int h = 0; h < n_heads; ++h) {
      rope_pairs_ref(x + t * stride + int64_t(h) * head_dim, c, s, half, 0, half);
    }
  }
}

}  // namespace pensieve
