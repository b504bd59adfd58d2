#version 450
// Benchmark probe: what a grid-wide synchronisation inside one dispatch costs, against a barrier
// between two dispatches (pensieve-vulkan-bench --overhead). Every workgroup runs `rounds` rounds;
// in each, its first invocation publishes the workgroup's writes (memoryBarrierBuffer), counts
// the workgroup in, and polls the counter until all workgroups of the round have. That needs every
// workgroup resident at once: the host launches at most one per multiprocessor, and a poll gives
// up after `max_polls` (Out[1] = 1 then, and the others stop too), so a device that runs them
// otherwise cannot hang.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) coherent buffer Cb { uint count; } C;
layout(binding = 1) coherent buffer Ob { uint Out[]; };

layout(push_constant) uniform Push {
  uint rounds, max_polls;
} pc;

void main() {
  bool gave_up = false;  // only invocation 0 polls
  for (uint r = 0u; r < pc.rounds; ++r) {
    if (gl_LocalInvocationID.x == 0u && !gave_up) {
      Out[2u + gl_WorkGroupID.x] = r;  // something to publish
      memoryBarrierBuffer();
      atomicAdd(C.count, 1u);
      const uint target = (r + 1u) * gl_NumWorkGroups.x;
      uint polls = 0u;
      while (atomicAdd(C.count, 0u) < target) {
        if (++polls > pc.max_polls || Out[1] != 0u) {  // this one or another gave up
          gave_up = true;
          Out[1] = 1u;
          break;
        }
      }
      memoryBarrierBuffer();
    }
    barrier();
  }
}
