#version 450
// Read-bandwidth probe for benchmarks: every invocation XORs 16-byte vectors i, i + G, i + 2G, ...
// (G = all invocations) of the buffer, and each workgroup writes one word so nothing is elided.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer Ib { uvec4 In[]; };
layout(binding = 1) writeonly buffer Ob { uint Out[]; };

layout(push_constant) uniform Push { uint n_vec4; } pc;

shared uint red[WG];

void main() {
  const uint stride = gl_NumWorkGroups.x * WG;
  uvec4 a = uvec4(0u);
  for (uint i = gl_GlobalInvocationID.x; i < pc.n_vec4; i += stride) a ^= In[i];
  red[gl_LocalInvocationID.x] = a.x ^ a.y ^ a.z ^ a.w;
  barrier();
  if (gl_LocalInvocationID.x == 0u) {
    uint r = 0u;
    for (uint i = 0u; i < WG; ++i) r ^= red[i];
    Out[gl_WorkGroupID.x] = r;
  }
}
