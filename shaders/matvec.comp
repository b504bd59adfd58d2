#version 450
// Matrix-vector product for decode: y[t, r] = sum_c x[t, c] * W[r, c] for a few tokens t.
//
// One workgroup computes ROWS consecutive output rows for NT consecutive tokens (grid: x and z =
// row blocks, folded as z * gridX + x so huge outputs fit a 65535-wide x; y = token blocks). Its
// WG invocations split each row into 32-bit words: invocation i takes words i, i+WG, i+2WG, ...
// (two per loop trip, so 2*ROWS weight loads are in flight), so each weight load instruction of a
// warp reads 128 contiguous bytes. A q4 word holds 8 columns, a q8 word 4, an f16/bf16 word 2, an
// f32 word 1; the invocation loads the matching x values (16-byte loads for q4/q8) once per word
// and uses them for all ROWS rows. Partial sums are reduced across the workgroup
// (common/reduce.glsl) and invocation j < ROWS*NT writes one y.
//
// Quantized words are decoded without int->float conversions (I2F runs at a quarter of the FMA
// rate on NVIDIA and would make this kernel ALU-bound): a q4 value q shifted into mantissa bits
// 19..22 of 1.0f gives f = 1 + q/16 with a shift and one LOP3, so
//   sum_j q_j x_j = 16 * (sum_j f_j x_j - sum_j x_j)
// and a word's contribution is  A * sum f x + Bc * sum x  with A = 16 * scale, Bc = bias - 16 * scale
// (q8: bits 15..22, f = 1 + q/256, factor 256). The cancellation costs about 2 bits of the 24.
// Requires (host-checked): ldx % 4 == 0 for q4/q8, ldx and cols even for f16/bf16.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint ROWS = 4;
layout(constant_id = 2) const uint NT = 1;
layout(constant_id = 3) const uint WTYPE = 0;
layout(constant_id = 4) const uint STYPE = 1;
layout(constant_id = 5) const uint GROUP = 64;
const uint RED_MAX = ROWS * NT;

#include "quant.glsl"
#include "reduce.glsl"

layout(binding = 0) readonly buffer Wb { uint W[]; };
layout(binding = 1) readonly buffer Sb { uint S[]; };
layout(binding = 2) readonly buffer Bb { uint B[]; };
// x, viewed as vec4 (q4/q8), vec2 (f16/bf16) or float (f32) elements.
layout(binding = 3) readonly buffer Xb4 { vec4 X4[]; };
layout(binding = 3) readonly buffer Xb2 { vec2 X2[]; };
layout(binding = 3) readonly buffer Xb1 { float X1[]; };
layout(binding = 4) writeonly buffer Yb { float Y[]; };

layout(push_constant) uniform Push {
  uint rows;            // output features
  uint cols;            // input features
  uint n;               // tokens
  uint ldx;             // floats between x rows
  uint ldy;             // floats between y rows
  uint row_words;       // 32-bit words per weight row
  uint groups_per_row;  // quantized: cols / GROUP
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

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint row0 = (gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x) * ROWS;
  if (row0 >= pc.rows) return;  // uniform: past the last row block of a folded grid
  const uint t0 = gl_WorkGroupID.y * NT;
  const bool quant = WTYPE == WT_Q4 || WTYPE == WT_Q8;
  const uint VPW = WTYPE == WT_Q4 ? 8u : WTYPE == WT_Q8 ? 4u : WTYPE == WT_F32 ? 1u : 2u;  // values per word
  const float K = WTYPE == WT_Q4 ? 16.0 : 256.0;

  float acc[RED_MAX];
  [[unroll]] for (uint i = 0u; i < RED_MAX; ++i) acc[i] = 0.0;
  uint xrow[NT];  // first float of each token's x row; tokens past n read row 0 (not written)
  [[unroll]] for (uint tt = 0u; tt < NT; ++tt) xrow[tt] = (t0 + tt < pc.n ? t0 + tt : 0u) * pc.ldx;
  uint wrow[ROWS];  // first word of each row; rows past the end repeat the last (not written)
  [[unroll]] for (uint r = 0u; r < ROWS; ++r) wrow[r] = min(row0 + r, pc.rows - 1u) * pc.row_words;

  for (uint w0 = tid; w0 < pc.row_words; w0 += 2u * WG) {
    // All weight words of this trip first: 2 * ROWS independent loads in flight.
    uint wd[2][ROWS];
    [[unroll]] for (uint u = 0u; u < 2u; ++u) {
      const uint w = min(w0 + u * WG, pc.row_words - 1u);
      [[unroll]] for (uint r = 0u; r < ROWS; ++r) wd[u][r] = W[wrow[r] + w];
    }
    [[unroll]] for (uint u = 0u; u < 2u; ++u) {
      const uint w = w0 + u * WG;
      if (w >= pc.row_words) break;
      float a[ROWS], b[ROWS];
      if (quant) {
        const uint g = (w * VPW) / GROUP;
        [[unroll]] for (uint r = 0u; r < ROWS; ++r) {
          const uint gi = min(row0 + r, pc.rows - 1u) * pc.groups_per_row + g;
          const float s = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);
          a[r] = K * s;
          b[r] = plane_value(B[plane_word(gi, STYPE)], gi, STYPE) - K * s;
        }
      }
      if (WTYPE == WT_Q4) {
        vec4 xa[NT], xb[NT];
        float sx[NT];
        [[unroll]] for (uint tt = 0u; tt < NT; ++tt) {
          xa[tt] = X4[(xrow[tt] >> 2) + 2u * w];
          xb[tt] = X4[(xrow[tt] >> 2) + 2u * w + 1u];
          sx[tt] = dot(xa[tt] + xb[tt], vec4(1.0));
        }
        [[unroll]] for (uint r = 0u; r < ROWS; ++r) {
          vec4 lo, hi;
          q4_magic(wd[u][r], lo, hi);
          [[unroll]] for (uint tt = 0u; tt < NT; ++tt)
            acc[r * NT + tt] += a[r] * (dot(lo, xa[tt]) + dot(hi, xb[tt])) + b[r] * sx[tt];
        }
      } else if (WTYPE == WT_Q8) {
        vec4 xa[NT];
        float sx[NT];
        [[unroll]] for (uint tt = 0u; tt < NT; ++tt) {
          xa[tt] = X4[(xrow[tt] >> 2) + w];
          sx[tt] = dot(xa[tt], vec4(1.0));
        }
        [[unroll]] for (uint r = 0u; r < ROWS; ++r) {
          const vec4 f = q8_magic(wd[u][r]);
          [[unroll]] for (uint tt = 0u; tt < NT; ++tt) acc[r * NT + tt] += a[r] * dot(f, xa[tt]) + b[r] * sx[tt];
        }
      } else if (WTYPE == WT_F32) {
        [[unroll]] for (uint tt = 0u; tt < NT; ++tt) {
          const float xv = X1[xrow[tt] + w];
          [[unroll]] for (uint r = 0u; r < ROWS; ++r) acc[r * NT + tt] += uintBitsToFloat(wd[u][r]) * xv;
        }
      } else {  // f16 / bf16: word w holds columns 2w, 2w+1
        [[unroll]] for (uint tt = 0u; tt < NT; ++tt) {
          const vec2 xv = X2[(xrow[tt] >> 1) + w];
          [[unroll]] for (uint r = 0u; r < ROWS; ++r)
            acc[r * NT + tt] += dot(WTYPE == WT_F16 ? f16x2(wd[u][r]) : bf16x2(wd[u][r]), xv);
        }
      }
    }
  }

  wg_reduce(acc, RED_MAX, false);
  if (tid < RED_MAX) {
    const uint r = tid / NT, tt = tid % NT;
    if (row0 + r < pc.rows && t0 + tt < pc.n) Y[(t0 + tt) * pc.ldy + row0 + r] = acc[tid];
  }
}
