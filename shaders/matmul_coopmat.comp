#version 450
// Tiled matrix product on NVIDIA tensor cores: y[t, r] = sum_c x[t, c] * W[r, c] with f16 operands
// (W dequantized to f16, x rounded to f16) and f32 accumulation. The "fast" precision path.
//
// Why GL_NV_cooperative_matrix and not GL_KHR_cooperative_matrix: the glslang of Debian 12
// (12.0, our build toolchain) compiles only the NV extension, and NVIDIA drivers, the only ones
// with VK_NV_cooperative_matrix, still expose it alongside the KHR one. The host selects this shader
// only when the device lists 16x16x16 f16*f16+f32 at subgroup scope and has 32-wide subgroups;
// elsewhere the portable f32 tiled shader (matmul.comp) runs. A KHR port needs glslang >= 13.
//
// One workgroup (128 invocations = 4 subgroups of 32) computes a 64-row x 64-token tile of y.
// Per k step of 32 it dequantizes the 64x32 W slice into Ws[row][k] (f16, row-major) and the
// 32x64 x slice into Xs[token][k]; subgroup s multiplies W rows (s % 2) * 32 .. +32 with tokens
// (s / 2) * 32 .. +32 as 2 x 2 fragments of 16 x 16 (A = W fragment row-major, B = x fragment read
// column-major, so C(m, n) = y[token n, row m]). At the end the fragments go through shared memory
// Cs[token][row] so the y writes are bounds-checked and contiguous along rows.
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;  // must be 128: 4 subgroups of 32
layout(constant_id = 3) const uint WTYPE = 0;
layout(constant_id = 4) const uint STYPE = 1;
layout(constant_id = 5) const uint GROUP = 64;

#include "quant.glsl"

const uint BM = 64, BN = 64, BK = 32;
const uint SK = BK + 8;   // shared row stride in halves: 80 bytes keeps 16-byte alignment, skews banks
const uint SC = BM + 4;   // Cs row stride in floats

layout(binding = 0) readonly buffer Wb { uint W[]; };
layout(binding = 1) readonly buffer Sb { uint S[]; };
layout(binding = 2) readonly buffer Bb { uint B[]; };
layout(binding = 3) readonly buffer Xb { float X[]; };
layout(binding = 4) writeonly buffer Yb { float Y[]; };

layout(push_constant) uniform Push {
  uint rows, cols, n, ldx, ldy;
  uint row_words;
  uint groups_per_row;
} pc;

shared float16_t Ws[BM * SK];
shared float16_t Xs[BN * SK];
shared float Cs[BN * SC];

void load_w(uint row0, uint k0, uint tid) {
  if (WTYPE == WT_Q4) {  // 64 rows x 4 words: two words per invocation
    for (uint h = 0u; h < 2u; ++h) {
      const uint idx = tid + WG * h, rr = idx / 4u, kw = idx % 4u, row = row0 + rr;
      vec4 lo = vec4(0.0), hi = vec4(0.0);
      if (row < pc.rows) {
        const uint gi = row * pc.groups_per_row + k0 / GROUP;
        const float s = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);
        const float b = plane_value(B[plane_word(gi, STYPE)], gi, STYPE);
        q4_unpack(W[row * pc.row_words + k0 / 8u + kw], lo, hi);
        lo = lo * s + b;
        hi = hi * s + b;
      }
      for (uint j = 0u; j < 4u; ++j) {
        Ws[rr * SK + kw * 8u + j] = float16_t(lo[j]);
        Ws[rr * SK + kw * 8u + 4u + j] = float16_t(hi[j]);
      }
    }
  } else if (WTYPE == WT_Q8) {  // 64 rows x 8 words: four per invocation
    for (uint h = 0u; h < 4u; ++h) {
      const uint idx = tid + WG * h, rr = idx / 8u, kw = idx % 8u, row = row0 + rr;
      vec4 q = vec4(0.0);
      if (row < pc.rows) {
        const uint gi = row * pc.groups_per_row + k0 / GROUP;
        const float s = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);
        const float b = plane_value(B[plane_word(gi, STYPE)], gi, STYPE);
        q = q8_unpack(W[row * pc.row_words + k0 / 4u + kw]) * s + b;
      }
      for (uint j = 0u; j < 4u; ++j) Ws[rr * SK + kw * 4u + j] = float16_t(q[j]);
    }
  } else {  // dense: 16 elements per invocation
    for (uint h = 0u; h < 16u; ++h) {
      const uint idx = tid + WG * h, rr = idx / BK, c = idx % BK, row = row0 + rr, cc = k0 + c;
      float v = 0.0;
      if (row < pc.rows && cc < pc.cols) {
        const uint e = row * pc.cols + cc;
        if (WTYPE == WT_F32) v = uintBitsToFloat(W[e]);
        else {
          const uint word = W[e >> 1];
          const uint hb = (e & 1u) != 0u ? (word >> 16) : (word & 0xffffu);
          v = WTYPE == WT_F16 ? unpackHalf2x16(hb).x : uintBitsToFloat(hb << 16);
        }
      }
      Ws[rr * SK + c] = float16_t(v);
    }
  }
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  // Row blocks are folded over grid x and z (z * gridX + x) so huge outputs fit a 65535-wide x.
  const uint row0 = (gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x) * BM, t0 = gl_WorkGroupID.y * BN;
  if (row0 >= pc.rows) return;  // uniform
  const uint sg = gl_SubgroupID;
  const uint wr = (sg % 2u) * 32u, wt = (sg / 2u) * 32u;  // this subgroup's 32 x 32 block

  fcoopmatNV<32, gl_ScopeSubgroup, 16, 16> acc[4];
  for (uint i = 0u; i < 4u; ++i) acc[i] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>(0.0);

  for (uint k0 = 0u; k0 < pc.cols; k0 += BK) {
    load_w(row0, k0, tid);
    for (uint h = 0u; h < 16u; ++h) {  // x slice: 64 tokens x 32 columns, coalesced along columns
      const uint idx = tid + WG * h, tt = idx / BK, c = idx % BK, t = t0 + tt, cc = k0 + c;
      Xs[tt * SK + c] = float16_t((t < pc.n && cc < pc.cols) ? X[t * pc.ldx + cc] : 0.0);
    }
    barrier();
    for (uint kk = 0u; kk < BK; kk += 16u) {
      fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> a[2], b[2];
      for (uint i = 0u; i < 2u; ++i) coopMatLoadNV(a[i], Ws, (wr + 16u * i) * SK + kk, SK, false);
      for (uint j = 0u; j < 2u; ++j) coopMatLoadNV(b[j], Xs, (wt + 16u * j) * SK + kk, SK, true);
      for (uint i = 0u; i < 2u; ++i)
        for (uint j = 0u; j < 2u; ++j) acc[i * 2u + j] = coopMatMulAddNV(a[i], b[j], acc[i * 2u + j]);
    }
    barrier();
  }

  // C(m, n) of fragment (i, j) is y[token wt + 16j + n, row wr + 16i + m]: column-major into Cs.
  for (uint i = 0u; i < 2u; ++i)
    for (uint j = 0u; j < 2u; ++j) coopMatStoreNV(acc[i * 2u + j], Cs, (wt + 16u * j) * SC + wr + 16u * i, SC, true);
  barrier();
  for (uint idx = tid; idx < BM * BN; idx += WG) {
    const uint tt = idx / BM, rr = idx % BM, t = t0 + tt, r = row0 + rr;
    if (t < pc.n && r < pc.rows) Y[t * pc.ldy + r] = Cs[tt * SC + rr];
  }
}
