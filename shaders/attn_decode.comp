#version 450
// Attention for decode (few queries per sequence), split-K over the KV cache:
//   out[q, h] = sum_j softmax_j(scale * q.k_j) v_j over the visible keys j of query q (causal,
//   optional sliding window), query head h reading kv head h / group.
//
// Grid: x = splits, y = query heads, z = sequence * qmax + query index. One workgroup handles one
// query row and one head over the keys [lo + split*split_len, ... + split_len) of its visible range.
// It walks that range in tiles of WG keys: invocation i computes the score of key i of the tile
// (a dot product with the query held in shared memory), the workgroup reduces the tile's max and
// sum (online softmax, f32), and invocation i then accumulates output dims i, i+WG, ... over the
// tile's keys (coalesced V reads). With one split the result goes straight to the output;
// otherwise (m, l, unnormalised acc[head_dim]) go to the partials buffer and attn_combine merges.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint HD = 128;  // head_dim, <= 2 * WG
layout(constant_id = 2) const uint KV_F16 = 1;
const uint RED_MAX = 1;
#include "reduce.glsl"

layout(binding = 0) readonly buffer Qb { float Q[]; };
layout(binding = 1) readonly buffer Kb { uint K[]; };
layout(binding = 2) readonly buffer Vb { uint V[]; };
layout(binding = 3) readonly buffer Mb { ivec4 Meta[]; };
layout(binding = 4) readonly buffer Tb { int Tables[]; };
layout(binding = 5) writeonly buffer Ob { float O[]; };
layout(binding = 6) writeonly buffer Pb { float P[]; };

#include "attn.glsl"

layout(push_constant) uniform Push {
  uint n_heads, group, block_size, block_stride, head_stride, q_stride, out_stride;
  uint window;  // 0: none
  float scale;
  uint n_splits, split_len, qmax;
} pc;

shared float qs[HD];
shared float ps[WG];
shared uint offs[WG];

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint split = gl_WorkGroupID.x, h = gl_WorkGroupID.y;
  const uint seq = gl_WorkGroupID.z / pc.qmax, qi = gl_WorkGroupID.z % pc.qmax;
  const ivec4 meta = Meta[seq];
  if (qi >= uint(meta.y)) return;  // uniform: the whole workgroup leaves
  const uint qrow = uint(meta.x) + qi, pos = uint(meta.z) + qi, toff = uint(meta.w);
  const uint lo = (pc.window > 0u && pos + 1u > pc.window) ? pos + 1u - pc.window : 0u;
  const uint kbeg = lo + split * pc.split_len;
  const uint kend = min(pos + 1u, kbeg + pc.split_len);
  const uint kh = h / pc.group;

  for (uint d = tid; d < HD; d += WG) qs[d] = Q[qrow * pc.q_stride + h * HD + d] * pc.scale;
  barrier();

  float m = NEG, l = 0.0;
  float acc[2] = float[2](0.0, 0.0);
  for (uint j0 = kbeg; j0 < kend; j0 += WG) {
    const uint j = j0 + tid;
    const bool valid = j < kend;
    float s = NEG;
    if (valid) {
      const uint off = uint(Tables[toff + j / pc.block_size]) * pc.block_stride + kh * pc.head_stride +
                       (j % pc.block_size) * HD;
      offs[tid] = off;
      s = 0.0;
      for (uint d = 0u; d < HD; ++d) s += qs[d] * k_at(off + d);
    }
    const float m_new = max(m, wg_max1(s));  // finite: key j0 is valid
    const float p = valid ? exp(s - m_new) : 0.0;
    ps[tid] = p;
    const float corr = exp(m - m_new);
    l = l * corr + wg_sum1(p);  // its barriers also publish ps and offs
    const uint nk = min(WG, kend - j0);
    for (uint a = 0u; a < 2u; ++a) {
      const uint d = tid + a * WG;
      if (d >= HD) break;
      float v = acc[a] * corr;
      for (uint jj = 0u; jj < nk; ++jj) v += ps[jj] * v_at(offs[jj] + d);
      acc[a] = v;
    }
    m = m_new;
    barrier();  // ps/offs are rewritten by the next tile
  }

  if (pc.n_splits == 1u) {
    for (uint a = 0u; a < 2u; ++a) {
      const uint d = tid + a * WG;
      if (d < HD) O[qrow * pc.out_stride + h * HD + d] = acc[a] / l;
    }
  } else {
    const uint base = ((gl_WorkGroupID.z * pc.n_heads + h) * pc.n_splits + split) * (HD + 2u);
    if (tid == 0u) {
      P[base] = m;
      P[base + 1u] = l;
    }
    for (uint a = 0u; a < 2u; ++a) {
      const uint d = tid + a * WG;
      if (d < HD) P[base + 2u + d] = acc[a];
    }
  }
}
