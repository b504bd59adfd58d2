// Writing the paged KV cache (layout in attn.glsl): f32 -> f16 rounded to nearest even, and with
// ROPE_QKV defined, rope_store.comp's op on one dim pair of a token's qkv row, shared with the
// tensor-core matmul that fuses it (mmq4_coop.comp). The includer then declares spec constant
// KV_F16, buffers `float Cs[]` (cos [n, half_rot]), `float Sn[]` (sin), `uint Slots[]` (cache
// element offset of token t's kv head 0), `uint Kc[]`, `uint Vc[]`, and defines ROPE_QKV as the
// float array that holds the qkv rows (read, and written for the q heads).

// f32 -> f16 bits, rounding to nearest even as the CPU path does (packHalf2x16 leaves the rounding
// to the implementation; llvmpipe truncates, which doubles the cache's rounding error).
uint half_rne(float f) {
  const uint x = floatBitsToUint(f);
  const uint sign = (x >> 16) & 0x8000u, e = (x >> 23) & 0xffu, m = x & 0x7fffffu;
  if (e == 0xffu) return sign | 0x7c00u | (m != 0u ? 0x200u : 0u);  // inf, nan
  if (e >= 143u) return sign | 0x7c00u;                               // overflow: inf
  if (e >= 113u) {                                                    // normal half
    uint h = sign | ((e - 112u) << 10) | (m >> 13);
    const uint rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) h += 1u;  // a carry rounds up the exponent
    return h;
  }
  const uint s = 126u - e;  // subnormal half: q = (m | 2^23) / 2^s, s >= 14
  if (s > 25u) return sign;
  const uint m24 = m | 0x800000u, half_ulp = 1u << (s - 1u);
  uint q = m24 >> s;
  const uint rem = m24 & ((1u << s) - 1u);
  if (rem > half_ulp || (rem == half_ulp && (q & 1u) != 0u)) q += 1u;
  return sign | q;
}

#ifdef ROPE_QKV
// Cache elements e, e + 1 of K or V.
void kv_put(bool is_v, uint e, float v0, float v1) {
  if (KV_F16 == 1u) {
    const uint w = half_rne(v0) | (half_rne(v1) << 16);
    if (is_v) Vc[e >> 1] = w;
    else Kc[e >> 1] = w;
  } else if (is_v) {
    Vc[e] = floatBitsToUint(v0);
    Vc[e + 1u] = floatBitsToUint(v1);
  } else {
    Kc[e] = floatBitsToUint(v0);
    Kc[e + 1u] = floatBitsToUint(v1);
  }
}

// RoPE and the cache store for dims (d, d + 1) (d even) of head hh of token t, whose qkv row starts
// at element `row` (heads q (n_heads), k, v (n_kv_heads each) of head_dim): q heads are rotated in
// place, k heads rotated into the cache, v heads copied there. Rotate-half RoPE (half = half_rot):
//   v[i] = a*cos[t,i] - b*sin[t,i],  v[i+half] = b*cos[t,i] + a*sin[t,i]   (a = v[i], b = v[i+half])
// The call for d < half also writes the partners d + half, d + 1 + half; the call for
// half <= d < 2 half does nothing; dims past 2 half are copied. So every 32-bit word of an f16
// cache row has a single writer (head_dim and half even).
void rope_store_pair(uint t, uint row, uint hh, uint d, uint n_heads, uint n_kv_heads, uint head_dim, uint half_rot,
                     uint head_stride) {
  row += hh * head_dim;
  const bool is_q = hh < n_heads, is_v = hh >= n_heads + n_kv_heads;
  const uint kvh = is_q ? 0u : is_v ? hh - n_heads - n_kv_heads : hh - n_heads;
  const uint e = Slots[t] + kvh * head_stride;
  if (is_v || d >= 2u * half_rot) {  // copied as it is (v heads, and dims past rot_dim)
    const float v0 = ROPE_QKV[row + d], v1 = ROPE_QKV[row + d + 1u];
    if (!is_q) kv_put(is_v, e + d, v0, v1);
    return;
  }
  if (d >= half_rot) return;  // the partner side
  float o[4];  // dims d, d+1, d+half, d+1+half
  for (uint k = 0u; k < 2u; ++k) {
    const uint i = d + k;
    const float a = ROPE_QKV[row + i], b = ROPE_QKV[row + i + half_rot];
    const float c = Cs[t * half_rot + i], s = Sn[t * half_rot + i];
    o[k] = a * c - b * s;
    o[2u + k] = b * c + a * s;
  }
  if (is_q) {
    ROPE_QKV[row + d] = o[0];
    ROPE_QKV[row + d + 1u] = o[1];
    ROPE_QKV[row + d + half_rot] = o[2];
    ROPE_QKV[row + d + 1u + half_rot] = o[3];
  } else {
    kv_put(false, e + d, o[0], o[1]);
    kv_put(false, e + d + half_rot, o[2], o[3]);
  }
}
#endif
