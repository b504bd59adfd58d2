#version 450
// Attention for prefill (many queries per sequence), tiled with online softmax (f32):
//   out[q, h] = sum_j softmax_j(scale * q.k_j) v_j over the visible keys j of query q.
//
// Grid: x = query tiles of BQ, y = query heads, z = sequences. One workgroup takes BQ queries of
// one sequence and head and walks the keys they can see in tiles of BK: it stages the K and V tile
// in shared memory (f32), computes the BQ x BK score tile (one dot product per invocation and
// entry), lets invocation q < BQ update row q's running max m, sum l and rescale factor, then every
// invocation updates the output entries it owns (entry e = tid + WG*k of the BQ x head_dim tile)
// as acc = acc * corr + sum_j p_j v_j. Masked entries (causal, window, past the sequence) get p = 0.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint HD = 128;  // head_dim; BQ * HD <= 32 * WG
layout(constant_id = 2) const uint KV_F16 = 1;
layout(constant_id = 3) const uint BQ = 16;
layout(constant_id = 4) const uint BK = 16;
const uint OMAX = 32;
const uint OWN = (BQ * HD + WG - 1u) / WG;  // output entries per invocation (<= OMAX)

layout(binding = 0) readonly buffer Qb { float Q[]; };
layout(binding = 1) readonly buffer Kb { uint K[]; };
layout(binding = 2) readonly buffer Vb { uint V[]; };
layout(binding = 3) readonly buffer Mb { ivec4 Meta[]; };
layout(binding = 4) readonly buffer Tb { int Tables[]; };
layout(binding = 5) writeonly buffer Ob { float O[]; };

#include "attn.glsl"

layout(push_constant) uniform Push {
  uint n_heads, group, block_size, block_stride, head_stride, q_stride, out_stride;
  uint window;
  float scale;
} pc;

shared float qs[BQ * HD];
shared float ks[BK * HD];
shared float vs[BK * HD];
shared float ss[BQ * BK];
shared float m_sh[BQ], l_sh[BQ], corr_sh[BQ];
shared uint koff[BK];

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint h = gl_WorkGroupID.y, seq = gl_WorkGroupID.z;
  const ivec4 meta = Meta[seq];
  const uint q_lo = gl_WorkGroupID.x * BQ;
  if (q_lo >= uint(meta.y)) return;  // uniform
  const uint nq = min(BQ, uint(meta.y) - q_lo);
  const uint qrow0 = uint(meta.x) + q_lo, pos_lo = uint(meta.z) + q_lo, toff = uint(meta.w);
  const uint kh = h / pc.group;
  const uint kmax = pos_lo + nq - 1u;  // last key any query of the tile sees
  const uint kmin = (pc.window > 0u && pos_lo + 1u > pc.window) ? pos_lo + 1u - pc.window : 0u;

  for (uint e = tid; e < BQ * HD; e += WG) {
    const uint q = e / HD, d = e % HD;
    qs[e] = q < nq ? Q[(qrow0 + q) * pc.q_stride + h * HD + d] * pc.scale : 0.0;
  }
  for (uint q = tid; q < BQ; q += WG) {
    m_sh[q] = NEG;
    l_sh[q] = 0.0;
  }
  float acc[OMAX];
  for (uint k = 0u; k < OMAX; ++k) acc[k] = 0.0;

  for (uint j0 = kmin; j0 <= kmax; j0 += BK) {
    for (uint kj = tid; kj < BK; kj += WG) {
      const uint j = min(j0 + kj, kmax);  // keys past kmax load a valid slot; they are masked below
      koff[kj] = uint(Tables[toff + j / pc.block_size]) * pc.block_stride + kh * pc.head_stride +
                 (j % pc.block_size) * HD;
    }
    barrier();
    for (uint e = tid; e < BK * HD; e += WG) {
      const uint kj = e / HD, d = e % HD;
      ks[e] = k_at(koff[kj] + d);
      vs[e] = v_at(koff[kj] + d);
    }
    barrier();
    for (uint e = tid; e < BQ * BK; e += WG) {
      const uint q = e / BK, kj = e % BK, j = j0 + kj, pos = pos_lo + q;
      const bool valid = q < nq && j <= pos && (pc.window == 0u || j + pc.window > pos);
      float s = NEG;
      if (valid) {
        s = 0.0;
        for (uint d = 0u; d < HD; ++d) s += qs[q * HD + d] * ks[kj * HD + d];
      }
      ss[e] = s;
    }
    barrier();
    for (uint q = tid; q < BQ; q += WG) {
      float mt = NEG;
      for (uint kj = 0u; kj < BK; ++kj) mt = max(mt, ss[q * BK + kj]);
      const float m_old = m_sh[q];
      const float m_new = max(m_old, mt);
      float corr = 1.0, sum = 0.0;
      if (mt > 0.5 * NEG) {  // some key of this tile is visible to query q
        corr = m_old > 0.5 * NEG ? exp(m_old - m_new) : 0.0;
        for (uint kj = 0u; kj < BK; ++kj) {
          const float s = ss[q * BK + kj];
          const float p = s > 0.5 * NEG ? exp(s - m_new) : 0.0;
          ss[q * BK + kj] = p;
          sum += p;
        }
      } else {
        for (uint kj = 0u; kj < BK; ++kj) ss[q * BK + kj] = 0.0;
      }
      m_sh[q] = m_new;
      l_sh[q] = l_sh[q] * corr + sum;
      corr_sh[q] = corr;
    }
    barrier();
    for (uint k = 0u; k < OWN; ++k) {
      const uint e = tid + k * WG;
      if (e < BQ * HD) {
        const uint q = e / HD, d = e % HD;
        float v = acc[k] * corr_sh[q];
        for (uint kj = 0u; kj < BK; ++kj) v += ss[q * BK + kj] * vs[kj * HD + d];
        acc[k] = v;
      }
    }
    barrier();
  }

  for (uint k = 0u; k < OWN; ++k) {
    const uint e = tid + k * WG;
    const uint q = e / HD, d = e % HD;
    if (e < BQ * HD && q < nq) O[(qrow0 + q) * pc.out_stride + h * HD + d] = acc[k] / l_sh[q];
  }
}
