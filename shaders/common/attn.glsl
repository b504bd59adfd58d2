// Shared pieces of the attention shaders: the paged KV cache and per-sequence metadata.
//
// KV cache (kernels/kernels.h KvLayer): element (block b, kv head h, slot s, dim i) of K (V) is at
// k[b * block_stride + h * head_stride + s * head_dim + i], f16 (KV_F16 = 1, two per 32-bit word,
// low half first) or f32. Position p of a sequence lives in block tables[table_offset + p / block_size],
// slot p % block_size. Meta[seq] = (q_begin, n_q, pos0, table_offset), as AttnSeq.
// The includer declares the K and V buffers as `uint K[]`, `uint V[]` and spec constant KV_F16.

// Score of a masked key: finite, so max/exp never see infinities; masked terms are zeroed
// explicitly, never through exp(NEG - m).
const float NEG = -1.0e30;

float k_at(uint e) {
  if (KV_F16 == 0u) return uintBitsToFloat(K[e]);
  const uint w = K[e >> 1];
  return unpackHalf2x16((e & 1u) != 0u ? (w >> 16) : w).x;
}

float v_at(uint e) {
  if (KV_F16 == 0u) return uintBitsToFloat(V[e]);
  const uint w = V[e >> 1];
  return unpackHalf2x16((e & 1u) != 0u ? (w >> 16) : w).x;
}
