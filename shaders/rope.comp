#version 450
// Rotate-half ("NeoX") RoPE, in place, on the first rot_dim dims of each head (kernels/kernels.h):
//   half = rot_dim/2, i < half:  a = v[i], b = v[i+half]
//   v[i] = a*cos[t,i] - b*sin[t,i],   v[i+half] = b*cos[t,i] + a*sin[t,i]
// x: [n, stride] with head h at x[t, h*head_dim]; cos/sin: [n, half] (attention factor folded in).
//
// Grid: x = ceil(n_heads*half / WG), y = tokens. One invocation rotates one (head, i) pair of one
// token; pairs are disjoint, so the in-place update needs no synchronisation.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;

layout(binding = 0) buffer Xb { float X[]; };
layout(binding = 1) readonly buffer Cb { float C[]; };
layout(binding = 2) readonly buffer Sb { float Sn[]; };

layout(push_constant) uniform Push {
  uint stride;    // floats between token rows of x
  uint n_heads;
  uint head_dim;
  uint half_rot;  // rot_dim / 2
} pc;

void main() {
  const uint t = gl_WorkGroupID.y;
  const uint idx = gl_GlobalInvocationID.x;
  if (idx >= pc.n_heads * pc.half_rot) return;
  const uint h = idx / pc.half_rot, i = idx % pc.half_rot;
  const uint p = t * pc.stride + h * pc.head_dim + i;
  const float c = C[t * pc.half_rot + i], s = Sn[t * pc.half_rot + i];
  const float a = X[p], b = X[p + pc.half_rot];
  X[p] = a * c - b * s;
  X[p + pc.half_rot] = b * c + a * s;
}
