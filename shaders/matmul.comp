#version 450
// Tiled matrix product for batches and prefill: y[t, r] = sum_c x[t, c] * W[r, c], f32 throughout.
//
// One workgroup (256 invocations as 16 x 16) computes a 64-row x 64-token tile of y. It walks k in
// steps of 32: the 64x32 slice of W is dequantized into shared memory Ws[k][row] and the 32x64
// slice of x into Xs[k][token], then invocation (tx, ty) accumulates the 4x4 outputs
// rows row0 + tx + 16i, tokens t0 + ty + 16j (i, j < 4): strided by 16 so a warp's shared reads
// hit distinct banks (W) or broadcast (x), and its y writes are contiguous.
// Any shape: rows, tokens and (dense) cols tails are zero-filled. Quantized k steps lie in one
// group (GROUP is a multiple of 32), so each row of a W slice needs one scale and one bias.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;  // must be 256 (the 16 x 16 layout)
layout(constant_id = 3) const uint WTYPE = 0;
layout(constant_id = 4) const uint STYPE = 1;
layout(constant_id = 5) const uint GROUP = 64;

#include "quant.glsl"

const uint BM = 64, BN = 64, BK = 32, PAD = 1;

layout(binding = 0) readonly buffer Wb { uint W[]; };
layout(binding = 1) readonly buffer Sb { uint S[]; };
layout(binding = 2) readonly buffer Bb { uint B[]; };
layout(binding = 3) readonly buffer Xb { float X[]; };
layout(binding = 4) writeonly buffer Yb { float Y[]; };

layout(push_constant) uniform Push {
  uint rows, cols, n, ldx, ldy;
  uint row_words;       // quantized: 32-bit words per weight row
  uint groups_per_row;  // quantized: cols / GROUP
} pc;

shared float Ws[BK * (BM + PAD)];
shared float Xs[BK * (BN + PAD)];

// Dequantizes/loads the 64 x 32 W slice at (row0, k0) into Ws[k * (BM+PAD) + row].
void load_w(uint row0, uint k0, uint tid) {
  if (WTYPE == WT_Q4) {  // 64 rows x 4 words: one word (8 values) per invocation
    const uint rr = tid % BM, kw = tid / BM, row = row0 + rr;
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
      Ws[(kw * 8u + j) * (BM + PAD) + rr] = lo[j];
      Ws[(kw * 8u + 4u + j) * (BM + PAD) + rr] = hi[j];
    }
  } else if (WTYPE == WT_Q8) {  // 64 rows x 8 words: two words per invocation
    for (uint h = 0u; h < 2u; ++h) {
      const uint rr = tid % BM, kw = tid / BM + 4u * h, row = row0 + rr;
      vec4 q = vec4(0.0);
      if (row < pc.rows) {
        const uint gi = row * pc.groups_per_row + k0 / GROUP;
        const float s = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);
        const float b = plane_value(B[plane_word(gi, STYPE)], gi, STYPE);
        q = q8_unpack(W[row * pc.row_words + k0 / 4u + kw]) * s + b;
      }
      for (uint j = 0u; j < 4u; ++j) Ws[(kw * 4u + j) * (BM + PAD) + rr] = q[j];
    }
  } else {  // dense: 8 elements per invocation, element e = row * cols + c
    const uint rr = tid % BM, kq = tid / BM, row = row0 + rr;
    for (uint j = 0u; j < 8u; ++j) {
      const uint c = k0 + kq * 8u + j;
      float v = 0.0;
      if (row < pc.rows && c < pc.cols) {
        const uint e = row * pc.cols + c;
        if (WTYPE == WT_F32) v = uintBitsToFloat(W[e]);
        else {
          const uint word = W[e >> 1];
          const uint h = (e & 1u) != 0u ? (word >> 16) : (word & 0xffffu);
          v = WTYPE == WT_F16 ? unpackHalf2x16(h).x : uintBitsToFloat(h << 16);
        }
      }
      Ws[(kq * 8u + j) * (BM + PAD) + rr] = v;
    }
  }
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint tx = tid % 16u, ty = tid / 16u;
  // Row blocks are folded over grid x and z (z * gridX + x) so huge outputs fit a 65535-wide x.
  const uint row0 = (gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x) * BM, t0 = gl_WorkGroupID.y * BN;
  if (row0 >= pc.rows) return;  // uniform

  float acc[4][4];
  for (uint i = 0u; i < 4u; ++i)
    for (uint j = 0u; j < 4u; ++j) acc[i][j] = 0.0;

  for (uint k0 = 0u; k0 < pc.cols; k0 += BK) {
    load_w(row0, k0, tid);
    // x slice: invocation reads column k0 + tid % 32 of tokens t0 + tid / 32 + 8m (coalesced rows).
    for (uint m = 0u; m < 8u; ++m) {
      const uint c = tid % BK, tt = tid / BK + 8u * m;
      const uint t = t0 + tt, cc = k0 + c;
      Xs[c * (BN + PAD) + tt] = (t < pc.n && cc < pc.cols) ? X[t * pc.ldx + cc] : 0.0;
    }
    barrier();
    for (uint k = 0u; k < BK; ++k) {
      float a[4], b[4];
      for (uint i = 0u; i < 4u; ++i) a[i] = Ws[k * (BM + PAD) + tx + 16u * i];
      for (uint j = 0u; j < 4u; ++j) b[j] = Xs[k * (BN + PAD) + ty + 16u * j];
      for (uint i = 0u; i < 4u; ++i)
        for (uint j = 0u; j < 4u; ++j) acc[i][j] += a[i] * b[j];
    }
    barrier();
  }

  for (uint j = 0u; j < 4u; ++j) {
    const uint t = t0 + ty + 16u * j;
    if (t >= pc.n) continue;
    for (uint i = 0u; i < 4u; ++i) {
      const uint r = row0 + tx + 16u * i;
      if (r < pc.rows) Y[t * pc.ldy + r] = acc[i][j];
    }
  }
}
