// RoPE applied while loading a head (decode_layer.comp, attn_dec4.comp), the same arithmetic as
// rope_store.comp: dim d of the rotated head at Q[base], rotate-half pairs (j, j + half) over the
// first 2 half dims, the token's cos / sin at Cs[cs + j] / Sn[cs + j], half = pc.half_rot.
// The includer declares Q, Cs, Sn and pc.half_rot.
float rope_dim(uint base, uint cs, uint d) {
  const uint h = pc.half_rot;
  if (d < h) return Q[base + d] * Cs[cs + d] - Q[base + d + h] * Sn[cs + d];
  if (d < 2u * h) return Q[base + d] * Cs[cs + d - h] + Q[base + d - h] * Sn[cs + d - h];
  return Q[base + d];
}
