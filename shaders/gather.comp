#version 450
// Row gather: out[i, :] = x[idx[i], :] for i < n (the rows of a batch that want logits).
// Grid: x = ceil(dim / WG), y = rows.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;

layout(binding = 0) readonly buffer Xb { float X[]; };
layout(binding = 1) readonly buffer Ib { uint Idx[]; };
layout(binding = 2) writeonly buffer Ob { float O[]; };

layout(push_constant) uniform Push {
  uint dim;
} pc;

void main() {
  const uint c = gl_GlobalInvocationID.x, i = gl_WorkGroupID.y;
  if (c < pc.dim) O[i * pc.dim + c] = X[Idx[i] * pc.dim + c];
}
