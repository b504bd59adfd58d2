#version 450
// Attention for decode (few queries per sequence), split-K over the KV cache, with 16-byte KV
// loads: the same computation and grid as attn_decode.comp (which stays the fallback for head
// dims and strides that are not multiples of 8 elements):
//   out[q, h] = sum_j softmax_j(scale * q.k_j) v_j over the visible keys j of query q (causal,
//   optional sliding window), query head h reading kv head h / group.
//
// Grid: x = splits, y = query heads, z = sequence * qmax + query index. One workgroup handles one
// query row and one head over the keys [lo + split*split_len, ... + split_len) of its visible range,
// in tiles of WG keys:
//   scores: invocation i takes key i of the tile and reads its K row as HD/EPV 16-byte loads, KB
//     of them in flight at a time (q * scale is in shared memory, read as broadcast vec4s);
//   softmax: the tile's max and sum (online softmax, f32) through the workgroup reductions;
//   values: the workgroup is KL = WG / U key lanes of U = HD / EPV invocations; invocation
//     (kl, d) accumulates dims d*EPV .. +EPV-1 (one 16-byte load per key: a key's V row is read by
//     U neighbouring invocations, coalesced) over keys kl, kl + KL, ... of the tile, VB keys per
//     trip, and keeps its accumulators over all tiles (rescaled by each tile's correction);
//   end: the KL partial rows are summed in key-lane order through shared memory.
// With one split the result goes straight to the output, otherwise (m, l, unnormalised acc) go to
// the partials buffer for attn_combine.comp.
// KB and VB only schedule loads: the sums run in the same order whatever their values. The tile
// (WG) does set the order (per-tile maxima and sums), so it is fixed per process.
// EPV (elements per 16-byte vector) = 8 for f16 KV, 4 for f32. Host-checked: HD % EPV == 0,
// HD / EPV <= WG, and every K/V row offset a multiple of EPV elements.
//
// ROPE = 1 (f16 KV; batched decode, where the projections run on the tensor cores and cannot fuse
// it): rope_store.comp's work happens here. Q holds the step's qkv rows as the projection wrote
// them (q heads, then k and v heads, not yet rotated); every sequence has one query, at position
// pos, whose key and value are not in the cache yet. Each workgroup rotates its q head while
// staging it; the workgroups whose split holds pos also build the new key (rotated) and value of
// their kv head as the cache stores them (f16, in shared memory) and use those for key pos instead
// of cache reads, so nothing in this dispatch reads what it writes; the first query head of each
// kv head writes them to the cache slot Slots[query row]. Scores and sums are those of
// rope_store + this kernel: the new key's f16 values are the cache's.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint HD = 128;  // head_dim
layout(constant_id = 2) const uint KV_F16 = 1;
layout(constant_id = 3) const uint KB = 4;  // K row loads in flight per invocation (<= KMAX)
layout(constant_id = 4) const uint VB = 4;  // V rows in flight per key lane (<= VMAX)
layout(constant_id = 5) const uint ROPE = 0;  // 1: RoPE + KV store fused (above)
const uint KMAX = 16u, VMAX = 16u;
const uint RED_MAX = 1;
#include "reduce.glsl"

const uint EPV = KV_F16 == 1u ? 8u : 4u;
const uint U = HD / EPV;   // invocations per V row
const uint KL = WG / U;    // key lanes

layout(binding = 0) readonly buffer Qb { float Q[]; };
layout(binding = 1) readonly buffer Kb { uvec4 K4[]; };
layout(binding = 2) readonly buffer Vb { uvec4 V4[]; };
layout(binding = 3) readonly buffer Mb { ivec4 Meta[]; };
layout(binding = 4) readonly buffer Tb { int Tables[]; };
layout(binding = 5) writeonly buffer Ob { float O[]; };
layout(binding = 6) writeonly buffer Pb { float P[]; };
// ROPE = 1 only (else bound to unused stand-ins): cos / sin [rows, half_rot], cache slots [rows],
// and the K and V arrays again, for the store.
layout(binding = 7) readonly buffer Cb { float Cs[]; };
layout(binding = 8) readonly buffer Sb { float Sn[]; };
layout(binding = 9) readonly buffer Lb { uint Slots[]; };
layout(binding = 10) writeonly buffer KWb { uint KW[]; };
layout(binding = 11) writeonly buffer VWb { uint VW[]; };

layout(push_constant) uniform Push {
  uint n_heads, group, block_size, block_stride, head_stride, q_stride, out_stride;
  uint window;  // 0: none
  float scale;
  uint n_splits, split_len, qmax;
  uint half_rot;  // ROPE: rot_dim / 2
} pc;

const float NEG = -1.0e30;  // masked score: finite (see attn.glsl)

shared vec4 qs[HD / 4u];
shared float ps[WG];
shared uint offs[WG];          // 16-byte index of each tile key's row
shared vec4 part[2u * WG];     // value partials, (kl * U + d) * 2 + half
shared uvec4 kvn[ROPE == 1u ? HD / 4u : 1u];  // ROPE: the new key's then value's f16 rows

#include "kv_store.glsl"  // half_rne
#include "rope_dim.glsl"

// The EPV values of a 16-byte vector as two vec4 (f32: b is unused).
void unpack16(uvec4 w, out vec4 a, out vec4 b) {
  if (KV_F16 == 1u) {
    a = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
    b = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
  } else {
    a = uintBitsToFloat(w);
    b = vec4(0.0);
  }
}

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

  const bool has_new = ROPE == 1u && kbeg <= pos && pos < kend;  // this split holds key pos
  if (ROPE == 0u) {
    for (uint d = tid; d < HD / 4u; d += WG) {
      const uint b = qrow * pc.q_stride + h * HD + 4u * d;
      qs[d] = vec4(Q[b], Q[b + 1u], Q[b + 2u], Q[b + 3u]) * pc.scale;
    }
  } else {
    // Invocation i: q's dim i, and word i of the new key's row (i < HD / 2) or of its value row
    // (read whether this split needs them or not, so that all loads go out together).
    const uint row = qrow * pc.q_stride, hw = HD / 2u, cs = qrow * pc.half_rot;
    const uint kb = row + (pc.n_heads + kh) * HD, vb = row + (pc.n_heads + pc.n_heads / pc.group + kh) * HD;
    const uint e = (Slots[qrow] + kh * pc.head_stride) >> 1;  // (even: host-checked strides)
    const bool store = has_new && h % pc.group == 0u;
    for (uint i = tid; i < HD; i += WG) {
      const float q = rope_dim(row + h * HD, cs, i);
      const uint w = i % hw;
      const float v0 = i < hw ? rope_dim(kb, cs, 2u * w) : Q[vb + 2u * w];
      const float v1 = i < hw ? rope_dim(kb, cs, 2u * w + 1u) : Q[vb + 2u * w + 1u];
      qs[i >> 2][i & 3u] = q * pc.scale;
      const uint word = half_rne(v0) | (half_rne(v1) << 16);
      if (has_new) kvn[i >> 2][i & 3u] = word;
      if (store) {
        if (i < hw) KW[e + w] = word;
        else VW[e + w] = word;
      }
    }
  }
  barrier();

  const uint kl = tid / U, dv = tid % U;
  const bool vlane = kl < KL;
  vec4 acc0 = vec4(0.0), acc1 = vec4(0.0);
  float m = NEG, l = 0.0;
  for (uint j0 = kbeg; j0 < kend; j0 += WG) {
    const uint j = j0 + tid;
    const bool valid = j < kend;
    float s = NEG;
    if (valid) {
      s = 0.0;
      if (ROPE == 1u && j == pos) {  // the new key, from kvn (the same sums in the same order)
        [[unroll]] for (uint c = 0u; c < U; ++c) {
          vec4 a, b;
          unpack16(kvn[c], a, b);
          s += dot(a, qs[2u * c]);
          s += dot(b, qs[2u * c + 1u]);
        }
      } else {
        const uint off = (uint(Tables[toff + j / pc.block_size]) * pc.block_stride + kh * pc.head_stride +
                          (j % pc.block_size) * HD) / EPV;
        offs[tid] = off;
        // KB 16-byte loads in flight per trip.
        for (uint c = 0u; c < U; c += KB) {
          uvec4 kw[KMAX];
          [[unroll]] for (uint k = 0u; k < KMAX; ++k)
            if (k < KB) kw[k] = c + k < U ? K4[off + c + k] : uvec4(0u);
          [[unroll]] for (uint k = 0u; k < KMAX; ++k) {
            if (k >= KB || c + k >= U) break;
            vec4 a, b;
            unpack16(kw[k], a, b);
            const uint qd = (c + k) * EPV / 4u;
            s += dot(a, qs[qd]);
            if (KV_F16 == 1u) s += dot(b, qs[qd + 1u]);
          }
        }
      }
    }
    const float m_new = max(m, wg_max1(s));  // finite: key j0 is valid
    const float p = valid ? exp(s - m_new) : 0.0;
    ps[tid] = p;
    const float corr = exp(m - m_new);
    l = l * corr + wg_sum1(p);  // its barriers also publish ps and offs
    const uint nk = min(WG, kend - j0);
    // ROPE: the tile's last key is the new one where it holds pos; its value row is in kvn, added
    // after the loop by its key lane: its last key, so the sums keep their order (the loop only
    // adds zeros after it).
    const bool new_last = has_new && j0 + nk == pos + 1u;
    const uint nv = new_last ? nk - 1u : nk;  // keys whose V rows come from the cache
    if (vlane) {
      acc0 *= corr;
      acc1 *= corr;
      for (uint jj = kl; jj < nv; jj += VB * KL) {
        uvec4 vw[VMAX];
        float pp[VMAX];
        [[unroll]] for (uint k = 0u; k < VMAX; ++k) {
          if (k >= VB) break;
          const uint jk = jj + k * KL;
          pp[k] = jk < nv ? ps[jk] : 0.0;
          vw[k] = jk < nv ? V4[offs[jk] + dv] : uvec4(0u);
        }
        [[unroll]] for (uint k = 0u; k < VMAX; ++k) {
          if (k >= VB) break;
          vec4 a, b;
          unpack16(vw[k], a, b);
          acc0 += pp[k] * a;
          if (KV_F16 == 1u) acc1 += pp[k] * b;
        }
      }
      if (new_last && kl == nv % KL) {
        vec4 a, b;
        unpack16(kvn[U + dv], a, b);
        acc0 += ps[nv] * a;
        acc1 += ps[nv] * b;
      }
    }
    m = m_new;
    barrier();  // ps/offs are rewritten by the next tile
  }

  if (vlane) {
    part[(kl * U + dv) * 2u] = acc0;
    part[(kl * U + dv) * 2u + 1u] = acc1;
  }
  barrier();
  if (tid < U) {
    vec4 o0 = vec4(0.0), o1 = vec4(0.0);
    for (uint k = 0u; k < KL; ++k) {
      o0 += part[(k * U + tid) * 2u];
      o1 += part[(k * U + tid) * 2u + 1u];
    }
    float o[8] = float[8](o0.x, o0.y, o0.z, o0.w, o1.x, o1.y, o1.z, o1.w);
    const uint d0 = tid * EPV;
    if (pc.n_splits == 1u) {
      const uint b = qrow * pc.out_stride + h * HD + d0;
      [[unroll]] for (uint e = 0u; e < EPV; ++e) O[b + e] = o[e] / l;
    } else {
      const uint base = ((gl_WorkGroupID.z * pc.n_heads + h) * pc.n_splits + split) * (HD + 2u);
      if (tid == 0u) {
        P[base] = m;
        P[base + 1u] = l;
      }
      [[unroll]] for (uint e = 0u; e < EPV; ++e) P[base + 2u + d0 + e] = o[e];
    }
  }
}
