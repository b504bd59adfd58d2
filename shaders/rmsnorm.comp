#version 450
// RMSNorm: y[r, :] = x[r, :] * w / sqrt(mean(x[r, :]^2) + eps)      x, y: [rows, dim]   w: [dim]
//
// One workgroup normalises one row (grid: x = rows). Invocation i sums x[c]^2 over c = i, i+WG, ...
// (coalesced), the workgroup reduces (common/reduce.glsl), then each invocation writes the same
// columns scaled. y may alias x (each element is read before it is written by the same invocation).
// Y_BF16 = 1: y is written as bf16 (rounded to nearest even, pairs of columns per word; dim even,
// host-checked) for a consumer that reads bf16 activations (mmq4_coop.comp's XBF).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

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

// Loads are requested UNR at a time (a row of 3,072 is 12 per invocation, which one at a time
// cost ~7 us of latency on the H200); the sums keep their order.
const uint UNR = 4u;

void main() {
  const uint base = gl_WorkGroupID.x * pc.dim, tid = gl_LocalInvocationID.x;
  float ss = 0.0;
  for (uint c0 = tid; c0 < pc.dim; c0 += UNR * WG) {
    float v[UNR];
    [[unroll]] for (uint k = 0u; k < UNR; ++k) v[k] = c0 + k * WG < pc.dim ? X[base + c0 + k * WG] : 0.0;
    [[unroll]] for (uint k = 0u; k < UNR; ++k)
      if (c0 + k * WG < pc.dim) ss += v[k] * v[k];
  }
  ss = wg_sum1(ss);
  const float inv = 1.0 / sqrt(ss / float(pc.dim) + pc.eps);
  if (Y_BF16 == 1u) {  // column pairs 2 tid, 2 (tid + WG), ...
    for (uint c0 = 2u * tid; c0 < pc.dim; c0 += 2u * UNR * WG) {
      vec2 v[UNR], w[UNR];
      [[unroll]] for (uint k = 0u; k < UNR; ++k) {
        const uint c = c0 + 2u * k * WG;
        v[k] = c < pc.dim ? vec2(X[base + c], X[base + c + 1u]) : vec2(0.0);
        w[k] = c < pc.dim ? vec2(Wt[c], Wt[c + 1u]) : vec2(0.0);
      }
      [[unroll]] for (uint k = 0u; k < UNR; ++k) {
        const uint c = c0 + 2u * k * WG;
        if (c < pc.dim) YH[(base + c) / 2u] = bf16_pair(v[k].x * inv * w[k].x, v[k].y * inv * w[k].y);
      }
    }
    return;
  }
  for (uint c0 = tid; c0 < pc.dim; c0 += UNR * WG) {
    float v[UNR], w[UNR];
    [[unroll]] for (uint k = 0u; k < UNR; ++k) {
      const bool inside = c0 + k * WG < pc.dim;
      v[k] = inside ? X[base + c0 + k * WG] : 0.0;
      w[k] = inside ? Wt[c0 + k * WG] : 0.0;
    }
    [[unroll]] for (uint k = 0u; k < UNR; ++k)
      if (c0 + k * WG < pc.dim) Y[base + c0 + k * WG] = v[k] * inv * w[k];
  }
}
