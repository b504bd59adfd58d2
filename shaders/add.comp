#version 450
// Residual add: y[i] += x[i] for i < n. Grid-stride loop: invocation g handles g, g + G, ... where
// G is the total invocation count (the host caps the grid, so any n fits one dispatch).
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) buffer Yb { float Y[]; };
layout(binding = 1) readonly buffer Xb { float X[]; };

layout(push_constant) uniform Push { uint n; } pc;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG;
  for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) Y[i] += X[i];
}
