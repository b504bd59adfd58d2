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
//   - the BM * KU weight units of a step are spread over the invocations, UPT = BM * KU / WG
//     (rounded up, <= 4) each: unit v = tid + j * WG (j < UPT) is row v / KU, unit v % KU
//     (RMAP = 1: KU neighbouring lanes read one row's KU * 16 contiguous bytes) or row v % BM,
//     unit v / BM (RMAP = 0: a warp's lanes read 32 rows); each with its scale and bias.
//     Invocations load x in octets (8 floats of one token);
//   - the registers of step k + DEPTH are loaded before the fragments of step k are multiplied,
//     and dequantized / rounded into the (single) shared tile after a later barrier, so each
//     step's global loads are in flight during the previous DEPTH steps (DEPTH = 2: two register
//     sets, for small token blocks, whose time is load latency: a workgroup's few steps are a
//     chain of load, dequantize, barrier, multiply; shared memory limits how many run per SM).
// Rows of the shared tiles are KU * 32 halves + 8 of padding (KU * 64 + 16 bytes: 8 consecutive
// rows start in 8 different 16-byte bank groups).
//
// Split K (SPLIT > 1, for small grids: batched decode). Grid y is token block * SPLIT + split;
// split s covers steps [s * steps / SPLIT, (s + 1) * steps / SPLIT). Each workgroup stores its
// fragments to its slot of the partial buffer P, then counts itself in Cnt[tile]; the last of the
// SPLIT workgroups of a tile sums the SPLIT partials in split order (the same order whichever
// arrives last: the result is deterministic) into y and resets the counter for the next dispatch.
// Without a split each subgroup passes its fragments through its own 16 x 16 f32 scratch in
// shared memory so that y is written with bounds checks, contiguous along rows.
//
// Norm fusion (batched decode: rmsnorm of the residual stream without its own dispatch). The
// projections that add into the residual stream (o_proj, down: ACC = 1, SPLIT > 1) are its
// producers: with SSQ_OUT the last workgroup of each tile also writes, per token, the sum of
// squares of the tile's new y rows to SSQ[token][64-row group] (padded with zeros to a multiple
// of 4 groups). A consumer (qkv, gate_up: NORM = 1) sums its tokens' SSQ rows in a fixed order, 4 groups
// per load (deterministic), and stages x * inv_rms * G instead of x.
//
// SiLU fusion (gate_up, SILU = 1): W's rows are rows / 2 gate rows then their up rows; a tile
// takes BM / 2 gate rows and the BM / 2 up rows paired with them and writes silu(gate) * up (the
// down projection's input) instead of the tile's rows: with a split K the sum does (the tile's
// first BM / 2 rows are the gate rows), without one each subgroup (its TM rows: TM / 2 gate rows,
// then their up rows, so that accumulator fragments i and i + FM / 2 pair element by element; FM
// even, host-checked) before its output passes through the scratch (prefill).
//
// bf16 activations between the projections (XBF, YBF, XG_OUT; prefill too: there rmsnorm.comp
// writes the bf16 x of qkv and gate_up, XBF without NORM, and gate_up's in-tile silu output is
// bf16 for down). Every row tile
// re-reads its tokens' x from L2 (32 tokens x 3072 f32 columns, 384 KiB, for each of gate_up's
// 256 row tiles: 4x the bytes of the weights), and the norm consumers also load G with every x
// octet. So a producer of the residual stream (SSQ_OUT) can also write, with XG_OUT, y * G for
// the next norm's weight G (binding 8) as bf16 into XG, and its consumer reads that (XBF with
// NORM: only 1 / rms left to apply); gate_up can write its silu(gate) * up as bf16 (YBF) for
// down (XBF). bf16 keeps f32's range (the residual stream can exceed f16's) and 8 bits of
// mantissa: x is rounded to f16 for the tensor cores anyway, and the added error, 2^-8 relative
// per element, is below the int8 blocks of the matvec's fast path (bench/RESULTS.md).
//
// AFRAG (module mmq4_frag; batched decode, 5-32 tokens): the weights never pass through shared
// memory. The step above is a chain (load, dequantize into the shared tile, barrier, multiply,
// barrier) with few loads in flight per multiprocessor, so at decode sizes the tiles read their
// weights at 0.3-0.5 of 4.3 TB/s. In this variant every subgroup owns TM = 16 FM rows of the tile
// (WM = NW, FM <= 2) and streams them on its own, 128 columns (KU = 4 units) per step: each lane
// loads its rows' units DEPTH steps ahead and dequantizes them straight into the registers of A
// fragments, whose element layout (implementation-defined) the host checks with coop_probe.comp
// first. x (BN <= 32 tokens) passes through shared memory a step at a time, double-buffered: its
// loads for step k + 1 are issued before step k's multiplies and stored after them, then one
// barrier per step (the old tile loop: two, with the weights' dequantization in between). Its
// columns are permuted within each step as the fragments take the weights'. The split-K epilogue
// is the one above. With N8 (module mmq4_frag8, always split) the accumulators and x's fragments
// are 16 x 8, so tiles of 8 and 24 tokens leave less of the tile empty at 5-8 and 17-24 tokens.
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;   // 32 * NW
layout(constant_id = 1) const uint BM = 128;
layout(constant_id = 2) const uint BN = 128;
layout(constant_id = 3) const uint WM = 2;     // subgroups along rows (NW / WM along tokens)
layout(constant_id = 4) const uint STYPE = 1;
layout(constant_id = 5) const uint GROUP = 64;
layout(constant_id = 6) const uint ACC = 0;    // 1: y += result
layout(constant_id = 7) const uint KU = 2;     // units per row per step (1, 2, 4 or 8); BM * KU <= 4 WG
layout(constant_id = 8) const uint SPLIT = 1;  // K splits (grid y = token blocks * SPLIT)
layout(constant_id = 9) const uint RMAP = 1;   // unit -> (row, unit) mapping, see Steps
layout(constant_id = 10) const uint DEPTH = 1;  // steps loaded ahead (1 or 2 register sets)
layout(constant_id = 11) const uint NORM = 0;     // 1: x is rmsnorm(x) * G, from the SSQ sums
layout(constant_id = 12) const uint SSQ_OUT = 0;  // 1 (SPLIT > 1): write SSQ, see Norm fusion
layout(constant_id = 13) const uint SILU = 0;     // 1 (SPLIT > 1, ACC 0): y = silu(gate) * up, see below
layout(constant_id = 14) const uint XBF = 0;      // 1: x is bf16 (with NORM: already times G), see below
layout(constant_id = 15) const uint YBF = 0;      // 1 (SILU): y written as bf16 (pairs of rows)
layout(constant_id = 16) const uint XG_OUT = 0;   // 1 (SSQ_OUT): also writes bf16(y * G) to XG

#include "quant.glsl"

const uint NW = WG / 32u, WN = NW / WM;
#ifdef N8
const uint NF = 8u;   // tokens per accumulator fragment: 16 x 8 (AFRAG only, with a split)
#else
const uint NF = 16u;  // tokens per accumulator fragment
#endif
const uint TM = BM / WM, TN = BN / WN, FM = TM / 16u, FN = TN / NF;  // FM, FN <= 4 (host-checked)
const uint SK = KU * 4u + 1u;                   // shared row stride in uvec4 (8 halves each)
const uint XO = (BN * 4u * KU + WG - 1u) / WG;  // x octets per invocation per step, <= 4
const uint UPT = (BM * KU + WG - 1u) / WG;      // weight units per invocation per step, <= 4
// f16 scales (MLX's usual layout): dequantize in f16 pairs (dq_pairs), which orders each word's 8
// values 0,4,1,5,2,6,3,7 in the tile; x's octets are staged in the same order, so every product
// still pairs a weight with its own column.
const bool H16 = STYPE == ST_F16;

layout(binding = 0) readonly buffer Wb4 { uvec4 W4[]; };
layout(binding = 1) readonly buffer Sb { uint S[]; };
layout(binding = 2) readonly buffer Bb { uint B[]; };
layout(binding = 3) readonly buffer Xb4 { vec4 X4[]; };
layout(binding = 3) readonly buffer Xh4 { uvec4 XH4[]; };  // XBF: 8 bf16 at a time
layout(binding = 4) buffer Yb { float Y[]; };
layout(binding = 4) buffer Yh { uint YH[]; };  // YBF: bf16 pairs
layout(binding = 5) coherent buffer Pb { float P[]; };   // SPLIT > 1: partial tiles
layout(binding = 5) coherent buffer Pb4 { vec4 P4[]; };  // the same, 4 rows at a time
layout(binding = 6) coherent buffer Cb { uint Cnt[]; };  // SPLIT > 1: arrivals per tile
layout(binding = 7) buffer Qb { float SSQ[]; };          // [token][ssq_tiles rounded up to 4] sums of squares of 64 rows
layout(binding = 7) buffer Qb4 { vec4 SSQ4[]; };         // the same, 4 tiles at a time
layout(binding = 8) readonly buffer Gb4 { vec4 G4[]; };  // NORM: the rmsnorm weight (XG_OUT: the next one's)
layout(binding = 9) writeonly buffer XGb { uint XG[]; };  // XG_OUT: bf16(y * G) pairs, [n][ldy]

layout(push_constant) uniform Push {
  uint rows, cols, n, ldx, ldy;
  uint row_words;
  uint groups_per_row;
  uint ssq_tiles;  // 64-row groups of the SSQ rows (NORM: of the producer of x's)
  float eps;       // NORM
} pc;

// f16 tiles as uvec4 (8 halves): the cooperative-matrix loads take element offsets and strides in
// units of the array's element type; the dequantized rows are stored 16 bytes at a time.
#if defined(N8) && !defined(AFRAG)
#error "16 x 8 fragments: AFRAG only"
#endif
#ifdef AFRAG
const uint SXS = 17u;  // x's shared row stride in uvec4: one 128-column step (+ 16 bytes)
shared uvec4 Xs[2u * BN * SXS];  // two steps: the one multiplied and the next
#else
shared uvec4 Ws[BM * SK];
shared uvec4 Xs[BN * SK];
#endif
shared float Cs[SPLIT == 1u ? NW * 256u : 1u];
shared uint last_arrival;
shared float inv_rms[NORM == 1u ? BN : 1u];

#ifdef N8
#define FRAG fcoopmatNV<32, gl_ScopeSubgroup, 16, 8>
#define BFRAG fcoopmatNV<16, gl_ScopeSubgroup, 16, 8>
#else
#define FRAG fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>
#define BFRAG fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#endif
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

#include "bf16.glsl"
#define REP4X4(M) M(0, 0) M(0, 1) M(0, 2) M(0, 3) M(1, 0) M(1, 1) M(1, 2) M(1, 3) \
                  M(2, 0) M(2, 1) M(2, 2) M(2, 3) M(3, 0) M(3, 1) M(3, 2) M(3, 3)

// SILU: the weight row of tile row i (see SiLU fusion), g0 the tile's first gate row.
uint silu_row(uint i, uint g0, uint half_rows) {
  if (SPLIT > 1u) return i < BM / 2u ? g0 + i : half_rows + g0 + i - BM / 2u;
  const uint b = i / TM, j = i % TM;
  return j < TM / 2u ? g0 + b * (TM / 2u) + j : half_rows + g0 + b * (TM / 2u) + j - TM / 2u;
}

// NORM: inv_rms[i] = 1 / rms of token t0 + i (i = tid < BN) from its SSQ row.
void tile_inv_rms(uint tid, uint t0) {
  if (tid < BN) {
    const uint t = min(t0 + tid, pc.n - 1u), nv = (pc.ssq_tiles + 3u) / 4u;
    vec4 acc = vec4(0.0);
    [[unroll]] for (uint j = 0u; j < 16u; ++j)
      if (j < nv) acc += SSQ4[t * nv + j];
    for (uint j = 16u; j < nv; ++j) acc += SSQ4[t * nv + j];
    inv_rms[tid] = inversesqrt(((acc.x + acc.y) + (acc.z + acc.w)) / float(pc.cols) + pc.eps);
  }
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  // Row blocks are folded over grid x and z (z * gridX + x) so huge outputs fit a 65535-wide x.
  const uint rb = gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  const uint row0 = rb * BM;
  if (row0 >= pc.rows) return;  // uniform
  // Weight row of tile row i: with SILU the tile's first half are gate rows rb * BM / 2 + i of the
  // rows / 2 gate rows, the second half the up rows paired with them.
  const uint half_rows = pc.rows / 2u, g0 = rb * (BM / 2u);
#define row_of(i) (SILU == 1u ? silu_row(i, g0, half_rows) : row0 + (i))
  const uint tb = gl_WorkGroupID.y / SPLIT, split = gl_WorkGroupID.y % SPLIT;
  const uint t0 = tb * BN;
  const uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
  const uint wm = sg % WM, wn = sg / WM;
  const uint units = pc.row_words >> 2;
  const uint steps = units / KU;  // the host keeps units a multiple of KU
  const uint k_begin = split * steps / SPLIT, k_end = (split + 1u) * steps / SPLIT;

#define DECL_C(i, j) FRAG c##i##j = FRAG(0.0);
  REP4X4(DECL_C)
#ifdef AFRAG
  // Weight fragments built in registers (see "AFRAG" above). Lane (g, lq) = (lane / 4, lane % 4)
  // holds rows g and g + 8 of each of its FM fragments and reads unit lq (16 bytes, 32 columns) of
  // each 128-column step of those rows: 4 lanes read one row's 64 contiguous bytes.
  const uint g = lane / 4u, lq = lane % 4u;
  uint wra[2], wrb[2];  // the weight rows of fragment f (clamped: rows beyond are never stored)
  [[unroll]] for (uint f = 0u; f < 2u; ++f) {
    wra[f] = min(row_of(wm * TM + 16u * f + g), pc.rows - 1u);
    wrb[f] = min(row_of(wm * TM + 16u * f + g + 8u), pc.rows - 1u);
  }
  // DEPTH register sets (suffix R): the step's unit of rows g and g + 8, their scale and bias as
  // f16 pairs (half_pair).
  uvec4 qa0[2], qb0[2], qa1[2], qb1[2], qa2[2], qb2[2], qa3[2], qb3[2];
  uint sa0[2], ba0[2], sb0[2], bb0[2], sa1[2], ba1[2], sb1[2], bb1[2];
  uint sa2[2], ba2[2], sb2[2], bb2[2], sa3[2], ba3[2], sb3[2], bb3[2];
#define FLOAD1(f, k, R)                                                                  \
  if (FM > f) {                                                                          \
    const uint u = (k) * 4u + lq, gq = (u * 32u) / GROUP;                                 \
    qa##R[f] = W4[wra[f] * units + u];                                                   \
    qb##R[f] = W4[wrb[f] * units + u];                                                   \
    const uint ga = wra[f] * pc.groups_per_row + gq, gb = wrb[f] * pc.groups_per_row + gq; \
    sa##R[f] = half_pair(S[ga >> 1u], ga);                                               \
    ba##R[f] = half_pair(B[ga >> 1u], ga);                                               \
    sb##R[f] = half_pair(S[gb >> 1u], gb);                                               \
    bb##R[f] = half_pair(B[gb >> 1u], gb);                                               \
  }
#define FLOAD(k, R) { FLOAD1(0, k, R) FLOAD1(1, k, R) }
  // Fragment A (16 x 16 f16) from four f16 pairs, in the layout NVIDIA's driver uses (not PTX's
  // mma register order, which interleaves the rows), checked by the host with coop_probe.comp
  // before it picks this variant: lane (g, lq) holds (row,
  // column) (g, 2lq + e) as elements e = 0, 1, (g, 2lq + 8 + e) as 2, 3, (g + 8, 2lq + e) as 4, 5
  // and (g + 8, 2lq + 8 + e) as 6, 7.
#define SET_FRAG(A, p0, p1, p2, p3)                                                      \
  {                                                                                      \
    f16vec2 h = unpackFloat2x16(p0); A[0] = h.x; A[1] = h.y;                             \
    h = unpackFloat2x16(p1); A[2] = h.x; A[3] = h.y;                                     \
    h = unpackFloat2x16(p2); A[4] = h.x; A[5] = h.y;                                     \
    h = unpackFloat2x16(p3); A[6] = h.x; A[7] = h.y;                                     \
  }
  // Word j of the lane's unit (columns 8j .. 8j + 7 of its 32) gives its elements of two
  // fragments, k-chunks 2j and 2j + 1 of the step: dq_pairs' pairs (0, 4) (1, 5) to the first,
  // (2, 6) (3, 7) to the second. The columns are permuted within the step (the same for x, staged
  // below), which the product does not see.
#define FBUILD(f, j, R, AE, AO)                                                          \
  {                                                                                      \
    const uvec4 da = dq_pairs(qa##R[f][j], unpackFloat2x16(sa##R[f]), unpackFloat2x16(ba##R[f])); \
    const uvec4 db = dq_pairs(qb##R[f][j], unpackFloat2x16(sb##R[f]), unpackFloat2x16(bb##R[f])); \
    SET_FRAG(AE, da.x, da.y, db.x, db.y)                                                 \
    SET_FRAG(AO, da.z, da.w, db.z, db.w)                                                 \
  }
// k-chunk XO (uvec4 offset in x's buffer) of fragments A0 (rows 0-15) and A1 (rows 16-31, FM = 2):
// each of x's FN fragments is loaded once and multiplied with both.
#define FMMA1(A0, A1, XO, j)                                                             \
  if (FN > j) {                                                                          \
    BFRAG b;                                                                             \
    coopMatLoadNV(b, Xs, NF * j * SXS + (XO), SXS, true);                                \
    c0##j = coopMatMulAddNV(A0, b, c0##j);                                               \
    if (FM > 1u) c1##j = coopMatMulAddNV(A1, b, c1##j);                                  \
  }
#define FMMA(A0, A1, XO) { FMMA1(A0, A1, XO, 0) FMMA1(A0, A1, XO, 1) FMMA1(A0, A1, XO, 2) FMMA1(A0, A1, XO, 3) }
#define FWORD(j, xb, R)                                                                  \
  {                                                                                      \
    HFRAG a0e, a0o, a1e, a1o;                                                            \
    FBUILD(0, j, R, a0e, a0o)                                                            \
    if (FM > 1u) FBUILD(1, j, R, a1e, a1o)                                               \
    const uint xo = (xb) + 4u * j; /* k-chunk 2j of the step, in uvec4 */                 \
    FMMA(a0e, a1e, xo)                                                                   \
    FMMA(a0o, a1o, xo + 2u)                                                              \
  }
  // x of one step: octet v = tid + i * WG (< BN * 16) is token v / 16, columns 8 (v % 16) ..
  // + 7 of the step (unit (v % 16) / 4, word v % 4 of the lanes' units).
  const uint XPT = (BN * 16u + WG - 1u) / WG;  // octets per invocation (host: <= 4)
  uvec4 xh[4];
  vec4 xa[4], xb[4], ga[4], gb[4];
#define XFETCH1(i, k)                                                                    \
  if (i < XPT) {                                                                         \
    const uint v = tid + i * WG, tt = v / 16u, c = (k) * 128u + 8u * (v % 16u);          \
    const bool ok = v < BN * 16u && t0 + tt < pc.n;                                      \
    const uint xe = (t0 + tt) * pc.ldx + c;                                              \
    if (XBF == 1u) {                                                                     \
      xh[i] = ok ? XH4[xe / 8u] : uvec4(0u);                                             \
    } else {                                                                             \
      xa[i] = ok ? X4[xe / 4u] : vec4(0.0);                                              \
      xb[i] = ok ? X4[xe / 4u + 1u] : vec4(0.0);                                         \
      if (NORM == 1u) {                                                                  \
        ga[i] = G4[c / 4u];                                                              \
        gb[i] = G4[c / 4u + 1u];                                                         \
      }                                                                                  \
    }                                                                                    \
  }
#define XFETCH(k) { XFETCH1(0, k) XFETCH1(1, k) XFETCH1(2, k) XFETCH1(3, k) }
  // Into buffer `buf` as f16 pairs (value p, p + 4) at the positions FBUILD gives their weights:
  // pair p is k-chunk 2j + p / 2, columns 2u + 8 (p % 2) + {0, 1}.
#define XPUT1(i, buf)                                                                    \
  if (i < XPT && tid + i * WG < BN * 16u) {                                              \
    const uint v = tid + i * WG, tt = v / 16u, u = (v % 16u) / 4u, j = v % 4u;           \
    vec4 a = XBF == 1u ? bf16_quad(xh[i].xy) : xa[i];                                    \
    vec4 b = XBF == 1u ? bf16_quad(xh[i].zw) : xb[i];                                    \
    if (NORM == 1u && XBF == 0u) {                                                       \
      a *= ga[i];                                                                        \
      b *= gb[i];                                                                        \
    }                                                                                    \
    if (NORM == 1u) {                                                                    \
      a *= inv_rms[tt];                                                                  \
      b *= inv_rms[tt];                                                                  \
    }                                                                                    \
    const uint h0 = ((buf) * BN + tt) * SXS * 8u + 32u * j + 2u * u;  /* halves */       \
    [[unroll]] for (uint p = 0u; p < 4u; ++p) {                                          \
      const uint hh = h0 + (p / 2u) * 16u + (p % 2u) * 8u;                               \
      Xs[hh / 8u][(hh / 2u) % 4u] = packHalf2x16(vec2(a[p], b[p]));                      \
    }                                                                                    \
  }
#define XPUT(buf) { XPUT1(0, buf) XPUT1(1, buf) XPUT1(2, buf) XPUT1(3, buf) }
  // Step k from register set R and x buffer (k - k_begin) % 2: step k + 1's x loads first, the
  // set's loads of step kn after the multiplies, then step k + 1's x into the other buffer.
#define FSTEP(k, kn, R)                                                                  \
  {                                                                                      \
    const uint xbuf = ((k) - k_begin) & 1u;                                              \
    if ((k) + 1u < k_end) XFETCH((k) + 1u)                                               \
    FWORD(0, xbuf * BN * SXS, R) FWORD(1, xbuf * BN * SXS, R)                            \
    FWORD(2, xbuf * BN * SXS, R) FWORD(3, xbuf * BN * SXS, R)                            \
    if ((kn) < k_end) FLOAD(kn, R)                                                       \
    if ((k) + 1u < k_end) XPUT(xbuf ^ 1u)                                                \
    barrier();                                                                           \
  }

  // The first DEPTH steps' loads, then the tokens' 1 / rms and the first step's x.
  if (k_begin < k_end) FLOAD(k_begin, 0)
  if (DEPTH > 1u && k_begin + 1u < k_end) FLOAD(k_begin + 1u, 1)
  if (DEPTH > 2u && k_begin + 2u < k_end) FLOAD(k_begin + 2u, 2)
  if (DEPTH > 3u && k_begin + 3u < k_end) FLOAD(k_begin + 3u, 3)
  XFETCH(k_begin)
  if (NORM == 1u) {
    tile_inv_rms(tid, t0);
    barrier();
  }
  XPUT(0u)
  barrier();
  for (uint k = k_begin; k < k_end; k += DEPTH) {
    FSTEP(k, k + DEPTH, 0)
    if (DEPTH > 1u && k + 1u < k_end) FSTEP(k + 1u, k + 1u + DEPTH, 1)
    if (DEPTH > 2u && k + 2u < k_end) FSTEP(k + 2u, k + 2u + DEPTH, 2)
    if (DEPTH > 3u && k + 3u < k_end) FSTEP(k + 3u, k + 3u + DEPTH, 3)
  }
#else
  // This invocation's weight units (v = tid + j * WG < BM * KU) and x octets (token, octet-in-step).
  bool won[4];
  uint wi[4], wu[4], wr[4];
#define WSETUP(j)                                                       \
  {                                                                     \
    const uint v = tid + j * WG;                                        \
    won[j] = j < UPT && v < BM * KU;                                    \
    wi[j] = RMAP == 1u ? v / KU : v % BM;                               \
    wu[j] = RMAP == 1u ? v % KU : v / BM;                               \
    wr[j] = min(row_of(wi[j]), pc.rows - 1u);                           \
  }
  REP4(WSETUP)
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

  // Two register sets (suffix 0 / 1) for the loads of steps k + 1 and k + 2 (DEPTH = 2).
  uvec4 wq0[4], wq1[4];
  float ws0[4], wb0[4], ws1[4], wb1[4];
  f16vec2 ws20[4], wb20[4], ws21[4], wb21[4];
  vec4 xa0[4], xb0[4], xa1[4], xb1[4];
  uvec4 xh0[4], xh1[4];                 // XBF: the octets as bf16
  vec4 ga0[4], gb0[4], ga1[4], gb1[4];  // NORM without XBF: G of the x octets
  // Global loads of step k (columns 32 KU k .. + 32 KU - 1) into register set R.
#define XLOAD(i, k, R)                                                                   \
  if (xon[i] && XBF == 1u) {                                                             \
    const uint xi = ((t0 + xt[i]) * pc.ldx + (k) * KU * 32u) / 8u + xq[i];               \
    xh##R[i] = xok[i] ? XH4[xi] : uvec4(0u);                                             \
  } else if (xon[i]) {                                                                   \
    const uint xi = ((t0 + xt[i]) * pc.ldx + (k) * KU * 32u) / 4u + 2u * xq[i];          \
    xa##R[i] = xok[i] ? X4[xi] : vec4(0.0);                                              \
    xb##R[i] = xok[i] ? X4[xi + 1u] : vec4(0.0);                                         \
    if (NORM == 1u) {                                                                    \
      const uint gi = (k) * KU * 8u + 2u * xq[i];                                        \
      ga##R[i] = G4[gi];                                                                 \
      gb##R[i] = G4[gi + 1u];                                                            \
    }                                                                                    \
  }
#define WLOAD(j, k, R)                                                                   \
  if (won[j]) {                                                                          \
    const uint u = (k) * KU + wu[j];                                                     \
    wq##R[j] = W4[wr[j] * units + u];                                                    \
    const uint gi = wr[j] * pc.groups_per_row + (u * 32u) / GROUP;                       \
    if (H16) {                                                                           \
      ws2##R[j] = unpackFloat2x16(half_pair(S[gi >> 1u], gi));                           \
      wb2##R[j] = unpackFloat2x16(half_pair(B[gi >> 1u], gi));                           \
    } else {                                                                             \
      ws##R[j] = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);                       \
      wb##R[j] = plane_value(B[plane_word(gi, STYPE)], gi, STYPE);                       \
    }                                                                                    \
  }
#define LOAD(k, R)                                                                       \
  {                                                                                      \
    WLOAD(0, k, R) WLOAD(1, k, R) WLOAD(2, k, R) WLOAD(3, k, R)                          \
    XLOAD(0, k, R) XLOAD(1, k, R) XLOAD(2, k, R) XLOAD(3, k, R)                          \
  }
  // Dequantize / round register set R into the shared tiles.
#define WSTORE1(j, e, R)                                                                 \
  if (H16) {                                                                             \
    Ws[wi[j] * SK + wu[j] * 4u + e] = dq_pairs(wq##R[j][e], ws2##R[j], wb2##R[j]);       \
  } else {                                                                               \
    vec4 lo, hi;                                                                         \
    q4_unpack(wq##R[j][e], lo, hi);                                                      \
    lo = lo * ws##R[j] + wb##R[j];                                                       \
    hi = hi * ws##R[j] + wb##R[j];                                                       \
    Ws[wi[j] * SK + wu[j] * 4u + e] = uvec4(packHalf2x16(lo.xy), packHalf2x16(lo.zw),    \
                                            packHalf2x16(hi.xy), packHalf2x16(hi.zw));   \
  }
#define WSTORE(j, R) \
  if (won[j]) { WSTORE1(j, 0, R) WSTORE1(j, 1, R) WSTORE1(j, 2, R) WSTORE1(j, 3, R) }
#define XSTORE(i, R)                                                                     \
  if (xon[i]) {                                                                          \
    vec4 a = XBF == 1u ? bf16_quad(xh##R[i].xy) : xa##R[i];                              \
    vec4 b = XBF == 1u ? bf16_quad(xh##R[i].zw) : xb##R[i];                              \
    if (NORM == 1u && XBF == 1u) {                                                       \
      a *= xinv[i];                                                                      \
      b *= xinv[i];                                                                      \
    } else if (NORM == 1u) {                                                             \
      a *= xinv[i] * ga##R[i];                                                           \
      b *= xinv[i] * gb##R[i];                                                           \
    }                                                                                    \
    Xs[xt[i] * SK + xq[i]] = H16 ? uvec4(packHalf2x16(vec2(a.x, b.x)), packHalf2x16(vec2(a.y, b.y)), \
                                         packHalf2x16(vec2(a.z, b.z)), packHalf2x16(vec2(a.w, b.w))) \
                                 : uvec4(packHalf2x16(a.xy), packHalf2x16(a.zw), packHalf2x16(b.xy), \
                                         packHalf2x16(b.zw));                            \
  }
#define STORE(R)                                                                         \
  {                                                                                      \
    WSTORE(0, R) WSTORE(1, R) WSTORE(2, R) WSTORE(3, R)                                  \
    XSTORE(0, R) XSTORE(1, R) XSTORE(2, R) XSTORE(3, R)                                  \
  }


  // The multiplies of the step in the shared tiles.
#define LOAD_A(i) if (FM > i) coopMatLoadNV(a##i, Ws, (wm * TM + 16u * i) * SK + kk, SK, false);
#define LOAD_B(j) if (FN > j) coopMatLoadNV(b##j, Xs, (wn * TN + 16u * j) * SK + kk, SK, true);
#define MMA(i, j) if (FM > i && FN > j) c##i##j = coopMatMulAddNV(a##i, b##j, c##i##j);
#define MULTIPLY()                                                                        \
  [[unroll]] for (uint kk = 0u; kk < KU * 4u; kk += 2u) {                                 \
    HFRAG a0, a1, a2, a3, b0, b1, b2, b3;                                                 \
    REP4(LOAD_A)                                                                          \
    REP4(LOAD_B)                                                                          \
    REP4X4(MMA)                                                                           \
  }
  // One step from register set R, whose next loads (step kn) are issued once the tiles hold it.
#define STEP(kn, R)                                                                       \
  {                                                                                       \
    STORE(R)                                                                              \
    barrier();                                                                            \
    if ((kn) < k_end) LOAD(kn, R)                                                         \
    MULTIPLY()                                                                            \
    barrier(); /* the tiles are rewritten by the next step */                             \
  }

  // The first loads (DEPTH steps), then with NORM the 1 / rms of each token of the tile from its
  // SSQ row while they are in flight: 4 tiles per load, all issued together (a loop of dependent
  // loads cost ~9 us per dispatch), summed lanes first in a fixed order.
  if (k_begin < k_end) LOAD(k_begin, 0)
  if (DEPTH == 2u && k_begin + 1u < k_end) LOAD(k_begin + 1u, 1)
  float xinv[4];
  if (NORM == 1u) {
    tile_inv_rms(tid, t0);
    barrier();
    [[unroll]] for (uint i = 0u; i < 4u; ++i) xinv[i] = inv_rms[min(xt[i], BN - 1u)];
  }
  if (DEPTH == 1u) {
    for (uint k = k_begin; k < k_end; ++k) STEP(k + 1u, 0)
  } else {  // sets 0 / 1 hold even / odd steps (counted from k_begin), loaded two steps ahead
    for (uint k = k_begin; k < k_end; k += 2u) {
      STEP(k + 2u, 0)
      if (k + 1u < k_end) STEP(k + 3u, 1)
    }
  }
#endif

#ifndef N8  // (the host gives 16 x 8 fragments a split)
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
    // SILU: gate fragment i and up fragment k = i + FM / 2 hold the same (row, token) element by
    // element; y gets silu(gate) * up (as silu_mul.comp computes it) at the gate rows.
#define PUTS(i, k, j)                                                                        \
    if (FM > k && FN > j) {                                                                  \
      for (int q = 0; q < c##i##j.length(); ++q)                                             \
        c##i##j[q] = c##i##j[q] / (1.0 + exp(-c##i##j[q])) * c##k##j[q];                     \
      coopMatStoreNV(c##i##j, Cs, sg * 256u, 16u, true);                                     \
      subgroupMemoryBarrierShared();                                                         \
      subgroupBarrier();                                                                     \
      for (uint e = YBF == 1u ? 2u * lane : lane; e < 256u; e += YBF == 1u ? 64u : 32u) {    \
        const uint gr = g0 + wm * (TM / 2u) + 16u * i + e % 16u, t = t0 + wn * TN + 16u * j + e / 16u; \
        if (gr < half_rows && t < pc.n) {                                                    \
          if (YBF == 1u) /* rows gr, gr + 1 (even gr; host: half_rows, ldy multiples of 4) */ \
            YH[(t * pc.ldy + gr) / 2u] = bf16_pair(Cs[sg * 256u + e], Cs[sg * 256u + e + 1u]); \
          else                                                                               \
            Y[t * pc.ldy + gr] = Cs[sg * 256u + e];                                          \
        }                                                                                    \
      }                                                                                      \
      subgroupBarrier();                                                                     \
    }
#define PUTS_J(j) if (FM == 4u) { PUTS(0, 2, j) PUTS(1, 3, j) } else { PUTS(0, 1, j) }
    if (SILU == 1u) {
      REP4(PUTS_J)
    } else {
      REP4X4(PUT)
    }
    return;
  }
#endif

  // Split K: this workgroup's partial tile [BN tokens][BM rows] in its slot, then the arrival count.
  const uint tile = tb * ((pc.rows + BM - 1u) / BM) + rb;
  const uint slot = (tile * SPLIT + split) * (BM * BN);
#define PSTORE(i, j) \
  if (FM > i && FN > j) coopMatStoreNV(c##i##j, P, slot + (wn * TN + NF * j) * BM + wm * TM + 16u * i, BM, true);
  REP4X4(PSTORE)
  memoryBarrierBuffer();  // this invocation's partials are visible device-wide before it is counted
  barrier();
  if (tid == 0u) last_arrival = atomicAdd(Cnt[tile], 1u) == SPLIT - 1u ? 1u : 0u;
  barrier();
  if (last_arrival == 0u) return;  // uniform
  memoryBarrierBuffer();
  // 4 consecutive rows of one token per invocation and pass (BM is a multiple of 16), the SPLIT
  // loads of each issued together: the last workgroup of every tile runs this after the others
  // have finished, so its latency is the dispatch's tail.
  const uint base4 = tile * SPLIT * (BM * BN / 4u);
  for (uint e4 = tid; e4 < BM * BN / 4u; e4 += WG) {
    const uint m = (4u * e4) % BM, t = t0 + (4u * e4) / BM, r = row0 + m;
    vec4 v = vec4(0.0);
    [[unroll]] for (uint s = 0u; s < SPLIT; ++s) v += P4[base4 + s * (BM * BN / 4u) + e4];
    float sq = 0.0;
    if (SILU == 1u) {
      // Gate rows m .. m + 3 and their up rows (BM / 2 further: the lane BM / 8 further within
      // the token's BM / 4 lanes) give y[t, g0 + m ..] = silu(gate) * up, ldy >= rows / 2.
      const vec4 up = subgroupShuffleXor(v, BM / 8u);
      if (YBF == 1u) {  // the host keeps half_rows and ldy multiples of 4
        if (m < BM / 2u && t < pc.n && g0 + m < half_rows) {
          const vec4 o = v / (1.0 + exp(-v)) * up;
          const uint yi = (t * pc.ldy + g0 + m) / 2u;
          YH[yi] = bf16_pair(o.x, o.y);
          YH[yi + 1u] = bf16_pair(o.z, o.w);
        }
        continue;
      }
      if (m < BM / 2u && t < pc.n)
        [[unroll]] for (uint q = 0u; q < 4u; ++q)
          if (g0 + m + q < half_rows) Y[t * pc.ldy + g0 + m + q] = v[q] / (1.0 + exp(-v[q])) * up[q];
      continue;
    }
    if (t < pc.n) {
      const uint yi = t * pc.ldy + r;
      vec4 o4 = vec4(0.0);
      [[unroll]] for (uint q = 0u; q < 4u; ++q)
        if (r + q < pc.rows) {
          const float o = ACC == 1u ? Y[yi + q] + v[q] : v[q];
          Y[yi + q] = o;
          o4[q] = o;
          sq += o * o;
        }
      if (XG_OUT == 1u && r < pc.rows) {  // the host keeps rows and ldy multiples of 4
        const vec4 g = o4 * G4[r / 4u];
        XG[yi / 2u] = bf16_pair(g.x, g.y);
        XG[yi / 2u + 1u] = bf16_pair(g.z, g.w);
      }
    }
    if (SSQ_OUT == 1u) {
      // Sums over 64 rows whatever BM (a multiple of 64): the 16 invocations of token t's rows
      // r .. r + 63 (consecutive lanes of one subgroup), a fixed butterfly read from the first.
      [[unroll]] for (uint o = 8u; o >= 1u; o /= 2u) sq += subgroupShuffleXor(sq, o);
      const uint stride = (pc.ssq_tiles + 3u) & ~3u, st = r / 64u;
      if ((tid % 16u) == 0u && t < pc.n && st < pc.ssq_tiles) {
        SSQ[t * stride + st] = sq;
        if (st + 1u == pc.ssq_tiles)  // the last 64 rows zero the row's padding
          for (uint p = pc.ssq_tiles; p < stride; ++p) SSQ[t * stride + p] = 0.0;
      }
    }
  }
  if (tid == 0u) Cnt[tile] = 0u;
}
