#version 450
// SiLU-gated multiply: out[t, i] = silu(g) * u with g = gu[t, i], u = gu[t, ffn + i]; silu(g) = g/(1+e^-g).
// gu: [n, 2*ffn], out: [n, ffn]. Grid: x = ceil(ffn / WG), y = tokens; one invocation per element.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer Gb { float GU[]; };
layout(binding = 1) writeonly buffer Ob { float O[]; };

layout(push_constant) uniform Push { uint ffn; } pc;

void main() {
  const uint i = gl_GlobalInvocationID.x, t = gl_WorkGroupID.y;
  if (i >= pc.ffn) return;
  const float g = GU[t * 2u * pc.ffn + i], u = GU[t * 2u * pc.ffn + pc.ffn + i];
  O[t * pc.ffn + i] = g / (1.0 + exp(-g)) * u;
}
