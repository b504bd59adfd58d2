#version 450
// Merges attn_decode's split-K partials: for one query row and head, with M = max_s m_s,
//   out[d] = sum_s e^{m_s - M} acc_s[d] / sum_s e^{m_s - M} l_s      (empty splits have l_s = 0).
// Grid: y = query heads, z = sequence * qmax + query index; invocation i writes dims i, i+WG, ...
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint HD = 128;

layout(binding = 0) readonly buffer Pb { float P[]; };
layout(binding = 1) readonly buffer Mb { ivec4 Meta[]; };
layout(binding = 2) writeonly buffer Ob { float O[]; };

layout(push_constant) uniform Push {
  uint n_heads, out_stride, n_splits, qmax;
} pc;

void main() {
  const uint h = gl_WorkGroupID.y;
  const uint seq = gl_WorkGroupID.z / pc.qmax, qi = gl_WorkGroupID.z % pc.qmax;
  const ivec4 meta = Meta[seq];
  if (qi >= uint(meta.y)) return;
  const uint qrow = uint(meta.x) + qi;
  const uint base = (gl_WorkGroupID.z * pc.n_heads + h) * pc.n_splits * (HD + 2u);
  float M = -3.0e38;
  for (uint s = 0u; s < pc.n_splits; ++s)
    if (P[base + s * (HD + 2u) + 1u] > 0.0) M = max(M, P[base + s * (HD + 2u)]);
  float L = 0.0;
  for (uint s = 0u; s < pc.n_splits; ++s) {
    const float l = P[base + s * (HD + 2u) + 1u];
    if (l > 0.0) L += exp(P[base + s * (HD + 2u)] - M) * l;
  }
  for (uint d = gl_LocalInvocationID.x; d < HD; d += WG) {
    float o = 0.0;
    for (uint s = 0u; s < pc.n_splits; ++s) {
      const uint b = base + s * (HD + 2u);
      if (P[b + 1u] > 0.0) o += exp(P[b] - M) * P[b + 2u + d];
    }
    O[qrow * pc.out_stride + h * HD + d] = o / L;
  }
}
