#version 450
// Top-k of each row (largest values first; ties go to the lower index), so only k (value, index)
// pairs per token cross back to the host. k = 1 is argmax (same tie rule as ops::argmax).
//
// Grid: x = chunks of WG*EPT elements, y = rows. One workgroup finds the k best of its chunk:
// invocation i holds elements c0 + i + WG*e (e < EPT, coalesced) in registers and its own best;
// k rounds of a shared-memory tree reduction pick the workgroup's best, invocation 0 writes it,
// and the invocation that owned it drops it and rescans its EPT elements. Output per chunk: k
// pairs (missing ones: value -FLT_MAX, index 0xffffffff). When a row has several chunks, the host
// runs the shader again over the chunks' candidates (PAIRS = 1) until one chunk remains.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;  // power of two
layout(constant_id = 1) const uint EPT = 8;
layout(constant_id = 2) const uint PAIRS = 0;  // 0: input is values (index = position); 1: (value, index) planes

layout(binding = 0) readonly buffer Vb { float Vin[]; };
layout(binding = 1) readonly buffer Ib { uint Iin[]; };
layout(binding = 2) writeonly buffer OVb { float Vout[]; };
layout(binding = 3) writeonly buffer OIb { uint Iout[]; };

layout(push_constant) uniform Push {
  uint n;           // elements per input row
  uint k;
  uint in_stride;   // elements between input rows
  uint out_stride;  // elements between output rows (>= chunks * k)
} pc;

const float EMPTY_V = -3.402823466e38;
const uint EMPTY_I = 0xffffffffu;

shared float sv[WG];
shared uint si[WG];
shared uint so[WG];  // owner invocation

bool better(float av, uint ai, float bv, uint bi) { return av > bv || (av == bv && ai < bi); }

void main() {
  const uint tid = gl_LocalInvocationID.x, chunk = gl_WorkGroupID.x, row = gl_WorkGroupID.y;
  const uint c0 = chunk * WG * EPT;
  float v[EPT];
  uint ix[EPT];
  for (uint e = 0u; e < EPT; ++e) {
    const uint p = c0 + tid + WG * e;
    if (p < pc.n) {
      v[e] = Vin[row * pc.in_stride + p];
      ix[e] = PAIRS == 1u ? Iin[row * pc.in_stride + p] : p;
      if (ix[e] == EMPTY_I) v[e] = EMPTY_V;
    } else {
      v[e] = EMPTY_V;
      ix[e] = EMPTY_I;
    }
  }
  uint best = 0u;
  for (uint e = 1u; e < EPT; ++e)
    if (better(v[e], ix[e], v[best], ix[best])) best = e;

  const uint obase = row * pc.out_stride + chunk * pc.k;
  for (uint r = 0u; r < pc.k; ++r) {
    sv[tid] = v[best];
    si[tid] = ix[best];
    so[tid] = tid;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
      if (tid < s && better(sv[tid + s], si[tid + s], sv[tid], si[tid])) {
        sv[tid] = sv[tid + s];
        si[tid] = si[tid + s];
        so[tid] = so[tid + s];
      }
      barrier();
    }
    const float wv = sv[0];
    const uint wi = si[0], wo = so[0];
    if (tid == 0u) {
      Vout[obase + r] = wi == EMPTY_I ? EMPTY_V : wv;
      Iout[obase + r] = wi;
    }
    if (tid == wo && wi != EMPTY_I) {  // drop the winner, find this invocation's next best
      v[best] = EMPTY_V;
      ix[best] = EMPTY_I;
      best = 0u;
      for (uint e = 1u; e < EPT; ++e)
        if (better(v[e], ix[e], v[best], ix[best])) best = e;
    }
    barrier();
  }
}
