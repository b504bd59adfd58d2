#version 450
// Where a 16 x 16 f16 cooperative matrix keeps its elements: one subgroup loads the matrix whose
// element (r, c) is r * 16 + c (row-major) and writes what each invocation holds, element by
// element: Out[lane * length + e] = element e of lane, Out[256] = length. The layout is
// implementation-defined (GL_NV_cooperative_matrix); mmq4_coop.comp's AFRAG variant builds its
// weight fragments in registers for one layout (NVIDIA's mma A operand) and the host uses it only
// where this probe finds that layout (kernels/vulkan/ops_matmul.cpp).
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require

layout(local_size_x_id = 0) in;
layout(binding = 0) readonly buffer Mb { float16_t M[]; };
layout(binding = 1) writeonly buffer Ob { uint Out[]; };

void main() {
  fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> a;
  coopMatLoadNV(a, M, 0, 16, false);
  const uint lane = gl_SubgroupInvocationID, len = uint(a.length());
  for (uint e = 0u; e < len; ++e) Out[lane * len + e] = uint(float(a[e]));
  if (lane == 0u) Out[256] = len;
}
