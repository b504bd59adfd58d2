#version 450
// RMSNorm: y[r, :] = x[r, :] * w / sqrt(mean(x[r, :]^2) + eps)      x, y: [rows, dim]   w: [dim]
//
// One workgroup normalises one row (grid: x = rows). Invocation i sums x[c]^2 over c = i, i+WG, ...
// (coalesced), the workgroup reduces (common/reduce.glsl), then each invocation writes the same
// columns scaled. y may alias x (each element is read before it is written by the same invocation).
// Y_BF16 = 1: y is written as bf16 (rounded to nearest even, pairs of columns per word; dim even,
// host-checked) for a consumer that reads bf16 activations (mmq4_coop.comp's XBF).
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint Y_BF16 = 0;
const uint RED_MAX = 1;
#include "reduce.glsl"
#include "bf16.glsl"

layout(binding = 0) readonly buffer Xb { float X[]; };
layout(binding = 1) readonly buffer Wb { float Wt[]; };
layout(binding = 2) writeonly buffer Yb { float Y[]; };
layout(binding = 2) writeonly buffer Yh { uint YH[]; };

layout(push_constant) uniform Push {
  uint dim;
  float eps;
} pc;

void main() {
  const uint base = gl_WorkGroupID.x * pc.dim;
  float ss = 0.0;
  for (uint c = gl_LocalInvocationID.x; c < pc.dim; c += WG) {
    const float v = X[base + c];
    ss += v * v;
  }
  ss = wg_sum1(ss);
  const float inv = 1.0 / sqrt(ss / float(pc.dim) + pc.eps);
  if (Y_BF16 == 1u) {
    for (uint c = 2u * gl_LocalInvocationID.x; c < pc.dim; c += 2u * WG)
      YH[(base + c) / 2u] = bf16_pair(X[base + c] * inv * Wt[c], X[base + c + 1u] * inv * Wt[c + 1u]);
    return;
  }
  for (uint c = gl_LocalInvocationID.x; c < pc.dim; c += WG) Y[base + c] = X[base + c] * inv * Wt[c];
}
