// bf16 <-> f32 for activations stored as bf16 (mmq4_coop.comp, rmsnorm.comp): round to nearest
// even (NaN stays NaN); a 32-bit word holds elements 2i (low half) and 2i + 1.
uint bf16_rne(float f) {
  const uint u = floatBitsToUint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
uint bf16_pair(float lo, float hi) { return bf16_rne(lo) | (bf16_rne(hi) << 16); }
vec4 bf16_quad(uvec2 w) {
  return vec4(uintBitsToFloat(w.x << 16), uintBitsToFloat(w.x & 0xffff0000u), uintBitsToFloat(w.y << 16),
              uintBitsToFloat(w.y & 0xffff0000u));
}
