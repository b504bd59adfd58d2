#version 450
// q4 matrix-vector product for decode and small token blocks, x staged in shared memory:
//   y[t, r] (+)= sum_c x'[t, c] * W[r, c]      (x' = x, rmsnorm(x) * G or silu(gate) * up: XMODE)
// W is MLX affine q4 (quant/format.h) with rows of a multiple of 4 words: a 16-byte "unit" holds
// 32 consecutive columns of one row, and a scale group (32, 64 or 128 columns) is 1, 2 or 4 units.
//
// Mapping. A workgroup of WG invocations is NRG = WG / LPR row groups of LPR lanes; row group g
// owns rows row0 + g*R .. + R - 1 (BR = NRG * R rows per workgroup) and computes them for NT
// consecutive tokens. Lane l of a row group reads units l, l + LPR, l + 2 LPR, ... of each of its R
// rows: one 16-byte load per row, so a subgroup's load instruction covers 16 * LPR consecutive
// bytes of one row (fully coalesced), and each weight is read once per token block. The next
// unit's R loads (and their scales) are issued before the current unit is decoded.
//
// x. The NT token rows of x' are staged once per workgroup into shared memory (in tiles of TU units
// when they do not fit), with the fused input op applied there: x * G (and sum x^2 for the norm's
// scale, applied at the end: sum_c W x G inv = inv * sum_c W (x G)), or silu(gate) * up. Each lane
// then reads its unit's 32 values as 8 vec4 per token. The vec4 index is XOR-swizzled within each
// unit (v ^ (unit & 7)) so that the 8 lanes of a quarter-subgroup, which read 8 consecutive units,
// hit 8 different 4-bank groups: conflict-free 16-byte shared loads without padding.
//
// Arithmetic. A q4 value q shifted into mantissa bits 19..22 of 16.0f gives f = 16 + q with a
// shift and one LOP3 (no int->float conversion, which runs at a quarter of the FMA rate), so per
// unit and scale group (scale s, bias b):  sum_j (s q_j + b) x_j = s * sum_j f_j x_j + (b - 16 s) sum_j x_j.
// The two sums are formed per unit and token (sum f x per row), then folded into the accumulator.
//
// Batch invariance: every token's result is the same sequence of operations whatever NT, R, TU or
// its place in the batch: lane l always accumulates units l, l + LPR, ... of a row in increasing
// order, the staged x' values do not depend on the batch, and the reductions are per value. Only
// WG and LPR (fixed per weight and device by the host) shape the arithmetic. With XMODE 1, the
// staging invocation of each x vec4 is its index mod WG in every tile (the host keeps TU * 8 a
// multiple of WG when it tiles), so sum x^2 is also formed in one order.
//
// IDOT (the _dot variants, fast precision on devices with VK_KHR_shader_integer_dot_product and
// the subgroup reductions, host-checked): x' is quantized per unit (32 columns) to int8 with
// d = max|x'| / 127 as it is staged, and a unit's row sum is s * d * sum_j dot4(xq, q) + b * d *
// sum xq. (Both terms with the quantized x, so the error is sum W dx; with the exact sum of x in the
// bias term it would be sum (W - b) dx, several times larger when |b| is large.) Per 8 weights one
// shift, two ANDs and two 4-way int8 dot products instead of 16 integer ops and 8 FMAs, and a
// quarter of the staged bytes: a shorter chain per workgroup, which is what bounds a decode
// matvec (H200, one token: 2.33 -> 1.94 ms per Phi-3 step, bench/RESULTS.md phase 7). The x error
// is the CPU fast path's (int8 per block, kernels/README.md "Tolerances"). Bytes of a staged word J
// of a unit are columns 8J, 8J+2, 8J+4, 8J+6 (xe) and 8J+1, .., 8J+7 (xo), the order in which
// (w & 0x0F0F0F0F) and ((w >> 4) & 0x0F0F0F0F) hold the nibbles of weight word J. Batch
// invariance as above: only WG and LPR shape a token's arithmetic (the sum of x^2 is formed by
// staging invocation (4 i + J) mod WG).
//
// Reductions: the _sg variant (USE_SUBGROUP, LPR dividing the subgroup size, host-checked) sums a
// row group with subgroupAdd or a shuffle butterfly; the plain variant writes every partial to shared memory and one
// invocation per output sums the LPR lanes in order. Either way every lane of a row group then
// holds its R x NT totals, and lane (r * NT + t) % LPR writes output (r, t).
//
// Fused outputs (MODE; R = 4, rows a multiple of 4: the host checks). A row group's 4 rows are then
// a "quad" chosen so that the output op has both its operands in one invocation:
//   MODE 1 (SiLU pairs, the gate_up projection [gate; up] of 2F rows): quad q is rows 2q, 2q+1,
//     F+2q, F+2q+1, and y[t, 2q + i] = silu(gate) * up, i < 2 (y holds F values per token);
//   MODE 2 (ROPE: the qkv projection, heads q | k | v of HD rows; needs the _rope variant's extra
//     bindings): within q and k heads quad k < half/2 is dims 2k, 2k+1, 2k+half, 2k+1+half (rotate-
//     half RoPE pairs, half = rot_dim / 2), the other quads 4 consecutive dims; y gets the rotated
//     q and k values (as rope_store.comp computes them) and k, v also go to the KV-cache slot of
//     the token (f16 rounded to nearest even, or f32).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifdef IDOT
#extension GL_EXT_spirv_intrinsics : require
#endif
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint R = 4;      // rows per invocation: 1, 2 or 4
layout(constant_id = 2) const uint NT = 1;     // tokens per workgroup: 1..8, R * NT <= 32
layout(constant_id = 3) const uint LPR = 32;   // lanes per row group
layout(constant_id = 4) const uint STYPE = 1;
layout(constant_id = 5) const uint GROUP = 64;
layout(constant_id = 6) const uint TU = 96;    // units per staged tile
layout(constant_id = 7) const uint XMODE = 0;  // 0: x, 1: rmsnorm(x) * G, 2: silu(x[c]) * x[c + xoff]
layout(constant_id = 8) const uint ACC = 0;    // 1: y += result
layout(constant_id = 9) const uint MODE = 0;   // 0: one output per row, 1: SiLU pairs, 2: RoPE + KV store
layout(constant_id = 10) const uint KV_F16 = 1;  // MODE 2: cache element type
const uint NRG = WG / LPR;
const uint TV = TU * 8u;  // vec4 per token in a tile

#include "quant.glsl"

layout(binding = 0) readonly buffer Wb4 { uvec4 W4[]; };
layout(binding = 1) readonly buffer Sb { uint S[]; };
layout(binding = 2) readonly buffer Bb { uint B[]; };
layout(binding = 3) readonly buffer Xb4 { vec4 X4[]; };
layout(binding = 4) buffer Yb { float Y[]; };
layout(binding = 5) readonly buffer Gb4 { vec4 G4[]; };
#ifdef ROPE
layout(binding = 6) readonly buffer Cb { float Cs[]; };   // cos [n, half]
layout(binding = 7) readonly buffer Snb { float Sn[]; };  // sin [n, half]
layout(binding = 8) readonly buffer Lb { uint Slots[]; }; // cache element offset of each token
layout(binding = 9) writeonly buffer Kb { uint Kc[]; };
layout(binding = 10) writeonly buffer Vb { uint Vc[]; };
#endif

layout(push_constant) uniform Push {
  uint rows;            // output features
  uint cols;            // input features
  uint n;               // tokens
  uint ldx;             // floats between x rows
  uint ldy;             // floats between y rows
  uint row_words;       // 32-bit words per weight row (a multiple of 4)
  uint groups_per_row;  // cols / GROUP
  uint ntb;             // token blocks: ceil(n / NT)
  uint xoff;            // XMODE 2: floats from a gate value to its up value
  float eps;            // XMODE 1
  uint ffn;             // MODE 1: F
  uint n_heads, n_kv_heads, head_dim, half_rot, head_stride;  // MODE 2 (head_stride: cache elements per kv head)
} pc;

#ifdef IDOT
shared uvec4 xlo[NT * TU], xhi[NT * TU];  // token t's unit i at t TU + i: int8 words xe0 xo0 xe1 xo1 | xe2 xo2 xe3 xo3
shared vec2 xds[NT * TU];                 // its scale d and d * sum xq
// OpSUDot (SPV_KHR_integer_dot_product), packed 4 x 8-bit: signed a . unsigned b.
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4452)
int sudot4(uint a, uint b, spirv_literal int fmt);
#else
shared vec4 xs[NT * TV];
#endif
#ifdef USE_SUBGROUP
shared float ssp[NRG * NT];  // XMODE 1: per-subgroup sums of x^2
#else
shared float red[(R * NT + NT) * WG];  // every invocation's partials
shared float tots[NRG * 32u + 8u];     // the totals (r * 8 + t per row group), then inv per token
#endif

uint swz(uint v) { return v ^ ((v >> 3) & 7u); }

float silu(float g) { return g / (1.0 + exp(-g)); }

// The fused input op on x vec4 `x` of columns c .. c + 3 of the x row at float `xrow` (XMODE 1: the
// norm weight, whose sum of squares the caller takes from x first; 2: silu(gate) * up).
vec4 x_in(vec4 x, uint xrow, uint c) {
  if (XMODE == 1u) return x * G4[c >> 2];
  if (XMODE == 2u) return vec4(silu(x.x), silu(x.y), silu(x.z), silu(x.w)) * X4[(xrow + c + pc.xoff) >> 2];
  return x;
}

// Scale and folded bias of group gi: A = s, Bf = b - 16 s.
// (IDOT: the bias itself.)
void scale_of(uint gi, out float A, out float Bf) {
  const float s = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);
  A = s;
#ifdef IDOT
  Bf = plane_value(B[plane_word(gi, STYPE)], gi, STYPE);
#else
  Bf = plane_value(B[plane_word(gi, STYPE)], gi, STYPE) - 16.0 * s;
#endif
}

#ifdef IDOT
// Four int8 values as the bytes of one word, the first lowest.
uint pack_i8(int a, int b, int c, int d) {
  return (uint(a) & 0xffu) | ((uint(b) & 0xffu) << 8) | ((uint(c) & 0xffu) << 16) | (uint(d) << 24);
}
#endif

// 16 + q for the 8 values of a word (value j in lo[j] / hi[j - 4]): q at mantissa bits 19..22.
void q4_16(uint w, out vec4 lo, out vec4 hi) {
  const uint M = 0x00780000u, E = 0x41800000u;  // E: 16.0f
  lo = uintBitsToFloat(uvec4(((w << 19) & M) | E, ((w << 15) & M) | E, ((w << 11) & M) | E, ((w << 7) & M) | E));
  hi = uintBitsToFloat(uvec4(((w << 3) & M) | E, ((w >> 1) & M) | E, ((w >> 5) & M) | E, ((w >> 9) & M) | E));
}

#include "kv_store.glsl"  // half_rne

// Row r (< 4) of quad q in MODE 1 / 2 (see the header).
uint quad_row(uint q, uint r) {
  if (MODE == 1u) return (r < 2u ? 0u : pc.ffn) + 2u * q + (r & 1u);
  const uint qh = pc.head_dim / 4u, hh = q / qh, k = q % qh, base = hh * pc.head_dim;
  const uint half2 = pc.half_rot / 2u;
  if (hh < pc.n_heads + pc.n_kv_heads && k < half2) return base + 2u * k + (r & 1u) + (r < 2u ? 0u : pc.half_rot);
  const uint k0 = hh < pc.n_heads + pc.n_kv_heads ? 2u * pc.half_rot + 4u * (k - half2) : 4u * k;
  return base + k0 + r;
}

#ifdef USE_SUBGROUP
// Sum over the LPR lanes of a row group, in every one of them: the subgroup's sum when a row group
// is the whole subgroup, else a butterfly over lanes that differ in the low log2(LPR) bits.
float lanes_sum(float v) {
  if (LPR == gl_SubgroupSize) return subgroupAdd(v);
  for (uint o = LPR / 2u; o > 0u; o >>= 1) v += subgroupShuffleXor(v, o);
  return v;
}
#endif

// Writes output (row, token tok) = v, row r of its row group; vp is the total of row r ^ 2 (the
// MODE 1/2 partner), v1 and vp1 those of row r + 1 (MODE 2, f16 cache words of dims d, d+1).
void put(uint row, uint tok, uint r, float v, float vp, float v1, float vp1) {
  const uint yi = tok * pc.ldy + row;
  if (MODE == 0u) {
    Y[yi] = ACC == 1u ? Y[yi] + v : v;
  } else if (MODE == 1u) {
    if (r < 2u) Y[yi] = v / (1.0 + exp(-v)) * vp;  // silu(gate) * up, as silu_mul.comp
  } else {
#ifdef ROPE
    const uint hh = row / pc.head_dim, d = row % pc.head_dim;
    const bool is_q = hh < pc.n_heads, is_v = hh >= pc.n_heads + pc.n_kv_heads;
    float o = v, o1 = v1;
    if (!is_v && d < 2u * pc.half_rot) {  // rotate-half pairs (a, b) = dims (j, j + half)
      const uint j = d < pc.half_rot ? d : d - pc.half_rot;
      const uint ci = tok * pc.half_rot + j;
      const float c = Cs[ci], sn = Sn[ci], c1 = Cs[ci + 1u], sn1 = Sn[ci + 1u];
      o = r < 2u ? v * c - vp * sn : v * c + vp * sn;  // a c - b s  |  b c + a s
      o1 = r < 2u ? v1 * c1 - vp1 * sn1 : v1 * c1 + vp1 * sn1;
    }
    Y[yi] = o;
    if (is_q) return;
    const uint kvh = is_v ? hh - pc.n_heads - pc.n_kv_heads : hh - pc.n_heads;
    const uint e = Slots[tok] + kvh * pc.head_stride + d;
    if (KV_F16 == 1u) {
      if ((r & 1u) == 0u) {  // the even dim's lane writes the word of dims d, d + 1
        const uint w = half_rne(o) | (half_rne(o1) << 16);
        if (is_v) Vc[e >> 1] = w;
        else Kc[e >> 1] = w;
      }
    } else if (is_v) {
      Vc[e] = floatBitsToUint(o);
    } else {
      Kc[e] = floatBitsToUint(o);
    }
#endif
  }
}

// Unrolling by macro (literal indices only, no [[unroll]] loops over register arrays): an array
// indexed in a loop the driver does not unroll lives in local memory (seen on NVIDIA: acc[] in
// such a loop made 2-token blocks 3-8x slower than one token).
#define REP4(M) M(0) M(1) M(2) M(3)
#define REP8(M) REP4(M) M(4) M(5) M(6) M(7)

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint lane = tid % LPR, rg = tid / LPR;
  const uint idx = gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  const uint tb = idx % pc.ntb, blk = idx / pc.ntb;
  if (blk * NRG * R >= pc.rows) return;  // uniform: past the last row block of a folded grid
  const uint t0 = tb * NT;
  const uint rbase = blk * NRG * R + rg * R;
  const uint units = pc.row_words >> 2;

  // This row group's rows (rows past the end repeat the last row: computed, not written).
  const uint quad = blk * NRG + rg;
  uint rowi[4], wrow[4], grow[4];
#define ROWADDR(r)                                                                                   \
  rowi[r] = MODE == 0u ? rbase + r : quad_row(min(quad, pc.rows / 4u - 1u), r);                      \
  wrow[r] = min(rowi[r], pc.rows - 1u) * units;                                                      \
  grow[r] = min(rowi[r], pc.rows - 1u) * pc.groups_per_row;
  REP4(ROWADDR)
  uint xr[8];  // first float of each token's x row; tokens past n read row t0 (not written)
#define XROW(t) xr[t] = (t0 + t < pc.n ? t0 + t : t0) * pc.ldx;
  REP8(XROW)

  float acc[32];  // acc[r * 8 + t]
  float ss[8];    // sum x^2 per token (XMODE 1), over this invocation's staged vec4s
#define ZERO_T(t) ss[t] = 0.0;
  REP8(ZERO_T)
#define ZERO_R(r, t) acc[r * 8 + t] = 0.0;
#define ZERO_A(t) ZERO_R(0, t) ZERO_R(1, t) ZERO_R(2, t) ZERO_R(3, t)
  REP8(ZERO_A)

  for (uint tu0 = 0u; tu0 < units; tu0 += TU) {
    const uint tun = min(TU, units - tu0);
    // This lane's first unit in the tile; its weights are requested before x is staged.
    uint u = tu0 + ((lane + LPR - tu0 % LPR) % LPR);
    uvec4 wn[4];
    float an[4], bn[4];
#define LOADW(r, U)                                                   \
    if (R > r) {                                                      \
      const uint uu = min(U, units - 1u);                             \
      wn[r] = W4[wrow[r] + uu];                                       \
      scale_of(grow[r] + (uu * 32u) / GROUP, an[r], bn[r]);           \
    }
#define LOAD_ALL(U) LOADW(0, U) LOADW(1, U) LOADW(2, U) LOADW(3, U)
    LOAD_ALL(u)

#ifdef IDOT
    // Stage x' for the tile as int8: word J (8 columns) of unit i by invocation (4 i + J) mod WG, so a
    // unit's 4 words are 4 neighbouring lanes of a subgroup (max and sum by two shuffles). The
    // loop runs alike in every invocation (shuffles in uniform control flow).
#define STAGE_I8(t)                                                                               \
    if (NT > t) {                                                                                   \
      for (uint v0 = 0u; v0 < tun * 4u; v0 += WG) {                                                 \
        const uint v = v0 + tid, c = (tu0 * 4u + v) * 8u;                                           \
        vec4 x0 = vec4(0.0), x1 = vec4(0.0);                                                        \
        if (v < tun * 4u && c < pc.cols) {                                                          \
          x0 = X4[(xr[t] + c) >> 2];                                                                \
          x1 = X4[(xr[t] + c + 4u) >> 2];                                                           \
          if (XMODE == 1u) ss[t] += dot(x0, x0) + dot(x1, x1);                                      \
          x0 = x_in(x0, xr[t], c);                                                                  \
          x1 = x_in(x1, xr[t], c + 4u);                                                             \
        }                                                                                           \
        float m = max(max(max(abs(x0.x), abs(x0.y)), max(abs(x0.z), abs(x0.w))),                    \
                      max(max(abs(x1.x), abs(x1.y)), max(abs(x1.z), abs(x1.w))));                   \
        m = max(m, subgroupShuffleXor(m, 1u));                                                      \
        m = max(m, subgroupShuffleXor(m, 2u));                                                      \
        const float id = m > 0.0 ? 127.0 / m : 0.0;                                                 \
        const ivec4 q0 = clamp(ivec4(round(x0 * id)), ivec4(-127), ivec4(127));                     \
        const ivec4 q1 = clamp(ivec4(round(x1 * id)), ivec4(-127), ivec4(127));                     \
        int sq = ((q0.x + q0.y) + (q0.z + q0.w)) + ((q1.x + q1.y) + (q1.z + q1.w));                 \
        sq += subgroupShuffleXor(sq, 1u);                                                           \
        sq += subgroupShuffleXor(sq, 2u);                                                           \
        if (v < tun * 4u) {                                                                         \
          const uint xe = pack_i8(q0.x, q0.z, q1.x, q1.z), xo = pack_i8(q0.y, q0.w, q1.y, q1.w);    \
          const uint i = t * TU + (v >> 2), J = v & 3u;                                             \
          if (J < 2u) {                                                                             \
            xlo[i][2u * J] = xe;                                                                    \
            xlo[i][2u * J + 1u] = xo;                                                               \
          } else {                                                                                  \
            xhi[i][2u * J - 4u] = xe;                                                               \
            xhi[i][2u * J - 3u] = xo;                                                               \
          }                                                                                         \
          if (J == 0u) xds[i] = vec2(m / 127.0, m / 127.0 * float(sq));                             \
        }                                                                                           \
      }                                                                                             \
    }
    REP8(STAGE_I8)
#else
    // Stage x' for the tile: token t's vec4 v (of the tile) by invocation v mod WG.
#define STAGE(t)                                                                  \
    if (NT > t) {                                                                 \
      for (uint v = tid; v < tun * 8u; v += WG) {                                 \
        const uint c = (tu0 * 8u + v) * 4u;                                       \
        vec4 x = vec4(0.0);                                                       \
        if (c < pc.cols) {                                                        \
          x = X4[(xr[t] + c) >> 2];                                               \
          if (XMODE == 1u) ss[t] += dot(x, x);                                    \
          x = x_in(x, xr[t], c);                                                  \
        }                                                                         \
        xs[t * TV + swz(v)] = x;                                                  \
      }                                                                           \
    }
    REP8(STAGE)
#endif
    barrier();

    for (; u < tu0 + tun; u += LPR) {
      uvec4 w[4];
      float a[4], b[4];
#define TAKE(r) if (R > r) { w[r] = wn[r]; a[r] = an[r]; b[r] = bn[r]; }
      REP4(TAKE)
      LOAD_ALL(u + LPR)  // the next unit's loads in flight during this one (clamped past the end)
#ifdef IDOT
      {
        // The unit's nibbles as bytes, per row: words 2J (even columns of word J) and 2J + 1 (odd).
        const uint M = 0x0F0F0F0Fu;
        uint wb[32];
#define NIB(r)                                                                                     \
        if (R > r) {                                                                               \
          wb[r * 8 + 0] = w[r].x & M; wb[r * 8 + 1] = (w[r].x >> 4) & M;                           \
          wb[r * 8 + 2] = w[r].y & M; wb[r * 8 + 3] = (w[r].y >> 4) & M;                           \
          wb[r * 8 + 4] = w[r].z & M; wb[r * 8 + 5] = (w[r].z >> 4) & M;                           \
          wb[r * 8 + 6] = w[r].w & M; wb[r * 8 + 7] = (w[r].w >> 4) & M;                           \
        }
        REP4(NIB)
#define IDOT_R(r, t)                                                                               \
        if (R > r) {                                                                               \
          int si = sudot4(q0.x, wb[r * 8 + 0], 0) + sudot4(q0.y, wb[r * 8 + 1], 0);                 \
          si += sudot4(q0.z, wb[r * 8 + 2], 0) + sudot4(q0.w, wb[r * 8 + 3], 0);                    \
          si += sudot4(q1.x, wb[r * 8 + 4], 0) + sudot4(q1.y, wb[r * 8 + 5], 0);                    \
          si += sudot4(q1.z, wb[r * 8 + 6], 0) + sudot4(q1.w, wb[r * 8 + 7], 0);                    \
          acc[r * 8 + t] += a[r] * (ds.x * float(si)) + b[r] * ds.y;                               \
        }
#define IDOT_T(t)                                                                                  \
        if (NT > t) {                                                                              \
          const uint i = t * TU + u - tu0;                                                         \
          const uvec4 q0 = xlo[i], q1 = xhi[i];                                                    \
          const vec2 ds = xds[i];                                                                  \
          IDOT_R(0, t) IDOT_R(1, t) IDOT_R(2, t) IDOT_R(3, t)                                      \
        }
        REP8(IDOT_T)
      }
#else
      // Swizzled indices of the unit's 8 vec4 (token 0; token t adds t * TV): (u - tu0) * 8 + (k ^ sw).
      const uint vb = (u - tu0) * 8u, sw = (u - tu0) & 7u;
      uint xi[8];
#define XI(k) xi[k] = vb + (k ^ sw);
      REP8(XI)
      float sf[32], sx[8];
#define SF0_R(r, t) if (R > r) sf[r * 8 + t] = 0.0;
#define SF0(t) if (NT > t) { sx[t] = 0.0; SF0_R(0, t) SF0_R(1, t) SF0_R(2, t) SF0_R(3, t) }
      REP8(SF0)
      // Word J of the unit: columns 8J..8J+7, x vec4s 2J and 2J+1.
#define DEC(r, C) if (R > r) q4_16(w[r].C, lo[r], hi[r]);
#define FMA_R(r, t)                                                                          \
      if (R > r) {                                                                           \
        float s_ = sf[r * 8 + t];                                                            \
        s_ = fma(lo[r].x, xa.x, s_); s_ = fma(lo[r].y, xa.y, s_);                            \
        s_ = fma(lo[r].z, xa.z, s_); s_ = fma(lo[r].w, xa.w, s_);                            \
        s_ = fma(hi[r].x, xb.x, s_); s_ = fma(hi[r].y, xb.y, s_);                            \
        s_ = fma(hi[r].z, xb.z, s_); s_ = fma(hi[r].w, xb.w, s_);                            \
        sf[r * 8 + t] = s_;                                                                  \
      }
#define TOK(t, J)                                                                            \
      if (NT > t) {                                                                          \
        const vec4 xa = xs[t * TV + xi[2u * J]];                                             \
        const vec4 xb = xs[t * TV + xi[2u * J + 1u]];                                        \
        sx[t] += ((xa.x + xa.y) + (xa.z + xa.w)) + ((xb.x + xb.y) + (xb.z + xb.w));          \
        FMA_R(0, t) FMA_R(1, t) FMA_R(2, t) FMA_R(3, t) \
      }
#define WORD(C, J)                                                                           \
      {                                                                                      \
        vec4 lo[4], hi[4];                                                                   \
        DEC(0, C) DEC(1, C) DEC(2, C) DEC(3, C)      \
        TOK(0, J) TOK(1, J) TOK(2, J) TOK(3, J) TOK(4, J) TOK(5, J) TOK(6, J) TOK(7, J)      \
      }
      WORD(x, 0u) WORD(y, 1u) WORD(z, 2u) WORD(w, 3u)
#define FOLD_R(r, t) if (R > r) acc[r * 8 + t] += a[r] * sf[r * 8 + t] + b[r] * sx[t];
#define FOLD(t) if (NT > t) { FOLD_R(0, t) FOLD_R(1, t) FOLD_R(2, t) FOLD_R(3, t) }
      REP8(FOLD)
#endif
    }
    barrier();  // xs is rewritten by the next tile
  }

  // ---- Reduce: every lane of a row group gets acc[r * 8 + t] (totals) and inv[t] -----------------
  float inv[8];
#define INV1(t) inv[t] = 1.0;
  REP8(INV1)
#ifdef USE_SUBGROUP
#define SUM_R(r, t) if (R > r && NT > t) acc[r * 8 + t] = lanes_sum(acc[r * 8 + t]);
#define SUM_A(t) SUM_R(0, t) SUM_R(1, t) SUM_R(2, t) SUM_R(3, t)
  REP8(SUM_A)
  if (XMODE == 1u) {
#define SSG(t) if (NT > t) { const float v = subgroupAdd(ss[t]); if (subgroupElect()) ssp[rg * NT + t] = v; }
    REP8(SSG)
    barrier();
#define SSUM(t)                                                                      \
    if (NT > t) {                                                                    \
      float s = 0.0;                                                                 \
      for (uint k = 0u; k < NRG; ++k) s += ssp[k * NT + t];                          \
      inv[t] = 1.0 / sqrt(s / float(pc.cols) + pc.eps);                              \
    }
    REP8(SSUM)
  }
#else
  const uint NV = R * NT;
#define RED_R(r, t) if (R > r && NT > t) red[(r * NT + t) * WG + tid] = acc[r * 8 + t];
#define RED(t) if (NT > t) { RED_R(0, t) RED_R(1, t) RED_R(2, t) RED_R(3, t) red[(NV + t) * WG + tid] = ss[t]; }
  REP8(RED)
  barrier();
  // One invocation per total sums the LPR lanes in order; invocations NRG * NV + t the x^2 sums.
  for (uint k = tid; k < NRG * NV + NT; k += WG) {
    if (k < NRG * NV) {
      const uint g = k / NV, i = k % NV;
      float v = 0.0;
      for (uint l = 0u; l < LPR; ++l) v += red[i * WG + g * LPR + l];
      tots[g * 32u + (i / NT) * 8u + i % NT] = v;
    } else if (XMODE == 1u) {
      const uint t = k - NRG * NV;
      float sq = 0.0;
      for (uint m = 0u; m < WG; ++m) sq += red[(NV + t) * WG + m];
      tots[NRG * 32u + t] = 1.0 / sqrt(sq / float(pc.cols) + pc.eps);
    }
  }
  barrier();
#define GET_R(r, t) if (R > r && NT > t) acc[r * 8 + t] = tots[rg * 32u + r * 8u + t];
#define GET(t) if (NT > t) { GET_R(0, t) GET_R(1, t) GET_R(2, t) GET_R(3, t) if (XMODE == 1u) inv[t] = tots[NRG * 32u + t]; }
  REP8(GET)
#endif

  // ---- Write: lane (r * NT + t) % LPR writes output (r, t) ----------------------------------------
#define PUT_R(r, t)                                                                  \
  if (R > r && NT > t && (r * NT + t) % LPR == lane) {                               \
    if (rowi[r] < pc.rows && t0 + t < pc.n && (MODE == 0u || quad < pc.rows / 4u))   \
      put(rowi[r], t0 + t, r, acc[r * 8 + t] * inv[t], acc[(r ^ 2) * 8 + t] * inv[t],  \
          acc[(r | 1) * 8 + t] * inv[t], acc[((r | 1) ^ 2) * 8 + t] * inv[t]);          \
  }
#define PUT(t) PUT_R(0, t) PUT_R(1, t) PUT_R(2, t) PUT_R(3, t)
  REP8(PUT)
}
