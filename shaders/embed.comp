#version 450
// Embedding lookup: out[t, :] = dequantized row ids[t] of the table (q4/q8 MLX affine or dense).
//
// Grid: x = ceil(units / WG), y = tokens. One invocation writes one unit of the row: a q4 word
// (8 values), a q8 word (4 values) or one dense value. Ids are validated by the host; an id
// outside [0, rows) writes zeros rather than reading outside the table.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 3) const uint WTYPE = 0;
layout(constant_id = 4) const uint STYPE = 1;
layout(constant_id = 5) const uint GROUP = 64;
#include "quant.glsl"

layout(binding = 0) readonly buffer Ib { int ids[]; };
layout(binding = 1) readonly buffer Wb { uint W[]; };
layout(binding = 2) readonly buffer Sb { uint S[]; };
layout(binding = 3) readonly buffer Bb { uint B[]; };
layout(binding = 4) writeonly buffer Ob { float O[]; };

layout(push_constant) uniform Push {
  uint rows, cols;
  uint row_words;       // quantized: words per row
  uint groups_per_row;  // quantized
} pc;

void main() {
  const uint t = gl_WorkGroupID.y, u = gl_GlobalInvocationID.x;
  const int id = ids[t];
  const bool ok = id >= 0 && uint(id) < pc.rows;
  const uint row = ok ? uint(id) : 0u;
  const uint obase = t * pc.cols;
  if (WTYPE == WT_Q4 || WTYPE == WT_Q8) {
    if (u >= pc.row_words) return;
    const uint per = WTYPE == WT_Q4 ? 8u : 4u, c0 = u * per;
    const uint gi = row * pc.groups_per_row + c0 / GROUP;
    const float s = plane_value(S[plane_word(gi, STYPE)], gi, STYPE);
    const float b = plane_value(B[plane_word(gi, STYPE)], gi, STYPE);
    const uint w = W[row * pc.row_words + u];
    if (WTYPE == WT_Q4) {
      vec4 lo, hi;
      q4_unpack(w, lo, hi);
      for (uint j = 0u; j < 4u; ++j) {
        O[obase + c0 + j] = ok ? lo[j] * s + b : 0.0;
        O[obase + c0 + 4u + j] = ok ? hi[j] * s + b : 0.0;
      }
    } else {
      const vec4 q = q8_unpack(w);
      for (uint j = 0u; j < 4u; ++j) O[obase + c0 + j] = ok ? q[j] * s + b : 0.0;
    }
  } else {
    if (u >= pc.cols) return;
    const uint e = row * pc.cols + u;
    float v;
    if (WTYPE == WT_F32) v = uintBitsToFloat(W[e]);
    else {
      const uint word = W[e >> 1];
      const uint h = (e & 1u) != 0u ? (word >> 16) : (word & 0xffffu);
      v = WTYPE == WT_F16 ? unpackHalf2x16(h).x : uintBitsToFloat(h << 16);
    }
    O[obase + u] = ok ? v : 0.0;
  }
}
