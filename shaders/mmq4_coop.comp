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
// as (TM/16) x (TN/16) fragments of 16 x 16 (A = W rows, row-major; B = x tokens, column-major;
// C(m, n) = y[token n, row m]). K advances 32 columns per step:
//   - invocation i < BM loads row i's 16-byte unit of the step (+ its scale and bias) and
//     dequantizes it to 32 f16 values in Ws[buf][i][0..31]; the invocations load x in octets (8
//     floats of one token) and round them to f16 into Xs[buf][token][k];
//   - double buffering: the global loads of step k+1 are issued into registers before the
//     fragments of step k are multiplied, and stored to the other buffer afterwards, so one
//     barrier per step separates writers and readers.
// Rows of shared tiles are padded to 40 halves (80 bytes: 8 consecutive rows start in 8 different
// 16-byte bank groups). At the end each subgroup passes its fragments through its own 16 x 16 f32
// scratch in shared memory so that y is written with bounds checks, contiguous along rows.
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

#include "quant.glsl"

const uint NW = WG / 32u, WN = NW / WM;
const uint TM = BM / WM, TN = BN / WN, FM = TM / 16u, FN = TN / 16u;  // FM, FN <= 4 (host-checked)
const uint SKV = 5u;  // shared row stride in uvec4 (40 halves, 80 bytes)
const uint XO = (BN * 4u + WG - 1u) / WG;  // x octets (8 floats) per invocation per step, <= 4

layout(binding = 0) readonly buffer Wb4 { uvec4 W4[]; };
layout(binding = 1) readonly buffer Sb { uint S[]; };
layout(binding = 2) readonly buffer Bb { uint B[]; };
layout(binding = 3) readonly buffer Xb4 { vec4 X4[]; };
layout(binding = 4) buffer Yb { float Y[]; };

layout(push_constant) uniform Push {
  uint rows, cols, n, ldx, ldy;
  uint row_words;
  uint groups_per_row;
} pc;

// f16 tiles as uvec4 (8 halves): the cooperative-matrix loads take element offsets and strides in
// units of the array's element type; the dequantized rows are stored 16 bytes at a time.
shared uvec4 Ws[2u * BM * SKV];
shared uvec4 Xs[2u * BN * SKV];
shared float Cs[NW * 256u];

#define REP4(M) M(0) M(1) M(2) M(3)

void main() {
  const uint tid = gl_LocalInvocationID.x;
  // Row blocks are folded over grid x and z (z * gridX + x) so huge outputs fit a 65535-wide x.
  const uint row0 = (gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x) * BM, t0 = gl_WorkGroupID.y * BN;
  if (row0 >= pc.rows) return;  // uniform
  const uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
  const uint wm = sg % WM, wn = sg / WM;
  const uint units = pc.row_words >> 2;

  // This invocation's weight row (invocations < BM) and x octets (token, octet-in-step).
  const bool wrow = tid < BM;
  const uint wr = min(row0 + tid, pc.rows - 1u);
  uint xt[4], xq[4];
  bool xon[4], xok[4];
#define XSETUP(i)                                   \
  {                                                 \
    const uint v = tid + i * WG;                    \
    xon[i] = i < XO && v < BN * 4u;                 \
    xt[i] = v / 4u;                                 \
    xq[i] = v % 4u;                                 \
    xok[i] = xon[i] && t0 + xt[i] < pc.n;           \
  }
  REP4(XSETUP)

  uvec4 wq = uvec4(0u);
  float ws = 0.0, wb = 0.0;
  vec4 xa[4], xb[4];
  // Global loads of step k (columns 32k .. 32k + 31).
#define XLOAD(i, k)                                                                      \
  if (xon[i]) {                                                                          \
    const uint xi = ((t0 + xt[i]) * pc.ldx + (k) * 32u) / 4u + 2u * xq[i];               \
    xa[i] = xok[i] ? X4[xi] : vec4(0.0);                                                 \
    xb[i] = xok[i] ? X4[xi + 1u] : vec4(0.0);                                            \
  }
#define LOAD(k)                                                                          \
  {                                                                                      \
    if (wrow) {                                                                          \
      wq = W4[wr * units + (k)];                                                         \
      const uint gi = wr * pc.groups_per_row + ((k) * 32u) / GROUP;                      \
      ws = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);                             \
      wb = plane_value(B[plane_word(gi, STYPE)], gi, STYPE);                             \
    }                                                                                    \
    XLOAD(0, k) XLOAD(1, k) XLOAD(2, k) XLOAD(3, k)                                      \
  }
  // Dequantize / round the registers into buffer b.
#define WSTORE(b, j)                                                                     \
  {                                                                                      \
    vec4 lo, hi;                                                                         \
    q4_unpack(wq[j], lo, hi);                                                            \
    lo = lo * ws + wb;                                                                   \
    hi = hi * ws + wb;                                                                   \
    Ws[((b) * BM + tid) * SKV + j] = uvec4(packHalf2x16(lo.xy), packHalf2x16(lo.zw),      \
                                           packHalf2x16(hi.xy), packHalf2x16(hi.zw));     \
  }
#define XSTORE(i, b)                                                                     \
  if (xon[i])                                                                            \
    Xs[((b) * BN + xt[i]) * SKV + xq[i]] = uvec4(packHalf2x16(xa[i].xy), packHalf2x16(xa[i].zw), \
                                                 packHalf2x16(xb[i].xy), packHalf2x16(xb[i].zw));
#define STORE(b)                                                                         \
  {                                                                                      \
    if (wrow) { WSTORE(b, 0) WSTORE(b, 1) WSTORE(b, 2) WSTORE(b, 3) }                    \
    XSTORE(0, b) XSTORE(1, b) XSTORE(2, b) XSTORE(3, b)                                  \
  }

  fcoopmatNV<32, gl_ScopeSubgroup, 16, 16> acc[16];  // acc[i * 4 + j], i < FM, j < FN
  [[unroll]] for (uint i = 0u; i < 16u; ++i) acc[i] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>(0.0);

  LOAD(0u)
  STORE(0u)
  barrier();
  for (uint k = 0u; k < units; ++k) {
    const uint cur = k & 1u;
    if (k + 1u < units) LOAD(k + 1u)
    [[unroll]] for (uint kk = 0u; kk < 4u; kk += 2u) {  // two k16 halves of the step, in uvec4
      fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> a[4], b[4];
      [[unroll]] for (uint i = 0u; i < 4u; ++i)
        if (i < FM) coopMatLoadNV(a[i], Ws, (cur * BM + wm * TM + 16u * i) * SKV + kk, SKV, false);
      [[unroll]] for (uint j = 0u; j < 4u; ++j)
        if (j < FN) coopMatLoadNV(b[j], Xs, (cur * BN + wn * TN + 16u * j) * SKV + kk, SKV, true);
      [[unroll]] for (uint i = 0u; i < 4u; ++i)
        [[unroll]] for (uint j = 0u; j < 4u; ++j)
          if (i < FM && j < FN) acc[i * 4u + j] = coopMatMulAddNV(a[i], b[j], acc[i * 4u + j]);
    }
    if (k + 1u < units) STORE(cur ^ 1u)
    barrier();
  }

  // Fragment (i, j): C(m, n) = y[token t0 + wn*TN + 16j + n, row row0 + wm*TM + 16i + m], through
  // this subgroup's scratch (column-major: element (m, n) at n * 16 + m).
  [[unroll]] for (uint i = 0u; i < 4u; ++i)
    [[unroll]] for (uint j = 0u; j < 4u; ++j) {
      if (i >= FM || j >= FN) continue;
      coopMatStoreNV(acc[i * 4u + j], Cs, sg * 256u, 16u, true);
      subgroupMemoryBarrierShared();
      subgroupBarrier();
      for (uint e = lane; e < 256u; e += 32u) {
        const uint r = row0 + wm * TM + 16u * i + e % 16u, t = t0 + wn * TN + 16u * j + e / 16u;
        if (r < pc.rows && t < pc.n) {
          const float v = Cs[sg * 256u + e];
          const uint yi = t * pc.ldy + r;
          Y[yi] = ACC == 1u ? Y[yi] + v : v;
        }
      }
      subgroupBarrier();
    }
}
