// Workgroup reductions of up to RED_MAX floats at once (one barrier round for all of them).
//
// The includer declares, before including:
//   layout(local_size_x_id = 0) in;  layout(constant_id = 0) const uint WG = 64;   (power of two)
//   const uint RED_MAX = <number of values reduced together>;
// and compiles with -DUSE_SUBGROUP for the subgroup variant (needs GL_KHR_shader_subgroup_basic
// and _arithmetic: the host picks that variant only when the device reports both for compute).
// Without it, a shared-memory tree does the same job on any device. Either way every invocation
// receives the totals, and calls must be in uniform control flow (they contain barriers).
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

shared float red_sh[RED_MAX * WG];

#ifdef USE_SUBGROUP
// Subgroup totals, then one partial per subgroup in shared memory summed by everyone.
void wg_reduce(inout float v[RED_MAX], uint nv, bool is_max) {
  for (uint i = 0u; i < nv; ++i) v[i] = is_max ? subgroupMax(v[i]) : subgroupAdd(v[i]);
  if (gl_NumSubgroups == 1u) return;
  if (subgroupElect())
    for (uint i = 0u; i < nv; ++i) red_sh[i * WG + gl_SubgroupID] = v[i];
  barrier();
  for (uint i = 0u; i < nv; ++i) {
    float s = red_sh[i * WG];
    for (uint k = 1u; k < gl_NumSubgroups; ++k) s = is_max ? max(s, red_sh[i * WG + k]) : s + red_sh[i * WG + k];
    v[i] = s;
  }
  barrier();
}
#else
// Tree over shared memory: log2(WG) rounds.
void wg_reduce(inout float v[RED_MAX], uint nv, bool is_max) {
  uint t = gl_LocalInvocationID.x;
  for (uint i = 0u; i < nv; ++i) red_sh[i * WG + t] = v[i];
  barrier();
  for (uint s = WG / 2u; s > 0u; s >>= 1) {
    if (t < s)
      for (uint i = 0u; i < nv; ++i) {
        float a = red_sh[i * WG + t], b = red_sh[i * WG + t + s];
        red_sh[i * WG + t] = is_max ? max(a, b) : a + b;
      }
    barrier();
  }
  for (uint i = 0u; i < nv; ++i) v[i] = red_sh[i * WG];
  barrier();
}
#endif

float wg_sum1(float x) {
  float v[RED_MAX];
  v[0] = x;
  wg_reduce(v, 1u, false);
  return v[0];
}

float wg_max1(float x) {
  float v[RED_MAX];
  v[0] = x;
  wg_reduce(v, 1u, true);
  return v[0];
}
