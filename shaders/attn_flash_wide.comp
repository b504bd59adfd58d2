#version 450
// Prefill attention on NVIDIA tensor cores with wide query tiles (GL_NV_cooperative_matrix): the
// op and numerics of attn_flash.comp with one subgroup per 16 queries,
//   out[q, h] = sum_j softmax_j(scale * q.k_j) v_j over the visible keys j of query q,
// but a workgroup of NSG subgroups takes 16 * NSG consecutive queries of one sequence and head
// (grid: as attn_flash.comp), subgroup w the w-th 16 of them, and all NSG subgroups walk the same
// cache blocks (16 keys), which the workgroup stages once in shared memory. attn_flash.comp loads
// every block's K and V from L2 into each subgroup's fragments, and every 16-query tile after a
// block reads it again: at 2,048-token prompts those loads were 60% of its time (H200,
// bench/RESULTS.md phase 12). Here NSG tiles share one read, and the next block's loads are in
// flight (registers) while the current one is computed:
//   per block:  issue block b+1's K / V loads (global -> registers)
//               each subgroup whose queries see a key of block b:
//                 S = Q K^T from shared, online softmax through its shared scratch, O += P V
//               store block b+1 to the other shared buffer; one workgroup barrier.
// Per query the arithmetic is attn_flash.comp's with NSG = 1 (the same products in the same order,
// the same lazy softmax reference): only where the K / V fragments come from differs.
// Shared-memory layouts avoid bank conflicts: staged K / V rows are padded by 16 bytes (the 8 rows
// a fragment load reads at once start in 8 different banks; unpadded, a 256-byte row at head_dim
// 128 put all 8 in one and made this kernel slower than attn_flash.comp), scores are read as two
// vec4 per lane (not 8 scalars that 8 lanes each take from one bank), and the output sums are
// rescaled (rare) and written one 16-column fragment at a time through a 1 KiB scratch.
// The host takes this kernel when its grid fills the GPU (ops_attention.cpp): with fewer
// workgroups than multiprocessors, attn_flash.comp's 4x more workgroups and interleaved key blocks
// are faster.
// Requires (host-checked): block_size 16, f16 KV, HD a multiple of 16 and <= 128, 32-wide
// subgroups, 16-byte aligned rows (q_stride, out_stride, HD multiples of 4).
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_shader_subgroup_vote : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 2) in;
layout(constant_id = 0) const uint HD = 96;  // head_dim
layout(constant_id = 1) const uint NSG = 4;  // subgroups per workgroup = 16-query tiles sharing K / V
layout(constant_id = 2) const uint WG = 128; // 32 * NSG
const uint NF = HD / 16u;                    // 16-wide fragments along head_dim (<= 8)
const uint HV = HD / 8u;                     // uvec4 (8 halves) per K / V row
const uint KS = HV + 1u;                     // uvec4 per staged K / V row: padded, so the 8 rows a
                                             // fragment load reads at once start in 8 different banks
const uint BV = 16u * HV;                    // uvec4 per block of K (or V) in the cache
const uint SB = 16u * KS;                    // ... and staged
const uint NL = (2u * BV + WG - 1u) / WG;    // uvec4 each invocation stages per block (<= 16)

layout(binding = 0) readonly buffer Qb { vec4 Q4[]; };
layout(binding = 1) readonly buffer Kb { uvec4 K4[]; };
layout(binding = 2) readonly buffer Vb { uvec4 V4[]; };
layout(binding = 3) readonly buffer Mb { ivec4 Meta[]; };
layout(binding = 4) readonly buffer Tb { int Tables[]; };
layout(binding = 5) writeonly buffer Ob { float O[]; };

layout(push_constant) uniform Push {
  uint n_heads, group, block_size, block_stride, head_stride, q_stride, out_stride;
  uint window;
  float scale;
} pc;

const float NEG = -1.0e30;  // a masked score: finite, zeroed explicitly (as attn.glsl)

shared uvec4 qs[NSG * 16u * HV];   // the query tile, f16, row-major [16 NSG][HD]
shared uvec4 kvs[2u * 2u * SB];    // two buffers of [K block | V block], f16, rows of KS uvec4
// Per subgroup:
shared uvec4 ss[NSG * 80u];        // scores [query][key], 16 x 16 f32 (as bits: 4 per uvec4), rows of 5 uvec4
shared uvec4 ps[NSG * 48u];        // probabilities, f16, row-major [16][16], rows of 3 uvec4
shared float os[NSG * 256u];       // one 16 x 16 fragment of output sums
shared float rs[NSG * 16u];        // per row: the rescale factor, then 1 / l

#define FRAG fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>
#define HFRAG fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define REP8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define REP16(M) REP8(M) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)

// Orders a subgroup's shared-memory accesses (each subgroup has its own scratch in the loop).
#define SG_SYNC() { subgroupMemoryBarrierShared(); subgroupBarrier(); }

void main() {
  const uint tid = gl_LocalInvocationID.x, sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
  // Grid x = query heads, y = query tiles counted from the last, z = sequences: the tiles at the end
  // of a prompt, which walk the most key blocks, are launched first (not last, behind the short
  // ones), and the GPU's tail is short tiles.
  const uint h = gl_WorkGroupID.x, seq = gl_WorkGroupID.z;
  const uint tile = gl_NumWorkGroups.y - 1u - gl_WorkGroupID.y;
  const ivec4 meta = Meta[seq];
  const uint q_lo = tile * 16u * NSG;
  if (q_lo >= uint(meta.y)) return;  // uniform
  const uint nq_tile = min(16u * NSG, uint(meta.y) - q_lo);
  const uint qrow0 = uint(meta.x) + q_lo, pos_lo = uint(meta.z) + q_lo, toff = uint(meta.w);
  const uint kh = h / pc.group;
  // Blocks the workgroup walks: from the first key its first query sees to its last query.
  const uint kmax = pos_lo + nq_tile - 1u;
  const uint kmin = (pc.window > 0u && pos_lo + 1u > pc.window) ? pos_lo + 1u - pc.window : 0u;
  const uint kb_first = kmin / 16u, kb_end = kmax / 16u;
  // This subgroup's queries: nq of them (0 past the sequence), positions spos .. spos + nq - 1.
  const uint sq0 = sg * 16u, nq = nq_tile > sq0 ? min(16u, nq_tile - sq0) : 0u;
  const uint spos = pos_lo + sq0;
  const uint my_kmin = (pc.window > 0u && spos + 1u > pc.window) ? spos + 1u - pc.window : 0u;

  // Stage the scaled queries as f16 (rows past the tile are zero).
  for (uint e = tid; e < NSG * 16u * HV; e += WG) {
    const uint r = e / HV, c = e % HV;
    uvec4 w = uvec4(0u);
    if (r < nq_tile) {
      const uint qi = ((qrow0 + r) * pc.q_stride + h * HD) / 4u + 2u * c;
      const vec4 a = Q4[qi] * pc.scale, b = Q4[qi + 1u] * pc.scale;
      w = uvec4(packHalf2x16(a.xy), packHalf2x16(a.zw), packHalf2x16(b.xy), packHalf2x16(b.zw));
    }
    qs[e] = w;
  }

  // Block kb's K and V (uvec4 e < BV: K, else V) into registers, then into buffer `buf`.
  uvec4 pre[16];
#define PRE_LOAD(i)                                                                   \
  if (NL > i) {                                                                       \
    const uint e = i * WG + tid;                                                      \
    if (e < 2u * BV) pre[i] = e < BV ? K4[gbase + e] : V4[gbase + e - BV];            \
  }
#define PRE_STORE(i) if (NL > i) { const uint e = i * WG + tid; if (e < 2u * BV) kvs[sbase + (e / HV) * KS + e % HV] = pre[i]; }
  {
    const uint gbase = (uint(Tables[toff + kb_first]) * pc.block_stride + kh * pc.head_stride) / 8u;
    REP16(PRE_LOAD)
    const uint sbase = 0u;
    REP16(PRE_STORE)
  }
  barrier();
#define LOAD_Q(i) HFRAG qa##i; if (NF > i) coopMatLoadNV(qa##i, qs, (sq0 * HV) + 2u * i, HV, false);
  REP8(LOAD_Q)

  // Softmax state of row r = lane / 2 (both lanes of a row keep the same values), as attn_flash.comp.
  const uint r = lane >> 1, hl = lane & 1u, pos = spos + r;
  const float kLazy = 8.0;
  float m = NEG, l = 0.0;
#define ZERO_O(i) FRAG of##i = FRAG(0.0);
  REP8(ZERO_O)

  const uint S0 = sg * 80u, P0 = sg * 48u, O0 = sg * 256u, R0 = sg * 16u;  // this subgroup's scratch
  const uint last_key = spos + nq - 1u;  // nq > 0
  for (uint kb = kb_first; kb <= kb_end; ++kb) {
    const uint cur = ((kb - kb_first) & 1u) * 2u * SB;
    const bool more = kb < kb_end;
    if (more) {  // the next block's loads, in flight during this one
      const uint gbase = (uint(Tables[toff + kb + 1u]) * pc.block_stride + kh * pc.head_stride) / 8u;
      REP16(PRE_LOAD)
    }
    // Uniform per subgroup: does any of its queries see a key of this block?
    if (nq > 0u && kb * 16u <= last_key && kb * 16u + 15u >= my_kmin) {
      FRAG s = FRAG(0.0);
#define QK(i)                                                              \
      if (NF > i) {                                                        \
        HFRAG kf;                                                          \
        coopMatLoadNV(kf, kvs, cur + 2u * i, KS, true);                    \
        s = coopMatMulAddNV(qa##i, kf, s);                                 \
      }
      REP8(QK)
      coopMatStoreNV(s, ss, S0, 5u, false);
      SG_SYNC()

      // Row r, keys kb*16 + hl*8 + t.
      const vec4 s0 = uintBitsToFloat(ss[S0 + r * 5u + hl * 2u]), s1 = uintBitsToFloat(ss[S0 + r * 5u + hl * 2u + 1u]);
      const float raw[8] = float[8](s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w);
      float sc[8];
      float mt = NEG;
      [[unroll]] for (uint t = 0u; t < 8u; ++t) {
        const uint j = kb * 16u + hl * 8u + t;
        const bool ok = r < nq && j <= pos && (pc.window == 0u || j + pc.window > pos);
        sc[t] = ok ? raw[t] : NEG;
        mt = max(mt, sc[t]);
      }
      mt = max(mt, subgroupShuffleXor(mt, 1u));
      // A new reference for the row: c rescales what it has summed so far (nothing when l = 0).
      float c = 1.0;
      if (mt > 0.5 * NEG && (m <= 0.5 * NEG || mt > m + kLazy)) {
        c = l > 0.0 ? exp(m - mt) : 1.0;  // l = 0: the row's sums are all zero
        m = mt;
      }
      float sum = 0.0;
      float p[8];
      [[unroll]] for (uint t = 0u; t < 8u; ++t) {
        p[t] = sc[t] > 0.5 * NEG ? exp(sc[t] - m) : 0.0;
        sum += p[t];
      }
      sum += subgroupShuffleXor(sum, 1u);
      l = l * c + sum;
      ps[P0 + r * 3u + hl] = uvec4(packHalf2x16(vec2(p[0], p[1])), packHalf2x16(vec2(p[2], p[3])),
                                   packHalf2x16(vec2(p[4], p[5])), packHalf2x16(vec2(p[6], p[7])));
      if (subgroupAny(c != 1.0)) {  // rare: the output sums of rescaled rows, a fragment at a time
        if (hl == 0u) rs[R0 + r] = c;
#define RESCALE(i)                                                                      \
        if (NF > i) {                                                                   \
          coopMatStoreNV(of##i, os, O0, 16u, false);                                    \
          SG_SYNC()                                                                     \
          for (uint e = lane; e < 256u; e += 32u) os[O0 + e] *= rs[R0 + e / 16u];       \
          SG_SYNC()                                                                     \
          coopMatLoadNV(of##i, os, O0, 16u, false);                                     \
          SG_SYNC()                                                                     \
        }
        REP8(RESCALE)
      }
      SG_SYNC()

      HFRAG pa;
      coopMatLoadNV(pa, ps, P0, 3u, false);
#define PV(i)                                                              \
      if (NF > i) {                                                        \
        HFRAG vf;                                                          \
        coopMatLoadNV(vf, kvs, cur + SB + 2u * i, KS, false);              \
        of##i = coopMatMulAddNV(pa, vf, of##i);                            \
      }
      REP8(PV)
      SG_SYNC()  // ss and ps are rewritten by the next block
    }
    if (more) {
      const uint sbase = cur ^ (2u * SB);
      REP16(PRE_STORE)
    }
    barrier();  // the next block staged; this one's buffer free for the block after
  }

  // Output: O / l, one 16-column fragment at a time through the subgroup's scratch.
  if (hl == 0u) rs[R0 + r] = l > 0.0 ? 1.0 / l : 0.0;
#define OUT(i)                                                                              \
  if (NF > i) {                                                                             \
    coopMatStoreNV(of##i, os, O0, 16u, false);                                              \
    SG_SYNC()                                                                               \
    for (uint e = lane; e < 16u * 16u; e += 32u) {                                          \
      const uint row = e / 16u, d = 16u * i + e % 16u;                                      \
      if (row < nq) O[(qrow0 + sq0 + row) * pc.out_stride + h * HD + d] = os[O0 + e] * rs[R0 + row]; \
    }                                                                                       \
    SG_SYNC()                                                                               \
  }
  REP8(OUT)
}
