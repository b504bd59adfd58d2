// Instance creation, physical-device queries, device selection and logical-device creation.
#include "kernels/vulkan/device.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "kernels/vulkan/memory.h"
#include "kernels/vulkan/pipeline.h"

namespace pensieve::vulkan {

const char* DeviceInfo::type_name() const {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
  }
}

std::string DeviceInfo::summary() const {
  std::string s = format_str("vulkan:%d %s (%s, Vulkan %u.%u.%u, %.1f GiB, subgroup %u", index, name.c_str(),
                             type_name(), VK_API_VERSION_MAJOR(api_version), VK_API_VERSION_MINOR(api_version),
                             VK_API_VERSION_PATCH(api_version), double(device_local_bytes) / (1 << 30),
                             subgroup_size);
  if (min_subgroup_size != max_subgroup_size) s += format_str(" [%u..%u]", min_subgroup_size, max_subgroup_size);
  if (!subgroup_arithmetic) s += " no-arith";
  if (shader_float16) s += ", fp16";
  if (shader_int8) s += ", int8";
  if (integer_dot_product) s += ", int-dot";
  if (coopmat_nv) s += coopmat_nv_f16_16x16x16 ? ", coopmat-nv" : ", coopmat-nv(no 16x16x16 f16)";
  if (coopmat_khr) s += ", coopmat-khr";
  if (sm_count) s += format_str(", %u SMs", sm_count);
  if (unified_memory) s += ", unified memory";
  return s + ")";
}

namespace {

bool has_ext(const std::vector<VkExtensionProperties>& exts, const char* name) {
  for (const auto& e : exts)
    if (std::strcmp(e.extensionName, name) == 0) return true;
  return false;
}

std::vector<VkExtensionProperties> device_extensions(const VkApi& vk, VkPhysicalDevice pd) {
  uint32_t n = 0;
  vk.vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> exts(n);
  vk.vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, exts.data());
  exts.resize(n);
  return exts;
}

// Everything DeviceInfo holds, from properties, features, memory and queue queries.
DeviceInfo query_device(const VkApi& vk, VkPhysicalDevice pd, int index) {
  DeviceInfo d;
  d.index = index;
  auto exts = device_extensions(vk, pd);

  VkPhysicalDeviceSubgroupProperties sg{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceSubgroupSizeControlProperties sgc{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES};
  VkPhysicalDeviceProperties2 props{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  props.pNext = &sg;
  VkPhysicalDeviceProperties base;
  vk.vkGetPhysicalDeviceProperties(pd, &base);
  bool sgc_ext = base.apiVersion >= VK_API_VERSION_1_3 || has_ext(exts, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
  if (sgc_ext) sg.pNext = &sgc;
  VkPhysicalDeviceShaderSMBuiltinsPropertiesNV sms{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV};
  const bool sms_ext = has_ext(exts, VK_NV_SHADER_SM_BUILTINS_EXTENSION_NAME);
  if (sms_ext) {
    sms.pNext = props.pNext;
    props.pNext = &sms;
  }
  vk.vkGetPhysicalDeviceProperties2(pd, &props);
  d.sm_count = sms_ext ? sms.shaderSMCount : 0;
  const VkPhysicalDeviceLimits& lim = props.properties.limits;
  d.name = props.properties.deviceName;
  d.type = props.properties.deviceType;
  d.api_version = props.properties.apiVersion;
  d.driver_version = props.properties.driverVersion;
  d.vendor_id = props.properties.vendorID;
  d.device_id = props.properties.deviceID;
  std::memcpy(d.pipeline_cache_uuid, props.properties.pipelineCacheUUID, VK_UUID_SIZE);
  d.subgroup_size = sg.subgroupSize;
  d.min_subgroup_size = sgc_ext && sgc.minSubgroupSize ? sgc.minSubgroupSize : sg.subgroupSize;
  d.max_subgroup_size = sgc_ext && sgc.maxSubgroupSize ? sgc.maxSubgroupSize : sg.subgroupSize;
  bool compute_sg = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0;
  d.subgroup_basic = compute_sg && (sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT);
  d.subgroup_arithmetic = compute_sg && (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
  d.subgroup_shuffle = compute_sg && (sg.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT);
  d.max_shared_memory = lim.maxComputeSharedMemorySize;
  d.max_storage_buffers = lim.maxPerStageDescriptorStorageBuffers;
  d.max_workgroup_invocations = lim.maxComputeWorkGroupInvocations;
  for (int i = 0; i < 3; ++i) d.max_workgroup_count[i] = lim.maxComputeWorkGroupCount[i];
  d.max_storage_buffer_range = lim.maxStorageBufferRange;
  d.min_storage_buffer_offset_alignment = lim.minStorageBufferOffsetAlignment;
  d.non_coherent_atom_size = lim.nonCoherentAtomSize;

  // Features (Vulkan 1.1/1.2 structs; the device must be 1.2+ to be used at all).
  VkPhysicalDeviceVulkan11Features f11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceCooperativeMatrixFeaturesNV fcm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  VkPhysicalDeviceShaderIntegerDotProductFeatures fdot{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES};
  VkPhysicalDeviceFeatures2 feats{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  bool is12 = d.api_version >= VK_API_VERSION_1_2;
  bool cm_ext = has_ext(exts, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
  bool dot_ext = d.api_version >= VK_API_VERSION_1_3 || has_ext(exts, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
  void** next = &feats.pNext;
  if (is12) {
    *next = &f11;
    f11.pNext = &f12;
    next = &f12.pNext;
  }
  if (cm_ext) {
    *next = &fcm;
    next = &fcm.pNext;
  }
  if (dot_ext) {
    *next = &fdot;
    next = &fdot.pNext;
  }
  vk.vkGetPhysicalDeviceFeatures2(pd, &feats);
  d.shader_float16 = is12 && f12.shaderFloat16;
  d.shader_int8 = is12 && f12.shaderInt8;
  d.storage_16bit = is12 && f11.storageBuffer16BitAccess;
  d.storage_8bit = is12 && f12.storageBuffer8BitAccess;
  d.integer_dot_product = dot_ext && fdot.shaderIntegerDotProduct;
  d.coopmat_nv = cm_ext && fcm.cooperativeMatrix && vk.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV;
  d.coopmat_khr = has_ext(exts, "VK_KHR_cooperative_matrix");
  d.subgroup_size_control = sgc_ext;
  if (d.coopmat_nv) {
    uint32_t n = 0;
    vk.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(pd, &n, nullptr);
    std::vector<VkCooperativeMatrixPropertiesNV> cm(n, {VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV});
    vk.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(pd, &n, cm.data());
    for (const auto& p : cm)
      if (p.MSize == 16 && p.KSize == 16 && (p.NSize == 16 || p.NSize == 8) && p.AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
          p.BType == VK_COMPONENT_TYPE_FLOAT16_NV && p.CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
          p.DType == VK_COMPONENT_TYPE_FLOAT32_NV && p.scope == VK_SCOPE_SUBGROUP_NV)
        (p.NSize == 16 ? d.coopmat_nv_f16_16x16x16 : d.coopmat_nv_f16_16x8x16) = true;
  }

  VkPhysicalDeviceMemoryProperties mp;
  vk.vkGetPhysicalDeviceMemoryProperties(pd, &mp);
  for (uint32_t h = 0; h < mp.memoryHeapCount; ++h)
    if (mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) d.device_local_bytes += mp.memoryHeaps[h].size;
  for (uint32_t t = 0; t < mp.memoryTypeCount; ++t) {
    VkMemoryPropertyFlags f = mp.memoryTypes[t].propertyFlags;
    if ((f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) && (f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT))
      d.host_visible_device_local_bytes =
          std::max<uint64_t>(d.host_visible_device_local_bytes, mp.memoryHeaps[mp.memoryTypes[t].heapIndex].size);
  }
  // Unified: the host maps the device-local memory directly (integrated GPUs, Apple, CPU
  // devices). Discrete GPUs with resizable BAR also expose such a type; they still get staging
  // uploads, because writes through the PCIe BAR are slower than one DMA copy.
  d.unified_memory = d.type != VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU && d.host_visible_device_local_bytes > 0 &&
                     d.host_visible_device_local_bytes * 2 >= d.device_local_bytes;

  // The first queue family with compute; prefer one that also has timestamps.
  uint32_t nq = 0;
  vk.vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> qf(nq);
  vk.vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf.data());
  int best = -1;
  for (uint32_t i = 0; i < nq; ++i) {
    if (!(qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
    if (best < 0 || (qf[best].timestampValidBits == 0 && qf[i].timestampValidBits > 0)) best = int(i);
  }
  d.queue_family = best < 0 ? UINT32_MAX : uint32_t(best);
  if (best >= 0 && qf[best].timestampValidBits > 0) d.timestamp_period_ns = lim.timestampPeriod;
  return d;
}

Status create_instance(VkApi& vk, VkInstance* out) {
  PENSIEVE_TRY(vk.load_library());
  uint32_t loader_version = VK_API_VERSION_1_0;
  if (vk.vkEnumerateInstanceVersion) vk.vkEnumerateInstanceVersion(&loader_version);
  if (loader_version < VK_API_VERSION_1_2)
    return errorf("vulkan: loader supports Vulkan %u.%u, need 1.2", VK_API_VERSION_MAJOR(loader_version),
                  VK_API_VERSION_MINOR(loader_version));

  uint32_t n = 0;
  vk.vkEnumerateInstanceExtensionProperties(nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> exts(n);
  vk.vkEnumerateInstanceExtensionProperties(nullptr, &n, exts.data());
  std::vector<const char*> enable;
  VkInstanceCreateFlags flags = 0;
  if (has_ext(exts, VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {  // MoltenVK lists devices only with it
    enable.push_back(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME);
    flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
  }
  // PENSIEVE_VK_VALIDATION=1 turns on the Khronos validation layer when it is installed
  // (Debian: vulkan-validationlayers); its messages go to stdout.
  std::vector<const char*> layers;
  const char* val = std::getenv("PENSIEVE_VK_VALIDATION");
  if (val && *val && *val != '0') {
    vk.vkEnumerateInstanceLayerProperties(&n, nullptr);
    std::vector<VkLayerProperties> lp(n);
    vk.vkEnumerateInstanceLayerProperties(&n, lp.data());
    bool found = false;
    for (auto& l : lp) found |= std::strcmp(l.layerName, "VK_LAYER_KHRONOS_validation") == 0;
    if (found) layers.push_back("VK_LAYER_KHRONOS_validation");
    else std::fprintf(stderr, "vulkan: PENSIEVE_VK_VALIDATION set but VK_LAYER_KHRONOS_validation is not installed\n");
  }

  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "pensieve";
  app.pEngineName = "pensieve";
  app.apiVersion = VK_API_VERSION_1_2;
  VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ci.flags = flags;
  ci.pApplicationInfo = &app;
  ci.enabledExtensionCount = uint32_t(enable.size());
  ci.ppEnabledExtensionNames = enable.data();
  ci.enabledLayerCount = uint32_t(layers.size());
  ci.ppEnabledLayerNames = layers.data();
  VkResult r = vk.vkCreateInstance(&ci, nullptr, out);
  if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
    return errorf("vulkan: the loader found no Vulkan driver (vkCreateInstance: %s); install one (Debian: "
                  "mesa-vulkan-drivers for lavapipe, or the GPU vendor's driver) or set VK_DRIVER_FILES",
                  vk_result_name(r));
  if (r != VK_SUCCESS) return errorf("vulkan: vkCreateInstance failed: %s", vk_result_name(r));
  Status st = vk.load_instance(*out);
  if (!st.ok()) {
    if (vk.vkDestroyInstance) vk.vkDestroyInstance(*out, nullptr);
    *out = VK_NULL_HANDLE;
  }
  return st;
}

Result<std::vector<VkPhysicalDevice>> physical_devices(const VkApi& vk, VkInstance inst) {
  uint32_t n = 0;
  PENSIEVE_VK_CHECK(vk.vkEnumeratePhysicalDevices(inst, &n, nullptr));
  std::vector<VkPhysicalDevice> pds(n);
  PENSIEVE_VK_CHECK(vk.vkEnumeratePhysicalDevices(inst, &n, pds.data()));
  pds.resize(n);
  return pds;
}

// Why a device cannot run pensieve's shaders, or "" if it can.
std::string unusable_reason(const DeviceInfo& d) {
  if (d.api_version < VK_API_VERSION_1_2) return "needs Vulkan 1.2";
  if (d.queue_family == UINT32_MAX) return "no compute queue";
  if (d.max_workgroup_invocations < 256) return "fewer than 256 invocations per workgroup";
  if (d.max_shared_memory < 16384) return "less than 16 KiB shared memory";
  return "";
}

int type_rank(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_OTHER: return 3;
    default: return 4;  // CPU
  }
}

}  // namespace

Result<std::vector<DeviceInfo>> Context::list_devices() {
  VkApi vk;
  VkInstance inst = VK_NULL_HANDLE;
  PENSIEVE_TRY(create_instance(vk, &inst));
  auto pds = physical_devices(vk, inst);
  std::vector<DeviceInfo> out;
  if (pds.ok())
    for (size_t i = 0; i < pds->size(); ++i) out.push_back(query_device(vk, (*pds)[i], int(i)));
  vk.vkDestroyInstance(inst, nullptr);
  vk.unload();
  if (!pds.ok()) return std::move(pds).take_error();
  return out;
}

Result<std::unique_ptr<Context>> Context::create(const ContextOptions& opt) {
  std::unique_ptr<Context> ctx(new Context());
  PENSIEVE_TRY(ctx->init(opt));
  return ctx;
}

Status Context::init(const ContextOptions& opt) {
  opt_ = opt;
  std::string_view spec = opt.device;
  int want_index = -1;
  bool must_be_gpu = false;
  if (spec == "auto" || spec.empty()) {
  } else if (spec == "vulkan") {
    must_be_gpu = true;
  } else if (spec.substr(0, 7) == "vulkan:") {
    std::string num(spec.substr(7));
    char* end = nullptr;
    long v = std::strtol(num.c_str(), &end, 10);
    if (num.empty() || *end || v < 0) return errorf("vulkan: bad device \"%s\", expected vulkan:N", opt.device.c_str());
    want_index = int(v);
  } else {
    return errorf("vulkan: device \"%s\" is not a Vulkan device (expected auto, vulkan or vulkan:N)",
                  opt.device.c_str());
  }

  PENSIEVE_TRY(create_instance(vk_, &instance_));
  auto pds = physical_devices(vk_, instance_);
  if (!pds.ok()) return std::move(pds).take_error();
  std::vector<DeviceInfo> infos;
  for (size_t i = 0; i < pds->size(); ++i) infos.push_back(query_device(vk_, (*pds)[i], int(i)));
  std::string listing;
  for (auto& d : infos) listing += format_str("\n  %s", d.summary().c_str());

  int chosen = -1;
  if (want_index >= 0) {
    if (want_index >= int(infos.size()))
      return errorf("vulkan: no device vulkan:%d (%zu found)%s", want_index, infos.size(), listing.c_str());
    std::string why = unusable_reason(infos[size_t(want_index)]);
    if (!why.empty()) return errorf("vulkan: device vulkan:%d cannot be used: %s", want_index, why.c_str());
    chosen = want_index;
  } else {
    for (auto& d : infos) {
      if (!unusable_reason(d).empty()) continue;
      if (d.is_cpu() && (must_be_gpu || !opt.allow_cpu_device)) continue;
      if (chosen < 0 || type_rank(d.type) < type_rank(infos[size_t(chosen)].type) ||
          (type_rank(d.type) == type_rank(infos[size_t(chosen)].type) &&
           d.device_local_bytes > infos[size_t(chosen)].device_local_bytes))
        chosen = d.index;
    }
    if (chosen < 0)
      return errorf("vulkan: no usable GPU (%zu device%s found; a CPU device is used only when named as "
                    "vulkan:N)%s",
                    infos.size(), infos.size() == 1 ? "" : "s", listing.c_str());
  }
  info_ = infos[size_t(chosen)];
  phys_ = (*pds)[size_t(chosen)];
  vk_.vkGetPhysicalDeviceMemoryProperties(phys_, &mem_props_);

  // Logical device: one compute queue, and the optional features pensieve's shaders use.
  auto exts = device_extensions(vk_, phys_);
  std::vector<const char*> enable;
  VkPhysicalDeviceVulkan11Features f11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceCooperativeMatrixFeaturesNV fcm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  VkPhysicalDeviceFeatures2 feats{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  feats.pNext = &f11;
  f11.pNext = &f12;
  f11.storageBuffer16BitAccess = info_.storage_16bit;
  f12.shaderFloat16 = info_.shader_float16;
  f12.shaderInt8 = info_.shader_int8;
  f12.storageBuffer8BitAccess = info_.storage_8bit;
  if (info_.coopmat_nv && opt.use_coopmat) {
    enable.push_back(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
    fcm.cooperativeMatrix = VK_TRUE;
    f12.pNext = &fcm;
  } else {
    info_.coopmat_nv = info_.coopmat_nv_f16_16x16x16 = info_.coopmat_nv_f16_16x8x16 = false;
  }
  // Integer dot products (mvq4_dot_sg): through the extension, which NVIDIA also lists on 1.3.
  VkPhysicalDeviceShaderIntegerDotProductFeatures fdot{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES};
  if (info_.integer_dot_product && has_ext(exts, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME)) {
    enable.push_back(VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
    fdot.shaderIntegerDotProduct = VK_TRUE;
    fdot.pNext = feats.pNext;
    feats.pNext = &fdot;
  } else {
    info_.integer_dot_product = false;
  }
  if (has_ext(exts, "VK_KHR_portability_subset")) enable.push_back("VK_KHR_portability_subset");
  // PENSIEVE_VK_PIPELINE_STATS=1 (tuning aid): the driver's compiler statistics of every pipeline
  // (registers, shared and local memory, ...) are printed to stderr as it is created.
  VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR fpe{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR};
  const char* stats_env = std::getenv("PENSIEVE_VK_PIPELINE_STATS");
  if (stats_env && *stats_env && *stats_env != '0' && has_ext(exts, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME)) {
    enable.push_back(VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);
    fpe.pipelineExecutableInfo = VK_TRUE;
    fpe.pNext = feats.pNext;
    feats.pNext = &fpe;
    pipeline_stats_ = true;
  }

  float prio = 1.0f;
  VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qci.queueFamilyIndex = info_.queue_family;
  qci.queueCount = 1;
  qci.pQueuePriorities = &prio;
  VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  dci.pNext = &feats;
  dci.queueCreateInfoCount = 1;
  dci.pQueueCreateInfos = &qci;
  dci.enabledExtensionCount = uint32_t(enable.size());
  dci.ppEnabledExtensionNames = enable.data();
  PENSIEVE_VK_CHECK(vk_.vkCreateDevice(phys_, &dci, nullptr, &device_));
  PENSIEVE_TRY(vk_.load_device(device_));
  vk_.vkGetDeviceQueue(device_, info_.queue_family, 0, &queue_);

  VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT | VK_COMMAND_POOL_CREATE_TRANSIENT_BIT;
  pci.queueFamilyIndex = info_.queue_family;
  PENSIEVE_VK_CHECK(vk_.vkCreateCommandPool(device_, &pci, nullptr, &one_shot_pool_));
  VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  PENSIEVE_VK_CHECK(vk_.vkCreateFence(device_, &fci, nullptr, &one_shot_fence_));

  pipelines_ = std::make_unique<Pipelines>(*this);
  PENSIEVE_TRY(pipelines_->init(opt.pipeline_cache_path));
  return Status::Ok();
}

Context::~Context() {
  // Explicit order: wait for the GPU, then everything made from the device, then the device, the
  // instance and the loader library.
  if (device_) vk_.vkDeviceWaitIdle(device_);
  pipelines_.reset();
  staging_.reset();
  splitk_partials_.reset();
  splitk_counters_.reset();
  if (one_shot_fence_) vk_.vkDestroyFence(device_, one_shot_fence_, nullptr);
  if (one_shot_pool_) vk_.vkDestroyCommandPool(device_, one_shot_pool_, nullptr);
  if (device_) vk_.vkDestroyDevice(device_, nullptr);
  if (instance_) vk_.vkDestroyInstance(instance_, nullptr);
  vk_.unload();
}

Result<VkCommandBuffer> Context::begin_one_shot() {
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = one_shot_pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  VkCommandBuffer cb;
  PENSIEVE_VK_CHECK(vk_.vkAllocateCommandBuffers(device_, &ai, &cb));
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  VkResult r = vk_.vkBeginCommandBuffer(cb, &bi);
  if (r != VK_SUCCESS) {
    vk_.vkFreeCommandBuffers(device_, one_shot_pool_, 1, &cb);
    return errorf("vkBeginCommandBuffer: %s", vk_result_name(r));
  }
  return cb;
}

Status Context::end_one_shot(VkCommandBuffer cb) {
  VkResult r = vk_.vkEndCommandBuffer(cb);
  if (r == VK_SUCCESS) {
    VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cb;
    r = vk_.vkQueueSubmit(queue_, 1, &si, one_shot_fence_);
    if (r == VK_SUCCESS) r = vk_.vkWaitForFences(device_, 1, &one_shot_fence_, VK_TRUE, UINT64_MAX);
    vk_.vkResetFences(device_, 1, &one_shot_fence_);
  }
  vk_.vkFreeCommandBuffers(device_, one_shot_pool_, 1, &cb);
  if (r != VK_SUCCESS) return errorf("vulkan: one-shot submission failed: %s", vk_result_name(r));
  return Status::Ok();
}

}  // namespace pensieve::vulkan
