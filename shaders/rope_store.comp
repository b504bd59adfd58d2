#version 450
// RoPE on the q and k heads of each token's qkv row, and the KV-cache store, in one pass:
//   q heads: rotated in place in qkv (the attention reads them there);
//   k heads: rotated and written to the cache slot of the token; v heads: copied to the cache.
// Rotate-half RoPE as shaders/rope.comp (half = rot_dim / 2, i < half):
//   v[i] = a*cos[t,i] - b*sin[t,i],  v[i+half] = b*cos[t,i] + a*sin[t,i]   (a = v[i], b = v[i+half])
// qkv: [n, stride] f32, heads q (n_heads), k (n_kv_heads), v (n_kv_heads) of head_dim each.
// slots[t]: element offset of (block, kv head 0, slot) of token t in this layer's K and V arrays;
// kv head h adds h * head_stride. KV elements are f16 (KV_F16 = 1, two per 32-bit word) or f32.
//
// Grid: x = ceil((n_heads + 2 n_kv_heads) * head_dim / 2 / WG), y = tokens. One invocation owns
// the dim pair (2j, 2j+1) of one head and, inside the rotated range, its partners (2j+half,
// 2j+1+half), so every 32-bit word of an f16 cache row has a single writer. Needs (host-checked)
// head_dim even and half even.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint KV_F16 = 1;

layout(binding = 0) buffer Qb { float QKV[]; };
layout(binding = 1) readonly buffer Cb { float C[]; };
layout(binding = 2) readonly buffer Sb { float Sn[]; };
layout(binding = 3) readonly buffer Lb { uint Slots[]; };
layout(binding = 4) writeonly buffer Kb { uint K[]; };
layout(binding = 5) writeonly buffer Vb { uint V[]; };

layout(push_constant) uniform Push {
  uint stride;      // floats between qkv rows
  uint n_heads;     // query heads
  uint n_kv_heads;
  uint head_dim;
  uint half_rot;    // rot_dim / 2
  uint head_stride; // cache elements between kv heads
} pc;

#include "kv_store.glsl"  // half_rne

void put(bool is_v, uint e, float v0, float v1) {
  if (KV_F16 == 1u) {
    const uint w = half_rne(v0) | (half_rne(v1) << 16);
    if (is_v) V[e >> 1] = w;
    else K[e >> 1] = w;
  } else if (is_v) {
    V[e] = floatBitsToUint(v0);
    V[e + 1u] = floatBitsToUint(v1);
  } else {
    K[e] = floatBitsToUint(v0);
    K[e + 1u] = floatBitsToUint(v1);
  }
}

void main() {
  const uint t = gl_WorkGroupID.y;
  const uint pairs = pc.head_dim / 2u;
  const uint idx = gl_GlobalInvocationID.x;
  if (idx >= (pc.n_heads + 2u * pc.n_kv_heads) * pairs) return;
  const uint hh = idx / pairs, d = 2u * (idx % pairs);
  const uint row = t * pc.stride + hh * pc.head_dim;
  const bool is_q = hh < pc.n_heads, is_v = hh >= pc.n_heads + pc.n_kv_heads;
  const uint kvh = is_q ? 0u : is_v ? hh - pc.n_heads - pc.n_kv_heads : hh - pc.n_heads;
  const uint e = Slots[t] + kvh * pc.head_stride;
  const uint half_rot = pc.half_rot;

  if (is_v || d >= 2u * half_rot) {  // copied as it is (v heads, and dims past rot_dim)
    const float v0 = QKV[row + d], v1 = QKV[row + d + 1u];
    if (!is_q) put(is_v, e + d, v0, v1);
    return;
  }
  if (d >= half_rot) return;  // the partner side: written by the invocation of d - half
  float o[4];  // dims d, d+1, d+half, d+1+half
  for (uint k = 0u; k < 2u; ++k) {
    const uint i = d + k;
    const float a = QKV[row + i], b = QKV[row + i + half_rot];
    const float c = C[t * half_rot + i], s = Sn[t * half_rot + i];
    o[k] = a * c - b * s;
    o[2u + k] = b * c + a * s;
  }
  if (is_q) {
    QKV[row + d] = o[0];
    QKV[row + d + 1u] = o[1];
    QKV[row + d + half_rot] = o[2];
    QKV[row + d + 1u + half_rot] = o[3];
  } else {
    put(false, e + d, o[0], o[1]);
    put(false, e + d + half_rot, o[2], o[3]);
  }
}
