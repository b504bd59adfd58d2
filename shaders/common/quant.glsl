// Weight and half-precision access mirroring quant/format.h, for shaders that bind every plane as
// 32-bit words (so none needs 16-bit storage features).
//
// MLX affine q4/q8 (quant/format.h): a row of W[rows, cols] is cols*bits/32 little-endian uint32
// words; value j of a word sits in bits bits*j .. bits*j+bits-1. Scale and bias planes hold
// [rows, cols/group] f32, f16 or bf16 values: W[r, c] = scale[r, c/G] * q[r, c] + bias[r, c/G].
// Dense weights are row-major f32, f16 or bf16.

// Weight types (spec constant WTYPE; same numbers as vulkan::WeightType in kernels/vulkan/ops.h).
const uint WT_Q4 = 0u;
const uint WT_Q8 = 1u;
const uint WT_F32 = 2u;
const uint WT_F16 = 3u;
const uint WT_BF16 = 4u;
// Scale-plane types (spec constant STYPE).
const uint ST_F32 = 0u;
const uint ST_F16 = 1u;
const uint ST_BF16 = 2u;

// Index of the 32-bit word holding element i of a plane of type t (ST_* numbering).
uint plane_word(uint i, uint t) { return t == ST_F32 ? i : (i >> 1); }

// Element i of such a plane, given the word plane_word(i, t) holds.
float plane_value(uint word, uint i, uint t) {
  if (t == ST_F32) return uintBitsToFloat(word);
  uint h = (i & 1u) != 0u ? (word >> 16) : (word & 0xffffu);
  return t == ST_F16 ? unpackHalf2x16(h).x : uintBitsToFloat(h << 16);
}

// Unsigned field (q & mask) of a word as float, with an integer OR instead of an int->float
// conversion: 0x4B000000 is 2^23 as f32, so OR-ing an integer v < 2^23 into its mantissa gives
// exactly 2^23 + v; subtracting 2^23 is exact. (I2F runs at a quarter of the FMA rate on NVIDIA,
// which would bound a q4 matvec below memory speed; this costs a LOP3 and an FADD.)
float u2f_small(uint v) { return uintBitsToFloat(0x4B000000u | v) - 8388608.0; }

// The 8 nibbles of a q4 word as floats, value j in component j of lo (j < 4) or hi (j >= 4).
void q4_unpack(uint w, out vec4 lo, out vec4 hi) {
  lo = vec4(u2f_small(w & 15u), u2f_small((w >> 4) & 15u), u2f_small((w >> 8) & 15u), u2f_small((w >> 12) & 15u));
  hi = vec4(u2f_small((w >> 16) & 15u), u2f_small((w >> 20) & 15u), u2f_small((w >> 24) & 15u), u2f_small(w >> 28));
}

// The 4 bytes of a q8 word as floats.
vec4 q8_unpack(uint w) {
  return vec4(u2f_small(w & 255u), u2f_small((w >> 8) & 255u), u2f_small((w >> 16) & 255u), u2f_small(w >> 24));
}

// Two bf16 / f16 values of a word (element 2i in .x, 2i+1 in .y).
vec2 bf16x2(uint w) { return vec2(uintBitsToFloat(w << 16), uintBitsToFloat(w & 0xffff0000u)); }
vec2 f16x2(uint w) { return unpackHalf2x16(w); }
