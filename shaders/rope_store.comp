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
// the dim pair (2j, 2j+1) of one head (common/kv_store.glsl: rope_store_pair). Needs (host-checked)
// head_dim even and half even.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint KV_F16 = 1;

layout(binding = 0) buffer Qb { float QKV[]; };
layout(binding = 1) readonly buffer Cb { float Cs[]; };
layout(binding = 2) readonly buffer Sb { float Sn[]; };
layout(binding = 3) readonly buffer Lb { uint Slots[]; };
layout(binding = 4) writeonly buffer Kb { uint Kc[]; };
layout(binding = 5) writeonly buffer Vb { uint Vc[]; };

layout(push_constant) uniform Push {
  uint stride;      // floats between qkv rows
  uint n_heads;     // query heads
  uint n_kv_heads;
  uint head_dim;
  uint half_rot;    // rot_dim / 2
  uint head_stride; // cache elements between kv heads
} pc;

#define ROPE_QKV QKV
#include "kv_store.glsl"

void main() {
  const uint t = gl_WorkGroupID.y;
  const uint pairs = pc.head_dim / 2u;
  const uint idx = gl_GlobalInvocationID.x;
  if (idx >= (pc.n_heads + 2u * pc.n_kv_heads) * pairs) return;
  rope_store_pair(t, t * pc.stride, idx / pairs, 2u * (idx % pairs), pc.n_heads, pc.n_kv_heads, pc.head_dim,
                  pc.half_rot, pc.head_stride);
}
