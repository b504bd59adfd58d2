#version 450
// Matrix-vector product for decode and small batches: y[t, r] = sum_c x'[t, c] * W[r, c], where x'
// is x itself, rmsnorm(x) or silu_mul(x) (XMODE, fused so the decoder needs no separate pass), and
// y is written or accumulated into (ACC: the residual add of o_proj and down_proj).
//
// Grid: the workgroup index (z * gridX + x, so huge outputs fit a 65535-wide x) is
// row_block * ntb + token_block: the ntb token blocks of one row block are neighbours, so when a
// batch has more than NT tokens the extra passes over a row block's weights hit L2. One workgroup
// computes ROWS consecutive rows for NT consecutive tokens. Its WG invocations split each row into
// units of UW 32-bit words (UW = 4: one 16-byte load per row and unit): invocation i takes units
// i, i+WG, ... two per loop trip, so 2*ROWS*UW weight words are in flight per invocation; a warp's
// load instruction reads 32 consecutive units. A word is decoded once and used for all NT tokens;
// x values come from L1 (every workgroup reads the whole x rows of its tokens).
//
// Batch invariance: a token's result depends only on WG and UW (fixed per weight), never on NT,
// ROWS, its place in the batch or the batch size: every token runs the same operations in the same
// order, and the workgroup reduction sums each value on its own.
//
// Quantized words are decoded without int->float conversions (I2F runs at a quarter of the FMA
// rate on NVIDIA and would make this kernel ALU-bound): a q4 value q shifted into mantissa bits
// 19..22 of 1.0f gives f = 1 + q/16 with a shift and one LOP3, so
//   sum_j q_j x_j = 16 * (sum_j f_j x_j - sum_j x_j)
// and a word's contribution is  A * sum f x + Bc * sum x  with A = 16 * scale, Bc = bias - 16 * scale
// (q8: bits 15..22, f = 1 + q/256, factor 256). The cancellation costs about 2 bits of the 24.
//
// XMODE 1 (rmsnorm with weight G): the kernel accumulates sum x^2 of each token over the same pass
// and multiplies at the end: sum_c W[r,c] x[c] G[c] inv = inv * sum_c W[r,c] (x[c] G[c]).
// XMODE 2 (SiLU-gated): x'[c] = silu(x[c]) * x[c + xoff] (gate and up halves of one row).
// Requires (host-checked): ldx % 4 == 0 for q4/q8 (and xoff % 4 == 0 with XMODE 2), ldx and cols
// even for f16/bf16, row_words % UW == 0.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint ROWS = 4;
layout(constant_id = 2) const uint NT = 1;
layout(constant_id = 3) const uint WTYPE = 0;
layout(constant_id = 4) const uint STYPE = 1;
layout(constant_id = 5) const uint GROUP = 64;
layout(constant_id = 6) const uint UW = 1;     // 32-bit words per load unit: 1 or 4
layout(constant_id = 7) const uint XMODE = 0;  // 0: x, 1: rmsnorm(x) * G, 2: silu(x[c]) * x[c + xoff]
layout(constant_id = 8) const uint ACC = 0;    // 1: y += result
const uint NACC = ROWS * NT;
const uint RED_MAX = NACC + NT;  // the dot products, then sum x^2 per token (XMODE 1)

#include "quant.glsl"
#include "reduce.glsl"

layout(binding = 0) readonly buffer Wb { uint W[]; };
layout(binding = 0) readonly buffer Wb4 { uvec4 W4[]; };
layout(binding = 1) readonly buffer Sb { uint S[]; };
layout(binding = 2) readonly buffer Bb { uint B[]; };
layout(binding = 3) readonly buffer Xb4 { vec4 X4[]; };
layout(binding = 3) readonly buffer Xb1 { float X1[]; };
layout(binding = 4) buffer Yb { float Y[]; };
layout(binding = 5) readonly buffer Gb4 { vec4 G4[]; };
layout(binding = 5) readonly buffer Gb1 { float G1[]; };

layout(push_constant) uniform Push {
  uint rows;            // output features
  uint cols;            // input features
  uint n;               // tokens
  uint ldx;             // floats between x rows
  uint ldy;             // floats between y rows
  uint row_words;       // 32-bit words per weight row
  uint groups_per_row;  // quantized: cols / GROUP
  uint ntb;             // token blocks: ceil(n / NT)
  uint xoff;            // XMODE 2: floats from a gate value to its up value
  float eps;            // XMODE 1
} pc;

// q4 word -> 1 + q/16 for its 8 values (value j in lo[j] / hi[j-4]): q at mantissa bits 19..22.
void q4_magic(uint w, out vec4 lo, out vec4 hi) {
  const uint M = 0x00780000u, ONE = 0x3F800000u;
  lo = uintBitsToFloat(uvec4(((w << 19) & M) | ONE, ((w << 15) & M) | ONE, ((w << 11) & M) | ONE,
                             ((w << 7) & M) | ONE));
  hi = uintBitsToFloat(uvec4(((w << 3) & M) | ONE, ((w >> 1) & M) | ONE, ((w >> 5) & M) | ONE,
                             ((w >> 9) & M) | ONE));
}

// q8 word -> 1 + q/256 for its 4 values: q at mantissa bits 15..22.
vec4 q8_magic(uint w) {
  const uint M = 0x007F8000u, ONE = 0x3F800000u;
  return uintBitsToFloat(uvec4(((w << 15) & M) | ONE, ((w << 7) & M) | ONE, ((w >> 1) & M) | ONE,
                               ((w >> 9) & M) | ONE));
}

float silu(float g) { return g / (1.0 + exp(-g)); }

// x' at columns c..c+3 of the token row starting at float `base`; adds sum x^2 to ss (XMODE 1).
vec4 xin4(uint base, uint c, inout float ss) {
  const vec4 x = X4[(base + c) >> 2];
  if (XMODE == 1u) {
    ss += dot(x, x);
    return x * G4[c >> 2];
  }
  if (XMODE == 2u) {
    const vec4 u = X4[(base + c + pc.xoff) >> 2];
    return vec4(silu(x.x), silu(x.y), silu(x.z), silu(x.w)) * u;
  }
  return x;
}

float xin1(uint base, uint c, inout float ss) {
  const float x = X1[base + c];
  if (XMODE == 1u) {
    ss += x * x;
    return x * G1[c];
  }
  if (XMODE == 2u) return silu(x) * X1[base + c + pc.xoff];
  return x;
}

// ---- q4 with 16-byte units, ROWS <= 4, NT <= 8: the decode/batched fast path -------------------
// The same arithmetic as the generic loop in main() (same order per token), written with one
// scalar accumulator per (row, token) instead of arrays: arrays indexed in loops over
// specialization constants are not always unrolled by drivers, and then live in local memory.
#define ACC4(t, T) float acc0_##t = 0.0, acc1_##t = 0.0, acc2_##t = 0.0, acc3_##t = 0.0, ss_##t = 0.0; \
  const uint xr_##t = (t0 + T < pc.n ? t0 + T : t0) * pc.ldx;
#define FMA_ROW(r, t) acc##r##_##t += a##r * (dot(lo##r, xa) + dot(hi##r, xb)) + b##r * sx;
#define TOK(t, T)                                                  \
  if (NT > T) {                                                    \
    const vec4 xa = xin4(xr_##t, c, ss_##t);                       \
    const vec4 xb = xin4(xr_##t, c + 4u, ss_##t);                  \
    const float sx = dot(xa + xb, vec4(1.0));                      \
    FMA_ROW(0, t)                                                  \
    if (ROWS > 1u) FMA_ROW(1, t)                                   \
    if (ROWS > 2u) FMA_ROW(2, t)                                   \
    if (ROWS > 3u) FMA_ROW(3, t)                                   \
  }
#define WORD(C, J)                                                 \
  {                                                                \
    const uint c = (u * 4u + J) * 8u;                              \
    vec4 lo0, hi0, lo1, hi1, lo2, hi2, lo3, hi3;                   \
    q4_magic(w0.C, lo0, hi0);                                      \
    if (ROWS > 1u) q4_magic(w1.C, lo1, hi1);                       \
    if (ROWS > 2u) q4_magic(w2.C, lo2, hi2);                       \
    if (ROWS > 3u) q4_magic(w3.C, lo3, hi3);                       \
    TOK(0, 0u) TOK(1, 1u) TOK(2, 2u) TOK(3, 3u)                    \
    TOK(4, 4u) TOK(5, 5u) TOK(6, 6u) TOK(7, 7u)                    \
  }
#define SCALE(r, R)                                                               \
  if (ROWS > R) {                                                                \
    const uint gi = min(row0 + R, pc.rows - 1u) * pc.groups_per_row + g;         \
    const float s = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);           \
    a##r = 16.0 * s;                                                             \
    b##r = plane_value(B[plane_word(gi, STYPE)], gi, STYPE) - 16.0 * s;          \
  }
#define PUT(r, R, t, T) if (ROWS > R && NT > T) tot[R * NT + T] = acc##r##_##t;
#define PUT_T(t, T) PUT(0, 0u, t, T) PUT(1, 1u, t, T) PUT(2, 2u, t, T) PUT(3, 3u, t, T) if (NT > T) tot[NACC + T] = ss_##t;

void main_q4(uint tid, uint row0, uint t0) {
  ACC4(0, 0u) ACC4(1, 1u) ACC4(2, 2u) ACC4(3, 3u) ACC4(4, 4u) ACC4(5, 5u) ACC4(6, 6u) ACC4(7, 7u)
  const uint wr0 = min(row0, pc.rows - 1u) * (pc.row_words >> 2), wr1 = min(row0 + 1u, pc.rows - 1u) * (pc.row_words >> 2);
  const uint wr2 = min(row0 + 2u, pc.rows - 1u) * (pc.row_words >> 2), wr3 = min(row0 + 3u, pc.rows - 1u) * (pc.row_words >> 2);
  const uint units = pc.row_words >> 2;
  for (uint u = tid; u < units; u += WG) {
    uvec4 w0 = W4[wr0 + u], w1 = uvec4(0u), w2 = uvec4(0u), w3 = uvec4(0u);
    if (ROWS > 1u) w1 = W4[wr1 + u];
    if (ROWS > 2u) w2 = W4[wr2 + u];
    if (ROWS > 3u) w3 = W4[wr3 + u];
    const uint g = (u * 32u) / GROUP;
    float a0 = 0.0, b0 = 0.0, a1 = 0.0, b1 = 0.0, a2 = 0.0, b2 = 0.0, a3 = 0.0, b3 = 0.0;
    SCALE(0, 0u) SCALE(1, 1u) SCALE(2, 2u) SCALE(3, 3u)
    WORD(x, 0u) WORD(y, 1u) WORD(z, 2u) WORD(w, 3u)
  }
  float tot[RED_MAX];
  [[unroll]] for (uint i = 0u; i < RED_MAX; ++i) tot[i] = 0.0;
  PUT_T(0, 0u) PUT_T(1, 1u) PUT_T(2, 2u) PUT_T(3, 3u) PUT_T(4, 4u) PUT_T(5, 5u) PUT_T(6, 6u) PUT_T(7, 7u)
  wg_reduce(tot, XMODE == 1u ? RED_MAX : NACC, false);
  [[unroll]] for (uint i = 0u; i < NACC; ++i) {
    if (i % WG != tid) continue;
    const uint r = i / NT, tt = i % NT;
    if (row0 + r < pc.rows && t0 + tt < pc.n) {
      float v = tot[i];
      if (XMODE == 1u) v *= 1.0 / sqrt(tot[NACC + tt] / float(pc.cols) + pc.eps);
      const uint yi = (t0 + tt) * pc.ldy + row0 + r;
      Y[yi] = ACC == 1u ? Y[yi] + v : v;
    }
  }
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint idx = gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  const uint tb = idx % pc.ntb, row0 = (idx / pc.ntb) * ROWS;
  if (row0 >= pc.rows) return;  // uniform: past the last row block of a folded grid
  const uint t0 = tb * NT;
  if (WTYPE == WT_Q4 && UW == 4u && ROWS <= 4u && NT <= 8u) {
    main_q4(tid, row0, t0);
    return;
  }
  const bool quant = WTYPE == WT_Q4 || WTYPE == WT_Q8;
  const uint VPW = WTYPE == WT_Q4 ? 8u : WTYPE == WT_Q8 ? 4u : WTYPE == WT_F32 ? 1u : 2u;  // values per word
  const float K = WTYPE == WT_Q4 ? 16.0 : 256.0;

  float acc[RED_MAX];
  [[unroll]] for (uint i = 0u; i < RED_MAX; ++i) acc[i] = 0.0;
  uint xrow[NT];  // first float of each token's x row; tokens past n read row t0 (not written)
  [[unroll]] for (uint tt = 0u; tt < NT; ++tt) xrow[tt] = (t0 + tt < pc.n ? t0 + tt : t0) * pc.ldx;
  uint wrow[ROWS];  // first word of each row; rows past the end repeat the last (not written)
  [[unroll]] for (uint r = 0u; r < ROWS; ++r) wrow[r] = min(row0 + r, pc.rows - 1u) * pc.row_words;
  const uint units = pc.row_words / UW;

  for (uint u0 = tid; u0 < units; u0 += 2u * WG) {
    // All weight loads of this trip first: 2 * ROWS independent loads in flight.
    uvec4 wd[2][ROWS];
    [[unroll]] for (uint k = 0u; k < 2u; ++k) {
      const uint u = min(u0 + k * WG, units - 1u);
      [[unroll]] for (uint r = 0u; r < ROWS; ++r) {
        if (UW == 4u) wd[k][r] = W4[(wrow[r] >> 2) + u];
        else wd[k][r].x = W[wrow[r] + u];
      }
    }
    [[unroll]] for (uint k = 0u; k < 2u; ++k) {
      const uint u = u0 + k * WG;
      if (u >= units) break;
      float a[ROWS], b[ROWS];
      if (quant) {  // a unit never straddles a group (GROUP >= 32 values >= one unit)
        const uint g = (u * UW * VPW) / GROUP;
        [[unroll]] for (uint r = 0u; r < ROWS; ++r) {
          const uint gi = min(row0 + r, pc.rows - 1u) * pc.groups_per_row + g;
          const float s = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);
          a[r] = K * s;
          b[r] = plane_value(B[plane_word(gi, STYPE)], gi, STYPE) - K * s;
        }
      }
      [[unroll]] for (uint j = 0u; j < UW; ++j) {
        const uint c = (u * UW + j) * VPW;  // first column of this word
        if (WTYPE == WT_Q4) {
          vec4 lo[ROWS], hi[ROWS];
          [[unroll]] for (uint r = 0u; r < ROWS; ++r) q4_magic(wd[k][r][j], lo[r], hi[r]);
          [[unroll]] for (uint tt = 0u; tt < NT; ++tt) {
            const vec4 xa = xin4(xrow[tt], c, acc[NACC + tt]);
            const vec4 xb = xin4(xrow[tt], c + 4u, acc[NACC + tt]);
            const float sx = dot(xa + xb, vec4(1.0));
            [[unroll]] for (uint r = 0u; r < ROWS; ++r)
              acc[r * NT + tt] += a[r] * (dot(lo[r], xa) + dot(hi[r], xb)) + b[r] * sx;
          }
        } else if (WTYPE == WT_Q8) {
          vec4 f[ROWS];
          [[unroll]] for (uint r = 0u; r < ROWS; ++r) f[r] = q8_magic(wd[k][r][j]);
          [[unroll]] for (uint tt = 0u; tt < NT; ++tt) {
            const vec4 xa = xin4(xrow[tt], c, acc[NACC + tt]);
            const float sx = dot(xa, vec4(1.0));
            [[unroll]] for (uint r = 0u; r < ROWS; ++r) acc[r * NT + tt] += a[r] * dot(f[r], xa) + b[r] * sx;
          }
        } else if (WTYPE == WT_F32) {
          [[unroll]] for (uint tt = 0u; tt < NT; ++tt) {
            const float xv = xin1(xrow[tt], c, acc[NACC + tt]);
            [[unroll]] for (uint r = 0u; r < ROWS; ++r) acc[r * NT + tt] += uintBitsToFloat(wd[k][r][j]) * xv;
          }
        } else {  // f16 / bf16: the word holds columns c, c+1
          [[unroll]] for (uint tt = 0u; tt < NT; ++tt) {
            float x0 = xin1(xrow[tt], c, acc[NACC + tt]);
            float x1 = xin1(xrow[tt], c + 1u, acc[NACC + tt]);
            [[unroll]] for (uint r = 0u; r < ROWS; ++r)
              acc[r * NT + tt] += dot(WTYPE == WT_F16 ? f16x2(wd[k][r][j]) : bf16x2(wd[k][r][j]), vec2(x0, x1));
          }
        }
      }
    }
  }

  wg_reduce(acc, XMODE == 1u ? RED_MAX : NACC, false);
  // Every invocation holds every total: invocation i % WG writes total i (constant indices into
  // acc once unrolled, so it stays in registers).
  [[unroll]] for (uint i = 0u; i < NACC; ++i) {
    if (i % WG != tid) continue;
    const uint r = i / NT, tt = i % NT;
    if (row0 + r < pc.rows && t0 + tt < pc.n) {
      float v = acc[i];
      if (XMODE == 1u) v *= 1.0 / sqrt(acc[NACC + tt] / float(pc.cols) + pc.eps);
      const uint yi = (t0 + tt) * pc.ldy + row0 + r;
      Y[yi] = ACC == 1u ? Y[yi] + v : v;
    }
  }
}
