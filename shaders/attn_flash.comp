#version 450
// Prefill attention on NVIDIA tensor cores (GL_NV_cooperative_matrix, as mmq4_coop.comp): f16 q,
// k, v and p, f32 scores, softmax state and output sums:
//   out[q, h] = sum_j softmax_j(scale * q.k_j) v_j over the visible keys j of query q.
//
// A workgroup of NSG subgroups takes 16 queries of one sequence and head (grid: see main());
// subgroup w walks every NSG-th cache block (16 keys) the queries can see, starting at the w-th,
// with its own softmax state, and the NSG partial results are merged at the end (below). One
// block's work is a chain of dependent steps (loads, two products, the softmax through shared
// memory): with one subgroup, the query tiles at the end of a long prompt walked every block in
// sequence while the GPU had room for more. A block's 16 rows of one
// kv head are contiguous in the cache (kernels.h KvLayer), so its K and V are loaded straight into
// fragments, all of them before any arithmetic on the block (and the subgroup's next block's table
// entry with them):
//   S = Q K^T       HD/16 products (Q: the scaled f16 query tile, kept in fragments; K^T: the block
//                   read column-major with stride HD);
//   online softmax  S goes through shared memory; lanes 2r and 2r+1 own row r (8 keys each):
//                   masked keys (causal, sliding window) get p = 0; the row's reference maximum
//                   m is raised lazily (see below) and its sum l updated;
//   O += P V        P (f16) from shared memory, V straight from the block, O in HD/16 fragments.
// Merge: subgroup w ends with output sums O_w and sum l_w against its reference m_w per row; with
// M = max_w m_w the row is sum_w O_w e^(m_w - M) / sum_w l_w e^(m_w - M) (a subgroup that saw no key
// of the row, l_w = 0, adds nothing). With NSG = 1 this is O / l as before, bit for bit.
// Keys past the sequence in its last block are masked (p = 0); the cache is zeroed when it is
// allocated, so they never hold a NaN that 0 * NaN would spread.
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
layout(constant_id = 1) const uint NSG = 1;  // subgroups per workgroup (key blocks interleaved)
layout(constant_id = 2) const uint WG = 32;  // 32 * NSG
const uint NF = HD / 16u;                    // 16-wide fragments along head_dim (<= 8)
const uint HV = HD / 8u;                     // uvec4 (8 halves) per K / V row

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

shared uvec4 qs[16u * HV];        // the query tile, f16, row-major [16][HD]
// Per subgroup:
shared float ss[NSG * 16u * 16u];  // scores [query][key]
shared uvec4 ps[NSG * 16u * 2u];   // probabilities, f16, row-major [16][16]
shared float os[NSG * 16u * HD];   // output sums [query][dim]
shared float rs[NSG * 16u];        // per row: the rescale factor
shared vec2 mls[NSG * 16u];        // per row: m and l at the end

#define FRAG fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>
#define HFRAG fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define REP8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

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
  const uint q_lo = tile * 16u;
  if (q_lo >= uint(meta.y)) return;  // uniform
  const uint nq = min(16u, uint(meta.y) - q_lo);
  const uint qrow0 = uint(meta.x) + q_lo, pos_lo = uint(meta.z) + q_lo, toff = uint(meta.w);
  const uint kh = h / pc.group;
  const uint kmax = pos_lo + nq - 1u;  // last key any query of the tile sees
  const uint kmin = (pc.window > 0u && pos_lo + 1u > pc.window) ? pos_lo + 1u - pc.window : 0u;

  // Stage the scaled queries as f16 (rows past nq are zero) and clear the output sums.
  for (uint e = tid; e < 16u * HV; e += WG) {
    const uint r = e / HV, c = e % HV;
    uvec4 w = uvec4(0u);
    if (r < nq) {
      const uint qi = ((qrow0 + r) * pc.q_stride + h * HD) / 4u + 2u * c;
      const vec4 a = Q4[qi] * pc.scale, b = Q4[qi + 1u] * pc.scale;
      w = uvec4(packHalf2x16(a.xy), packHalf2x16(a.zw), packHalf2x16(b.xy), packHalf2x16(b.zw));
    }
    qs[e] = w;
  }
  barrier();
#define LOAD_Q(i) HFRAG qa##i; if (NF > i) coopMatLoadNV(qa##i, qs, 2u * i, HV, false);
  REP8(LOAD_Q)

  // Softmax state of row r = lane / 2 (both lanes of a row keep the same values): m is the
  // reference the probabilities are taken against, l their sum. The output sums stay in fragments;
  // m is only raised (and the rows' sums rescaled, through shared memory) when a row's block
  // maximum exceeds it by more than kLazy: p = exp(s - m) <= e^kLazy then, well inside f16.
  const uint r = lane >> 1, hl = lane & 1u, pos = pos_lo + r;
  const float kLazy = 8.0;
  float m = NEG, l = 0.0;
#define ZERO_O(i) FRAG of##i = FRAG(0.0);
  REP8(ZERO_O)

  const uint kb_end = kmax / 16u, kb_first = kmin / 16u + sg;
  int blk_next = kb_first <= kb_end ? Tables[toff + kb_first] : 0;
  const uint S0 = sg * 256u, P0 = sg * 32u, O0 = sg * 16u * HD, R0 = sg * 16u;  // this subgroup's scratch
  for (uint kb = kb_first; kb <= kb_end; kb += NSG) {
    // All of the block's K and V fragments are requested first, and the next block's table entry.
    const uint base = (uint(blk_next) * pc.block_stride + kh * pc.head_stride) / 8u;  // in uvec4
    if (kb + NSG <= kb_end) blk_next = Tables[toff + kb + NSG];
#define LOAD_KV(i)                                                       \
    HFRAG kf##i, vf##i;                                                  \
    if (NF > i) {                                                        \
      coopMatLoadNV(kf##i, K4, base + 2u * i, HV, true);                 \
      coopMatLoadNV(vf##i, V4, base + 2u * i, HV, false);                \
    }
    REP8(LOAD_KV)
    FRAG s = FRAG(0.0);
#define QK(i) if (NF > i) s = coopMatMulAddNV(qa##i, kf##i, s);
    REP8(QK)
    coopMatStoreNV(s, ss, S0, 16u, false);
    SG_SYNC()

    // Row r, keys kb*16 + hl*8 + t.
    float sc[8];
    float mt = NEG;
    [[unroll]] for (uint t = 0u; t < 8u; ++t) {
      const uint j = kb * 16u + hl * 8u + t;
      const bool ok = r < nq && j <= pos && (pc.window == 0u || j + pc.window > pos);
      sc[t] = ok ? ss[S0 + r * 16u + hl * 8u + t] : NEG;
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
    ps[P0 + r * 2u + hl] = uvec4(packHalf2x16(vec2(p[0], p[1])), packHalf2x16(vec2(p[2], p[3])),
                            packHalf2x16(vec2(p[4], p[5])), packHalf2x16(vec2(p[6], p[7])));
    if (subgroupAny(c != 1.0)) {  // rare: the output sums of rescaled rows, through shared memory
      if (hl == 0u) rs[R0 + r] = c;
#define O_OUT(i) if (NF > i) coopMatStoreNV(of##i, os, O0 + 16u * i, HD, false);
      REP8(O_OUT)
      SG_SYNC()
      for (uint e = lane; e < 16u * HD; e += 32u) os[O0 + e] *= rs[R0 + e / HD];
      SG_SYNC()
#define O_IN(i) if (NF > i) coopMatLoadNV(of##i, os, O0 + 16u * i, HD, false);
      REP8(O_IN)
    }
    SG_SYNC()

    HFRAG pa;
    coopMatLoadNV(pa, ps, P0, 2u, false);
#define PV(i) if (NF > i) of##i = coopMatMulAddNV(pa, vf##i, of##i);
    REP8(PV)
    SG_SYNC()  // ss and ps are rewritten by the next block
  }

#define O_OUT2(i) if (NF > i) coopMatStoreNV(of##i, os, O0 + 16u * i, HD, false);
  REP8(O_OUT2)
  if (hl == 0u) mls[R0 + r] = vec2(m, l);
  barrier();
  for (uint e = tid; e < nq * HD; e += WG) {
    const uint row = e / HD, d = e % HD;
    float M = NEG;
    [[unroll]] for (uint w = 0u; w < NSG; ++w) M = max(M, mls[w * 16u + row].x);
    float o = 0.0, L = 0.0;
    [[unroll]] for (uint w = 0u; w < NSG; ++w) {
      const vec2 ml = mls[w * 16u + row];
      const float f = ml.y > 0.0 ? exp(ml.x - M) : 0.0;
      o += os[w * 16u * HD + e] * f;
      L += ml.y * f;
    }
    O[(qrow0 + row) * pc.out_stride + h * HD + d] = o * (L > 0.0 ? 1.0 / L : 0.0);
  }
}
