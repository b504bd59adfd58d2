// Writing the paged KV cache (layout in attn.glsl): f32 -> f16 rounded to nearest even, as the
// shaders that store into the cache (rope_store.comp, mvq4.comp's RoPE fusion) need it.

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
