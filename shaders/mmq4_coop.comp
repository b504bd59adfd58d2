#version 450
// q4 matrix product on NVIDIA tensor cores for token blocks (batched decode, prefill):
//   y[t, r] (+)= sum_c x[t, c] * W[r, c]
// with W dequantized to f16, x rounded to f16 and f32 accumulation (Precision::fast). Same
// toolchain choice as matmul_coopmat.comp (GL_NV_cooperative_matrix: Debian 12's glslang compiles
// only the NV extension; the host selects this shader only where the device lists 16x16x16
// f16 x f16 + f32 at subgroup scope and 32-wide subgroups). q4 rows are whole 16-byte units here.
//
// Tiles. A workgroup of WG = 32 * NW invocations computes BM rows x BN tokens of y; its NW
// subgroups form a WM x WN grid, subgroup (wm, wn) owning TM = BM / WM rows x TN = BN / WN tokens
// as FM x FN fragments of 16 x 16 (A = W rows, row-major; B = x tokens, column-major;
// C(m, n) = y[token n, row m]). The accumulators are named variables (c00 .. c33), never an
// array: an array of fragments indexed in a loop was placed in local memory (512 bytes per
// invocation on NVIDIA) and ran the first version of this kernel at a few percent of the tensor
// cores.
//
// Steps. K advances KU units (32 * KU columns) per step:
//   - invocation i < BM * KU loads one 16-byte unit (row i % BM, unit i / BM) and its scale and
//     bias; invocations load x in octets (8 floats of one token);
//   - the registers of step k + 1 are loaded before the fragments of step k are multiplied, and
//     dequantized / rounded into the (single) shared tile after the next barrier, so each step's
//     global loads are in flight during the previous step's multiplies.
// Rows of the shared tiles are KU * 32 halves + 8 of padding (80 or 144 bytes: 8 consecutive rows
// start in 8 different 16-byte bank groups).
//
// Split K (SPLIT > 1, for small grids: batched decode). Grid y is token block * SPLIT + split;
// split s covers steps [s * steps / SPLIT, (s + 1) * steps / SPLIT). Each workgroup stores its
// fragments to its slot of the partial buffer P, then counts itself in Cnt[tile]; the last of the
// SPLIT workgroups of a tile sums the SPLIT partials in split order (the same order whichever
// arrives last: the result is deterministic) into y and resets the counter for the next dispatch.
// Without a split each subgroup passes its fragments through its own 16 x 16 f32 scratch in
// shared memory so that y is written with bounds checks, contiguous along rows.
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;   // 32 * NW
layout(constant_id = 1) const uint BM = 128;
layout(constant_id = 2) const uint BN = 128;
layout(constant_id = 3) const uint WM = 2;     // subgroups along rows (NW / WM along tokens)
layout(constant_id = 4) const uint STYPE = 1;
layout(constant_id = 5) const uint GROUP = 64;
layout(constant_id = 6) const uint ACC = 0;    // 1: y += result
layout(constant_id = 7) const uint KU = 2;     // units per row per step (1 or 2); BM * KU <= WG
layout(constant_id = 8) const uint SPLIT = 1;  // K splits (grid y = token blocks * SPLIT)

#include "quant.glsl"

const uint NW = WG / 32u, WN = NW / WM;
const uint TM = BM / WM, TN = BN / WN, FM = TM / 16u, FN = TN / 16u;  // FM, FN <= 4 (host-checked)
const uint SK = KU * 4u + 1u;                   // shared row stride in uvec4 (8 halves each)
const uint XO = (BN * 4u * KU + WG - 1u) / WG;  // x octets per invocation per step, <= 4
// f16 scales (MLX's usual layout): dequantize in f16 pairs (dq_pairs), which orders each word's 8
// values 0,4,1,5,2,6,3,7 in the tile; x's octets are staged in the same order, so every product
// still pairs a weight with its own column.
const bool H16 = STYPE == ST_F16;

layout(binding = 0) readonly buffer Wb4 { uvec4 W4[]; };
layout(binding = 1) readonly buffer Sb { uint S[]; };
layout(binding = 2) readonly buffer Bb { uint B[]; };
layout(binding = 3) readonly buffer Xb4 { vec4 X4[]; };
layout(binding = 4) buffer Yb { float Y[]; };
layout(binding = 5) coherent buffer Pb { float P[]; };   // SPLIT > 1: partial tiles
layout(binding = 6) coherent buffer Cb { uint Cnt[]; };  // SPLIT > 1: arrivals per tile

layout(push_constant) uniform Push {
  uint rows, cols, n, ldx, ldy;
  uint row_words;
  uint groups_per_row;
} pc;

// f16 tiles as uvec4 (8 halves): the cooperative-matrix loads take element offsets and strides in
// units of the array's element type; the dequantized rows are stored 16 bytes at a time.
shared uvec4 Ws[BM * SK];
shared uvec4 Xs[BN * SK];
shared float Cs[SPLIT == 1u ? NW * 256u : 1u];
shared uint last_arrival;

#define FRAG fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>
#define HFRAG fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define REP4(M) M(0) M(1) M(2) M(3)

// The 8 values of q4 word w as f16 s q + b, in pairs (j, j + 4): nibbles j and j + 4 OR-ed into the
// mantissas of 1024.0 (0x6400) are exactly 1024 + q; minus 1024 (exact) and one f16 fma give
// s q + b rounded once, from the f16 scale and bias as stored (2 values per instruction, no
// int -> float conversion, no f32 -> f16 packing).
uvec4 dq_pairs(uint w, f16vec2 s, f16vec2 b) {
  const f16vec2 k = f16vec2(1024.0hf);
  return uvec4(packFloat2x16(fma(unpackFloat2x16((w & 0x000F000Fu) | 0x64006400u) - k, s, b)),
               packFloat2x16(fma(unpackFloat2x16(((w >> 4) & 0x000F000Fu) | 0x64006400u) - k, s, b)),
               packFloat2x16(fma(unpackFloat2x16(((w >> 8) & 0x000F000Fu) | 0x64006400u) - k, s, b)),
               packFloat2x16(fma(unpackFloat2x16(((w >> 12) & 0x000F000Fu) | 0x64006400u) - k, s, b)));
}

// f16 element i of a plane of 32-bit words, in both halves of a word.
uint half_pair(uint word, uint i) { return ((i & 1u) != 0u ? word >> 16 : word & 0xffffu) * 0x10001u; }
#define REP4X4(M) M(0, 0) M(0, 1) M(0, 2) M(0, 3) M(1, 0) M(1, 1) M(1, 2) M(1, 3) \
                  M(2, 0) M(2, 1) M(2, 2) M(2, 3) M(3, 0) M(3, 1) M(3, 2) M(3, 3)

void main() {
  const uint tid = gl_LocalInvocationID.x;
  // Row blocks are folded over grid x and z (z * gridX + x) so huge outputs fit a 65535-wide x.
  const uint rb = gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  const uint row0 = rb * BM;
  if (row0 >= pc.rows) return;  // uniform
  const uint tb = gl_WorkGroupID.y / SPLIT, split = gl_WorkGroupID.y % SPLIT;
  const uint t0 = tb * BN;
  const uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
  const uint wm = sg % WM, wn = sg / WM;
  const uint units = pc.row_words >> 2;
  const uint steps = units / KU;  // the host keeps units a multiple of KU
  const uint k_begin = split * steps / SPLIT, k_end = (split + 1u) * steps / SPLIT;

  // This invocation's weight unit (invocations < BM * KU) and x octets (token, octet-in-step).
  const bool won = tid < BM * KU;
  const uint wi = tid % BM, wu = tid / BM;
  const uint wr = min(row0 + wi, pc.rows - 1u);
  uint xt[4], xq[4];
  bool xon[4], xok[4];
#define XSETUP(i)                                   \
  {                                                 \
    const uint v = tid + i * WG;                    \
    xon[i] = i < XO && v < BN * 4u * KU;            \
    xt[i] = v / (4u * KU);                          \
    xq[i] = v % (4u * KU);                          \
    xok[i] = xon[i] && t0 + xt[i] < pc.n;           \
  }
  REP4(XSETUP)

  uvec4 wq = uvec4(0u);
  float ws = 0.0, wb = 0.0;
  f16vec2 ws2 = f16vec2(0.0hf), wb2 = f16vec2(0.0hf);
  vec4 xa[4], xb[4];
  // Global loads of step k (columns 32 KU k .. + 32 KU - 1).
#define XLOAD(i, k)                                                                      \
  if (xon[i]) {                                                                          \
    const uint xi = ((t0 + xt[i]) * pc.ldx + (k) * KU * 32u) / 4u + 2u * xq[i];          \
    xa[i] = xok[i] ? X4[xi] : vec4(0.0);                                                 \
    xb[i] = xok[i] ? X4[xi + 1u] : vec4(0.0);                                            \
  }
#define LOAD(k)                                                                          \
  {                                                                                      \
    if (won) {                                                                           \
      const uint u = (k) * KU + wu;                                                      \
      wq = W4[wr * units + u];                                                           \
      const uint gi = wr * pc.groups_per_row + (u * 32u) / GROUP;                        \
      if (H16) {                                                                         \
        ws2 = unpackFloat2x16(half_pair(S[gi >> 1u], gi));                               \
        wb2 = unpackFloat2x16(half_pair(B[gi >> 1u], gi));                               \
      } else {                                                                           \
        ws = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);                           \
        wb = plane_value(B[plane_word(gi, STYPE)], gi, STYPE);                           \
      }                                                                                  \
    }                                                                                    \
    XLOAD(0, k) XLOAD(1, k) XLOAD(2, k) XLOAD(3, k)                                      \
  }
  // Dequantize / round the registers into the shared tiles.
#define WSTORE(j)                                                                        \
  if (H16) {                                                                             \
    Ws[wi * SK + wu * 4u + j] = dq_pairs(wq[j], ws2, wb2);                               \
  } else {                                                                               \
    vec4 lo, hi;                                                                         \
    q4_unpack(wq[j], lo, hi);                                                            \
    lo = lo * ws + wb;                                                                   \
    hi = hi * ws + wb;                                                                   \
    Ws[wi * SK + wu * 4u + j] = uvec4(packHalf2x16(lo.xy), packHalf2x16(lo.zw),          \
                                      packHalf2x16(hi.xy), packHalf2x16(hi.zw));         \
  }
#define XSTORE(i)                                                                        \
  if (xon[i]) {                                                                          \
    if (H16)                                                                             \
      Xs[xt[i] * SK + xq[i]] = uvec4(packHalf2x16(vec2(xa[i].x, xb[i].x)), packHalf2x16(vec2(xa[i].y, xb[i].y)), \
                                     packHalf2x16(vec2(xa[i].z, xb[i].z)), packHalf2x16(vec2(xa[i].w, xb[i].w))); \
    else                                                                                 \
      Xs[xt[i] * SK + xq[i]] = uvec4(packHalf2x16(xa[i].xy), packHalf2x16(xa[i].zw),     \
                                     packHalf2x16(xb[i].xy), packHalf2x16(xb[i].zw));    \
  }
#define STORE()                                                                          \
  {                                                                                      \
    if (won) { WSTORE(0) WSTORE(1) WSTORE(2) WSTORE(3) }                                 \
    XSTORE(0) XSTORE(1) XSTORE(2) XSTORE(3)                                              \
  }

#define DECL_C(i, j) FRAG c##i##j = FRAG(0.0);
  REP4X4(DECL_C)

  if (k_begin < k_end) LOAD(k_begin)
  for (uint k = k_begin; k < k_end; ++k) {
    STORE()
    barrier();
    if (k + 1u < k_end) LOAD(k + 1u)
    [[unroll]] for (uint kk = 0u; kk < KU * 4u; kk += 2u) {  // the k16 slices of the step, in uvec4
      HFRAG a0, a1, a2, a3, b0, b1, b2, b3;
#define LOAD_A(i) if (FM > i) coopMatLoadNV(a##i, Ws, (wm * TM + 16u * i) * SK + kk, SK, false);
#define LOAD_B(j) if (FN > j) coopMatLoadNV(b##j, Xs, (wn * TN + 16u * j) * SK + kk, SK, true);
      REP4(LOAD_A)
      REP4(LOAD_B)
#define MMA(i, j) if (FM > i && FN > j) c##i##j = coopMatMulAddNV(a##i, b##j, c##i##j);
      REP4X4(MMA)
    }
    barrier();  // the tiles are rewritten by the next step
  }

  if (SPLIT == 1u) {
    // Fragment (i, j): C(m, n) = y[token t0 + wn*TN + 16j + n, row row0 + wm*TM + 16i + m], through
    // this subgroup's scratch (column-major: element (m, n) at n * 16 + m).
#define PUT(i, j)                                                                            \
    if (FM > i && FN > j) {                                                                  \
      coopMatStoreNV(c##i##j, Cs, sg * 256u, 16u, true);                                     \
      subgroupMemoryBarrierShared();                                                         \
      subgroupBarrier();                                                                     \
      for (uint e = lane; e < 256u; e += 32u) {                                              \
        const uint r = row0 + wm * TM + 16u * i + e % 16u, t = t0 + wn * TN + 16u * j + e / 16u; \
        if (r < pc.rows && t < pc.n) {                                                       \
          const float v = Cs[sg * 256u + e];                                                 \
          const uint yi = t * pc.ldy + r;                                                    \
          Y[yi] = ACC == 1u ? Y[yi] + v : v;                                                 \
        }                                                                                    \
      }                                                                                      \
      subgroupBarrier();                                                                     \
    }
    REP4X4(PUT)
    return;
  }

  // Split K: this workgroup's partial tile [BN tokens][BM rows] in its slot, then the arrival count.
  const uint tile = tb * ((pc.rows + BM - 1u) / BM) + rb;
  const uint slot = (tile * SPLIT + split) * (BM * BN);
#define PSTORE(i, j) \
  if (FM > i && FN > j) coopMatStoreNV(c##i##j, P, slot + (wn * TN + 16u * j) * BM + wm * TM + 16u * i, BM, true);
  REP4X4(PSTORE)
  memoryBarrierBuffer();  // this invocation's partials are visible device-wide before it is counted
  barrier();
  if (tid == 0u) last_arrival = atomicAdd(Cnt[tile], 1u) == SPLIT - 1u ? 1u : 0u;
  barrier();
  if (last_arrival == 0u) return;  // uniform
  memoryBarrierBuffer();
  const uint base = tile * SPLIT * (BM * BN);
  for (uint e = tid; e < BM * BN; e += WG) {
    const uint m = e % BM, t = t0 + e / BM, r = row0 + m;
    if (r < pc.rows && t < pc.n) {
      float v = 0.0;
      for (uint s = 0u; s < SPLIT; ++s) v += P[base + s * (BM * BN) + e];
      const uint yi = t * pc.ldy + r;
      Y[yi] = ACC == 1u ? Y[yi] + v : v;
    }
  }
  if (tid == 0u) Cnt[tile] = 0u;
}
