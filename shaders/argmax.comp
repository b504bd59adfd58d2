#version 450
// Argmax of each row in ONE dispatch (topk.comp with k = 1 needs two for a vocabulary row: a
// dispatch and the barrier after it cost ~3 us each on the H200, more than the search itself).
// Largest value first, ties to the lower index, NaN never chosen: topk.comp's rule and its
// output (value, index), so either gives the same pair.
//
// Grid: y = rows, one workgroup per row. Invocation i scans elements i, i + WG, ... keeping its
// best (UNR loads requested at once); a shared-memory tree then picks the workgroup's.
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 1024;  // power of two
const uint UNR = 8u;

layout(binding = 0) readonly buffer Vb { float Vin[]; };
layout(binding = 1) writeonly buffer OVb { float Vout[]; };
layout(binding = 2) writeonly buffer OIb { uint Iout[]; };

layout(push_constant) uniform Push {
  uint n;  // elements per row (rows are packed)
} pc;

const float EMPTY_V = -3.402823466e38;
const uint EMPTY_I = 0xffffffffu;

shared float sv[WG];
shared uint si[WG];

bool better(float av, uint ai, float bv, uint bi) { return av > bv || (av == bv && ai < bi); }

void main() {
  const uint tid = gl_LocalInvocationID.x, row = gl_WorkGroupID.y, base = row * pc.n;
  float bv = EMPTY_V;
  uint bi = EMPTY_I;
  for (uint p0 = tid; p0 < pc.n; p0 += UNR * WG) {
    float v[UNR];
    [[unroll]] for (uint j = 0u; j < UNR; ++j) {
      const uint p = p0 + j * WG;
      v[j] = p < pc.n ? Vin[base + p] : EMPTY_V;
    }
    [[unroll]] for (uint j = 0u; j < UNR; ++j) {
      const uint p = p0 + j * WG;
      if (p < pc.n && better(v[j], p, bv, bi)) {
        bv = v[j];
        bi = p;
      }
    }
  }
  sv[tid] = bv;
  si[tid] = bi;
  barrier();
  for (uint s = WG / 2u; s > 0u; s >>= 1) {
    if (tid < s && better(sv[tid + s], si[tid + s], sv[tid], si[tid])) {
      sv[tid] = sv[tid + s];
      si[tid] = si[tid + s];
    }
    barrier();
  }
  if (tid == 0u) {
    Vout[row] = sv[0];
    Iout[row] = si[0];
  }
}
