// Compute pipelines, created lazily from the embedded SPIR-V through one VkPipelineCache.
//
// A kernel is described once by a KernelDesc (its storage-buffer bindings, push-constant size and
// which bindings it writes); a pipeline is that kernel specialised with constant values
// (constant_id i <- spec[i], all 32-bit). Pipelines::get() builds each (kernel, spec) pair on first
// use and keeps it for the Context's lifetime. The cache can be written to disk
// (ContextOptions::pipeline_cache_path) so a second run skips the driver's shader compiler.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/vulkan/loader.h"
#include "tensor/result.h"

namespace pensieve::vulkan {

class Context;

// Spec constant 0 is the workgroup size (local_size_x_id = 0) in every pensieve shader.
inline constexpr int kMaxSpecConstants = 24;
inline constexpr int kMaxBindings = 26;  // decode_layer.comp binds 26

struct KernelDesc {
  const char* name;        // shader name, "rmsnorm" (embedded as shaders/<name>.comp)
  uint32_t n_buffers;      // storage buffers at bindings 0..n_buffers-1 of set 0
  uint32_t push_bytes;     // push-constant block size (<= 128, the minimum every device offers)
  uint32_t write_mask;     // bit i set: binding i is written (CommandList's hazard tracking)
  bool subgroup_variant;   // "<name>_sg" exists: chosen when the Context uses subgroups
  bool needs_coopmat;      // uses GL_NV_cooperative_matrix: only where Context::coopmat()
};

struct Pipeline {
  const KernelDesc* desc = nullptr;
  VkPipeline pipeline = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  std::string label;  // "matvec_sg[64,4,1,0,1,64]": shader variant and spec constants
};

class Pipelines {
 public:
  explicit Pipelines(Context& ctx) : ctx_(ctx) {}
  ~Pipelines();
  Status init(const std::string& cache_path);

  // The pipeline for `desc` specialised with `spec` (constant_id i = spec[i]).
  Result<const Pipeline*> get(const KernelDesc& desc, std::initializer_list<uint32_t> spec);
  // Writes the pipeline cache to `path` (or the path given at init); no-op without a path.
  Status save_cache(const std::string& path = "");
  size_t size() const { return pipelines_.size(); }

 private:
  struct Layout {
    VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
    VkPipelineLayout layout = VK_NULL_HANDLE;
  };
  Result<VkShaderModule> module(const std::string& name);
  void print_stats(const std::string& key, VkPipeline pipeline);
  Result<Layout> layout(uint32_t n_buffers, uint32_t push_bytes);

  Context& ctx_;
  std::string cache_path_;
  VkPipelineCache cache_ = VK_NULL_HANDLE;
  std::map<std::string, VkShaderModule> modules_;
  std::map<std::pair<uint32_t, uint32_t>, Layout> layouts_;
  std::map<std::string, std::unique_ptr<Pipeline>> pipelines_;
};

}  // namespace pensieve::vulkan
