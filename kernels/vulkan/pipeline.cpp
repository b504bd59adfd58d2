#include "kernels/vulkan/pipeline.h"

#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/vulkan/device.h"
#include "shaders/spirv.h"

namespace pensieve::vulkan {

Pipelines::~Pipelines() {
  const VkApi& vk = ctx_.vk();
  VkDevice dev = ctx_.device();
  for (auto& [k, p] : pipelines_) vk.vkDestroyPipeline(dev, p->pipeline, nullptr);
  for (auto& [k, l] : layouts_) {
    vk.vkDestroyPipelineLayout(dev, l.layout, nullptr);
    vk.vkDestroyDescriptorSetLayout(dev, l.set_layout, nullptr);
  }
  for (auto& [k, m] : modules_) vk.vkDestroyShaderModule(dev, m, nullptr);
  if (cache_) vk.vkDestroyPipelineCache(dev, cache_, nullptr);
}

// The cache file starts with the standard header (VkPipelineCacheHeaderVersionOne); data written by
// another device or driver is dropped here rather than trusting every driver to reject it.
static bool cache_matches(const std::vector<uint8_t>& data, const DeviceInfo& d) {
  if (data.size() < 16 + VK_UUID_SIZE) return false;
  uint32_t hdr[4];
  std::memcpy(hdr, data.data(), 16);
  return hdr[0] >= 16 + VK_UUID_SIZE && hdr[1] == VK_PIPELINE_CACHE_HEADER_VERSION_ONE && hdr[2] == d.vendor_id &&
         hdr[3] == d.device_id && std::memcmp(data.data() + 16, d.pipeline_cache_uuid, VK_UUID_SIZE) == 0;
}

Status Pipelines::init(const std::string& cache_path) {
  cache_path_ = cache_path;
  std::vector<uint8_t> data;
  if (!cache_path.empty()) {
    if (FILE* f = std::fopen(cache_path.c_str(), "rb")) {
      uint8_t buf[65536];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
      std::fclose(f);
      if (!cache_matches(data, ctx_.info())) data.clear();
    }
  }
  VkPipelineCacheCreateInfo ci{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
  ci.initialDataSize = data.size();
  ci.pInitialData = data.empty() ? nullptr : data.data();
  PENSIEVE_VK_CHECK(ctx_.vk().vkCreatePipelineCache(ctx_.device(), &ci, nullptr, &cache_));
  return Status::Ok();
}

Status Pipelines::save_cache(const std::string& path) {
  const std::string& p = path.empty() ? cache_path_ : path;
  if (p.empty()) return Status::Ok();
  size_t n = 0;
  PENSIEVE_VK_CHECK(ctx_.vk().vkGetPipelineCacheData(ctx_.device(), cache_, &n, nullptr));
  std::vector<uint8_t> data(n);
  PENSIEVE_VK_CHECK(ctx_.vk().vkGetPipelineCacheData(ctx_.device(), cache_, &n, data.data()));
  std::string tmp = p + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return errorf("vulkan: cannot write pipeline cache %s", tmp.c_str());
  bool ok = std::fwrite(data.data(), 1, n, f) == n;
  ok &= std::fclose(f) == 0;
  if (!ok || std::rename(tmp.c_str(), p.c_str()) != 0) {
    std::remove(tmp.c_str());
    return errorf("vulkan: writing pipeline cache %s failed", p.c_str());
  }
  return Status::Ok();
}

Result<VkShaderModule> Pipelines::module(const std::string& name) {
  if (auto it = modules_.find(name); it != modules_.end()) return it->second;
  const shaders::Spirv* spv = shaders::find_spirv(name.c_str());
  if (!spv) return errorf("vulkan: no embedded shader \"%s\"", name.c_str());
  VkShaderModuleCreateInfo ci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  ci.codeSize = spv->n_words * 4;
  ci.pCode = spv->words;
  VkShaderModule m;
  PENSIEVE_VK_CHECK(ctx_.vk().vkCreateShaderModule(ctx_.device(), &ci, nullptr, &m));
  modules_[name] = m;
  return m;
}

Result<Pipelines::Layout> Pipelines::layout(uint32_t n_buffers, uint32_t push_bytes) {
  auto key = std::make_pair(n_buffers, push_bytes);
  if (auto it = layouts_.find(key); it != layouts_.end()) return it->second;
  const VkApi& vk = ctx_.vk();
  VkDescriptorSetLayoutBinding b[kMaxBindings];
  for (uint32_t i = 0; i < n_buffers; ++i)
    b[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
  VkDescriptorSetLayoutCreateInfo dci{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  dci.bindingCount = n_buffers;
  dci.pBindings = b;
  Layout l;
  PENSIEVE_VK_CHECK(vk.vkCreateDescriptorSetLayout(ctx_.device(), &dci, nullptr, &l.set_layout));
  VkPushConstantRange pr{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes};
  VkPipelineLayoutCreateInfo pci{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  pci.setLayoutCount = 1;
  pci.pSetLayouts = &l.set_layout;
  pci.pushConstantRangeCount = push_bytes ? 1 : 0;
  pci.pPushConstantRanges = &pr;
  VkResult r = vk.vkCreatePipelineLayout(ctx_.device(), &pci, nullptr, &l.layout);
  if (r != VK_SUCCESS) {
    vk.vkDestroyDescriptorSetLayout(ctx_.device(), l.set_layout, nullptr);
    return errorf("vkCreatePipelineLayout: %s", vk_result_name(r));
  }
  layouts_[key] = l;
  return l;
}

Result<const Pipeline*> Pipelines::get(const KernelDesc& desc, std::initializer_list<uint32_t> spec) {
  if (desc.n_buffers > kMaxBindings || desc.push_bytes > 128 || spec.size() > kMaxSpecConstants)
    return errorf("vulkan: kernel %s: bad description", desc.name);
  if (desc.needs_coopmat && !ctx_.coopmat())
    return errorf("vulkan: kernel %s needs VK_NV_cooperative_matrix, which %s lacks", desc.name,
                  ctx_.info().name.c_str());
  std::string shader = desc.name;
  if (desc.subgroup_variant && ctx_.subgroups()) shader += "_sg";
  std::string key = shader + "[";
  for (auto it = spec.begin(); it != spec.end(); ++it) {
    if (it != spec.begin()) key += ',';
    key += std::to_string(*it);
  }
  key += "]";
  if (auto it = pipelines_.find(key); it != pipelines_.end()) return it->second.get();

  auto mod = module(shader);
  if (!mod.ok()) return std::move(mod).take_error();
  auto lay = layout(desc.n_buffers, desc.push_bytes);
  if (!lay.ok()) return std::move(lay).take_error();

  VkSpecializationMapEntry entries[kMaxSpecConstants];
  uint32_t values[kMaxSpecConstants];
  uint32_t n = 0;
  for (uint32_t v : spec) {
    entries[n] = {n, n * 4, 4};
    values[n] = v;
    ++n;
  }
  VkSpecializationInfo si{n, entries, n * 4, values};
  VkComputePipelineCreateInfo ci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = *mod;
  ci.stage.pName = "main";
  ci.stage.pSpecializationInfo = &si;
  ci.layout = lay->layout;
  auto p = std::make_unique<Pipeline>();
  VkResult r = ctx_.vk().vkCreateComputePipelines(ctx_.device(), cache_, 1, &ci, nullptr, &p->pipeline);
  if (r != VK_SUCCESS) return errorf("vulkan: creating pipeline %s: %s", key.c_str(), vk_result_name(r));
  p->desc = &desc;
  p->layout = lay->layout;
  p->set_layout = lay->set_layout;
  p->label = key;
  const Pipeline* out = p.get();
  pipelines_[key] = std::move(p);
  return out;
}

}  // namespace pensieve::vulkan
