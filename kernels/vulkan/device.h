// Vulkan instance, device selection and capabilities, and the Context every other part uses.
//
// Device choice (the CLI's --device): "auto" prefers a discrete GPU, then an integrated one, then
// a virtual one; CPU implementations (lavapipe/llvmpipe, SwiftShader) only when asked for by index
// ("vulkan:N", N as listed by list_devices()) or with ContextOptions::allow_cpu_device (tests).
// "vulkan" is "auto" that must find a GPU. "cpu" is not a Vulkan device: the caller keeps its CPU
// backend. A missing loader, no usable device, or a failed start returns an Error (never aborts):
// callers print it and fall back to the CPU backend.
//
// Objects are destroyed in an explicit order by ~Context (pipelines, pools, staging, device,
// instance, loader); every Buffer and CommandList a Context made must be destroyed before it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/vulkan/loader.h"
#include "kernels/vulkan/memory.h"
#include "tensor/result.h"

namespace pensieve::vulkan {

class Pipelines;
class Buffer;

// What a physical device can do, as far as pensieve's shaders care.
struct DeviceInfo {
  int index = -1;  // position in vkEnumeratePhysicalDevices order ("vulkan:N")
  std::string name;
  VkPhysicalDeviceType type = VK_PHYSICAL_DEVICE_TYPE_OTHER;
  uint32_t api_version = 0, driver_version = 0, vendor_id = 0, device_id = 0;

  // Subgroups in compute shaders. The size may vary between min and max on some GPUs (Intel):
  // shaders never assume it, they read gl_SubgroupSize.
  uint32_t subgroup_size = 0, min_subgroup_size = 0, max_subgroup_size = 0;
  bool subgroup_basic = false, subgroup_arithmetic = false, subgroup_shuffle = false;
  bool subgroup_size_control = false;

  // 16-/8-bit types. The portable shaders need none of these (they unpack halves from 32-bit
  // words); the cooperative-matrix path needs shader_float16.
  bool shader_float16 = false, shader_int8 = false, storage_16bit = false, storage_8bit = false;
  bool integer_dot_product = false;  // VK_KHR_shader_integer_dot_product (feature on)
  bool coopmat_nv = false;           // VK_NV_cooperative_matrix, feature on
  bool coopmat_nv_f16_16x16x16 = false;  // ... and it lists f16 x f16 + f32 at 16x16x16, subgroup scope
  bool coopmat_nv_f16_16x8x16 = false;   // ... and at 16x8x16 (M x N x K)
  bool coopmat_khr = false;          // VK_KHR_cooperative_matrix present (no shader uses it yet)
  uint32_t sm_count = 0;             // multiprocessors (VK_NV_shader_sm_builtins); 0: not reported

  // Memory.
  uint64_t device_local_bytes = 0;           // sum of DEVICE_LOCAL heaps
  uint64_t host_visible_device_local_bytes = 0;  // largest heap with a DEVICE_LOCAL|HOST_VISIBLE type
  bool unified_memory = false;  // integrated/CPU device whose device-local memory the host maps

  // Limits the op recorders check.
  uint32_t max_shared_memory = 0, max_workgroup_invocations = 0;
  uint32_t max_storage_buffers = 0;  // per shader stage
  uint32_t max_workgroup_count[3] = {0, 0, 0};
  uint64_t max_storage_buffer_range = 0;
  uint64_t min_storage_buffer_offset_alignment = 0;
  uint64_t non_coherent_atom_size = 0;
  float timestamp_period_ns = 0;  // 0: no timestamps on the compute queue
  uint32_t queue_family = 0;
  uint8_t pipeline_cache_uuid[VK_UUID_SIZE] = {};

  const char* type_name() const;  // "discrete", "integrated", "virtual", "cpu", "other"
  bool is_cpu() const { return type == VK_PHYSICAL_DEVICE_TYPE_CPU; }
  // One line: "NVIDIA H100 80GB HBM3 (discrete, Vulkan 1.3.289, 79.6 GiB, subgroup 32, coopmat-nv)".
  std::string summary() const;
};

struct ContextOptions {
  std::string device = "auto";    // "auto" | "vulkan" | "vulkan:N"
  bool allow_cpu_device = false;  // let "auto" pick a CPU implementation when nothing else exists
  bool use_subgroups = true;      // false: shared-memory reductions even where subgroups exist
  bool use_coopmat = true;        // false: never use cooperative-matrix shaders
  bool profile = false;           // CommandLists write timestamps around each dispatch
  std::string pipeline_cache_path;  // read at start and written by Pipelines::save_cache()
};

// Memory in use, by kind (bytes currently allocated through this Context).
struct MemoryUse {
  uint64_t device = 0;  // device-local (weights, KV, activations)
  uint64_t host = 0;    // host-visible staging and readback
  uint64_t peak_device = 0;
};

class Context {
 public:
  // Every device the loader lists (CPU ones included), with capabilities. Error if no loader.
  static Result<std::vector<DeviceInfo>> list_devices();
  static Result<std::unique_ptr<Context>> create(const ContextOptions& opt = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const VkApi& vk() const { return vk_; }
  VkDevice device() const { return device_; }
  VkQueue queue() const { return queue_; }
  const DeviceInfo& info() const { return info_; }
  const ContextOptions& options() const { return opt_; }
  Pipelines& pipelines() { return *pipelines_; }
  bool subgroups() const { return opt_.use_subgroups && info_.subgroup_basic && info_.subgroup_arithmetic; }
  bool coopmat() const { return opt_.use_coopmat && info_.coopmat_nv_f16_16x16x16 && info_.shader_float16; }
  // Pipelines are created with compiler statistics, printed to stderr (PENSIEVE_VK_PIPELINE_STATS).
  bool pipeline_stats() const { return pipeline_stats_ && vk_.vkGetPipelineExecutableStatisticsKHR; }

  // Memory bookkeeping (memory.cpp).
  const MemoryUse& memory_use() const { return mem_use_; }
  uint32_t memory_type(uint32_t type_bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid = 0) const;
  void count_alloc(bool device, uint64_t bytes, int sign);

  // Copies between host memory and a device buffer, through the staging buffer when the buffer
  // is not host-visible (one short submission per chunk; for setup and tests, not for decode).
  Status upload(const Buffer& dst, uint64_t offset, const void* src, uint64_t bytes);
  Status download(void* dst, const Buffer& src, uint64_t offset, uint64_t bytes);

  // A one-off command buffer, submitted and waited for (uploads, tests).
  Result<VkCommandBuffer> begin_one_shot();
  Status end_one_shot(VkCommandBuffer cb);

  // Split-K scratch of the q4 tensor-core matmul (shaders/mmq4_coop.comp): partial tiles and one
  // arrival counter per output tile, zeroed once (every dispatch leaves them zero). Made on first
  // use at a fixed size and never moved, so recorded command buffers that bind them stay valid.
  static constexpr uint64_t kSplitKPartialBytes = 64ull << 20;
  static constexpr uint64_t kSplitKCounters = 1u << 16;
  struct SplitKScratch {
    BufferSlice partials, counters;
  };
  Result<SplitKScratch> splitk_scratch();
  // Whether the f16 cooperative matrices hold their elements as mmq4_coop.comp's AFRAG variant
  // builds them: ops::matmul runs shaders/coop_probe.comp once and keeps the answer here
  // (-1: not probed yet, 0: no, 1: yes).
  int& coop_frag_probe() { return coop_frag_probe_; }

 private:
  Context() = default;
  Status init(const ContextOptions& opt);
  Status ensure_staging(uint64_t bytes);

  ContextOptions opt_;
  VkApi vk_;
  VkInstance instance_ = VK_NULL_HANDLE;
  VkPhysicalDevice phys_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  DeviceInfo info_;
  VkPhysicalDeviceMemoryProperties mem_props_{};
  MemoryUse mem_use_;
  bool pipeline_stats_ = false;

  std::unique_ptr<Pipelines> pipelines_;
  VkCommandPool one_shot_pool_ = VK_NULL_HANDLE;
  VkFence one_shot_fence_ = VK_NULL_HANDLE;
  std::unique_ptr<Buffer> staging_;
  std::unique_ptr<Buffer> splitk_partials_, splitk_counters_;
  int coop_frag_probe_ = -1;
};

}  // namespace pensieve::vulkan
