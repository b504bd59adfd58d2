#version 450
// Matrix-vector product for decode: y[t, r] = sum_c x[t, c] * W[r, c] for a few tokens t.
//
// One workgroup computes ROWS consecutive output rows for NT consecutive tokens (grid: x and z =
// row blocks, folded as z * gridX + x so huge outputs fit a 65535-wide x; y = token blocks). Its WG invocations split the row's k dimension: invocation i reads
// the i-th, (i+WG)-th, ... 16-byte vector of each of its ROWS weight rows (32 q4 values, 16 q8, 8
// f16/bf16 or 4 f32), so each load instruction reads WG*16 contiguous bytes, and it reuses the
// matching slice of x (read once per vector, kept in registers) for all ROWS rows. Partial sums
// are reduced across the workgroup (common/reduce.glsl) and invocation j < ROWS*NT writes one y.
// Memory-bound: the weights are read exactly once per token block, in 16-byte loads.
//
// Quantized rows use  sum_c W x = sum_groups scale * (sum q x) + bias * (sum x), so each 32-value
// vector costs one scale and one bias read, and sum x is shared by all ROWS rows.
// Requires (host-checked): cols a multiple of the vector's value count, ldx % 4 == 0, and for
// quantized weights GROUP a multiple of 32 (so a vector never straddles two groups).
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint ROWS = 2;
layout(constant_id = 2) const uint NT = 1;
layout(constant_id = 3) const uint WTYPE = 0;
layout(constant_id = 4) const uint STYPE = 1;
layout(constant_id = 5) const uint GROUP = 64;

const uint MAX_ROWS = 8;
const uint MAX_NT = 8;
const uint RED_MAX = 32;  // ROWS * NT <= 32 (host-checked)

#include "quant.glsl"
#include "reduce.glsl"

layout(binding = 0) readonly buffer Wb { uvec4 W[]; };
layout(binding = 1) readonly buffer Sb { uint S[]; };
layout(binding = 2) readonly buffer Bb { uint B[]; };
layout(binding = 3) readonly buffer Xb { vec4 X[]; };
layout(binding = 4) writeonly buffer Yb { float Y[]; };

layout(push_constant) uniform Push {
  uint rows;            // output features
  uint cols;            // input features
  uint n;               // tokens
  uint ldx;             // floats between x rows (multiple of 4)
  uint ldy;             // floats between y rows
  uint row_vecs;        // 16-byte vectors per weight row
  uint groups_per_row;  // quantized: cols / GROUP
} pc;

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint row0 = (gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x) * ROWS;
  if (row0 >= pc.rows) return;  // uniform: past the last row block of a folded grid
  const uint t0 = gl_WorkGroupID.y * NT;
  const uint VPV = WTYPE == WT_Q4 ? 32u : WTYPE == WT_Q8 ? 16u : WTYPE == WT_F32 ? 4u : 8u;

  float acc[RED_MAX];
  for (uint i = 0u; i < RED_MAX; ++i) acc[i] = 0.0;
  uint xrow[MAX_NT];  // first vec4 of each token's x row; tokens past n read row 0 (ignored)
  for (uint tt = 0u; tt < NT; ++tt) xrow[tt] = (t0 + tt < pc.n ? t0 + tt : 0u) * (pc.ldx / 4u);

  for (uint v = tid; v < pc.row_vecs; v += WG) {
    uvec4 w[MAX_ROWS];
    float sc[MAX_ROWS], bi[MAX_ROWS];
    const uint g = (v * VPV) / GROUP;
    for (uint r = 0u; r < ROWS; ++r) {
      const uint row = min(row0 + r, pc.rows - 1u);  // rows past the end repeat the last (not written)
      w[r] = W[row * pc.row_vecs + v];
      if (WTYPE == WT_Q4 || WTYPE == WT_Q8) {
        const uint gi = row * pc.groups_per_row + g;
        sc[r] = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);
        bi[r] = plane_value(B[plane_word(gi, STYPE)], gi, STYPE);
      }
    }
    const uint xv = (v * VPV) / 4u;  // first vec4 of x this vector multiplies

    if (WTYPE == WT_Q4) {
      float qx[RED_MAX];
      for (uint i = 0u; i < ROWS * NT; ++i) qx[i] = 0.0;
      float sx[MAX_NT];
      for (uint tt = 0u; tt < NT; ++tt) sx[tt] = 0.0;
      for (uint k = 0u; k < 4u; ++k) {  // word k holds columns 8k .. 8k+7 of the vector
        vec4 xa[MAX_NT], xb[MAX_NT];
        for (uint tt = 0u; tt < NT; ++tt) {
          xa[tt] = X[xrow[tt] + xv + 2u * k];
          xb[tt] = X[xrow[tt] + xv + 2u * k + 1u];
          sx[tt] += dot(xa[tt] + xb[tt], vec4(1.0));
        }
        for (uint r = 0u; r < ROWS; ++r) {
          vec4 lo, hi;
          q4_unpack(w[r][k], lo, hi);
          for (uint tt = 0u; tt < NT; ++tt) qx[r * NT + tt] += dot(lo, xa[tt]) + dot(hi, xb[tt]);
        }
      }
      for (uint r = 0u; r < ROWS; ++r)
        for (uint tt = 0u; tt < NT; ++tt) acc[r * NT + tt] += sc[r] * qx[r * NT + tt] + bi[r] * sx[tt];
    } else if (WTYPE == WT_Q8) {
      float qx[RED_MAX];
      for (uint i = 0u; i < ROWS * NT; ++i) qx[i] = 0.0;
      float sx[MAX_NT];
      for (uint tt = 0u; tt < NT; ++tt) sx[tt] = 0.0;
      for (uint k = 0u; k < 4u; ++k) {  // word k holds columns 4k .. 4k+3
        vec4 xa[MAX_NT];
        for (uint tt = 0u; tt < NT; ++tt) {
          xa[tt] = X[xrow[tt] + xv + k];
          sx[tt] += dot(xa[tt], vec4(1.0));
        }
        for (uint r = 0u; r < ROWS; ++r) {
          vec4 q = q8_unpack(w[r][k]);
          for (uint tt = 0u; tt < NT; ++tt) qx[r * NT + tt] += dot(q, xa[tt]);
        }
      }
      for (uint r = 0u; r < ROWS; ++r)
        for (uint tt = 0u; tt < NT; ++tt) acc[r * NT + tt] += sc[r] * qx[r * NT + tt] + bi[r] * sx[tt];
    } else if (WTYPE == WT_F32) {
      for (uint tt = 0u; tt < NT; ++tt) {
        vec4 xa = X[xrow[tt] + xv];
        for (uint r = 0u; r < ROWS; ++r) acc[r * NT + tt] += dot(uintBitsToFloat(w[r]), xa);
      }
    } else {  // f16 / bf16: word k holds columns 2k, 2k+1
      for (uint tt = 0u; tt < NT; ++tt) {
        vec4 xa = X[xrow[tt] + xv], xb = X[xrow[tt] + xv + 1u];
        for (uint r = 0u; r < ROWS; ++r) {
          vec2 a = WTYPE == WT_F16 ? f16x2(w[r].x) : bf16x2(w[r].x);
          vec2 b = WTYPE == WT_F16 ? f16x2(w[r].y) : bf16x2(w[r].y);
          vec2 c = WTYPE == WT_F16 ? f16x2(w[r].z) : bf16x2(w[r].z);
          vec2 d = WTYPE == WT_F16 ? f16x2(w[r].w) : bf16x2(w[r].w);
          acc[r * NT + tt] += dot(vec4(a, b), xa) + dot(vec4(c, d), xb);
        }
      }
    }
  }

  wg_reduce(acc, ROWS * NT, false);
  if (tid < ROWS * NT) {
    const uint r = tid / NT, tt = tid % NT;
    if (row0 + r < pc.rows && t0 + tt < pc.n) Y[(t0 + tt) * pc.ldy + row0 + r] = acc[tid];
  }
}
