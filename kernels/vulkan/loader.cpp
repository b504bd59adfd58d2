#include "kernels/vulkan/loader.h"

#include <dlfcn.h>

#include <cstdlib>

namespace pensieve::vulkan {

Status VkApi::load_library() {
  if (lib) return Status::Ok();
  const char* forced = std::getenv("PENSIEVE_VULKAN_LIBRARY");
#if defined(__APPLE__)
  const char* names[] = {"libvulkan.1.dylib", "libMoltenVK.dylib"};
#else
  const char* names[] = {"libvulkan.so.1", "libvulkan.so"};
#endif
  std::string tried;
  if (forced && *forced) {
    lib = dlopen(forced, RTLD_NOW | RTLD_LOCAL);
    tried = forced;
  } else {
    for (const char* n : names) {
      lib = dlopen(n, RTLD_NOW | RTLD_LOCAL);
      if (lib) break;
      tried += tried.empty() ? n : std::string(", ") + n;
    }
  }
  if (!lib) return errorf("vulkan: no Vulkan loader library (tried %s): install libvulkan1", tried.c_str());
  vkGetInstanceProcAddr = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(lib, "vkGetInstanceProcAddr"));
  if (!vkGetInstanceProcAddr) {
    unload();
    return errorf("vulkan: %s has no vkGetInstanceProcAddr", tried.c_str());
  }
#define PENSIEVE_VK_LOAD(name)                                                                \
  name = reinterpret_cast<PFN_##name>(vkGetInstanceProcAddr(VK_NULL_HANDLE, #name));          \
  if (!name && std::string_view(#name) != "vkEnumerateInstanceVersion")                       \
    return errorf("vulkan: loader lacks %s", #name);
  PENSIEVE_VK_GLOBAL_FNS(PENSIEVE_VK_LOAD)
#undef PENSIEVE_VK_LOAD
  return Status::Ok();
}

Status VkApi::load_instance(VkInstance instance) {
#define PENSIEVE_VK_LOAD(name)                                                   \
  name = reinterpret_cast<PFN_##name>(vkGetInstanceProcAddr(instance, #name));   \
  if (!name) return errorf("vulkan: instance lacks %s", #name);
  PENSIEVE_VK_INSTANCE_FNS(PENSIEVE_VK_LOAD)
#undef PENSIEVE_VK_LOAD
#define PENSIEVE_VK_LOAD_OPT(name) name = reinterpret_cast<PFN_##name>(vkGetInstanceProcAddr(instance, #name));
  PENSIEVE_VK_INSTANCE_OPT_FNS(PENSIEVE_VK_LOAD_OPT)
#undef PENSIEVE_VK_LOAD_OPT
  return Status::Ok();
}

Status VkApi::load_device(VkDevice device) {
#define PENSIEVE_VK_LOAD(name)                                               \
  name = reinterpret_cast<PFN_##name>(vkGetDeviceProcAddr(device, #name));   \
  if (!name) return errorf("vulkan: device lacks %s", #name);
  PENSIEVE_VK_DEVICE_FNS(PENSIEVE_VK_LOAD)
#undef PENSIEVE_VK_LOAD
  return Status::Ok();
}

void VkApi::unload() {
  if (lib) dlclose(lib);
  *this = VkApi{};
}

std::string vk_call_name(const char* call_text) {
  std::string s(call_text);
  size_t paren = s.find('(');
  if (paren != std::string::npos) s.resize(paren);
  size_t vk = s.rfind("vk");
  return vk == std::string::npos ? s : s.substr(vk);
}

const char* vk_result_name(VkResult r) {
  switch (r) {
#define C(x) case x: return #x;
    C(VK_SUCCESS) C(VK_NOT_READY) C(VK_TIMEOUT) C(VK_INCOMPLETE)
    C(VK_ERROR_OUT_OF_HOST_MEMORY) C(VK_ERROR_OUT_OF_DEVICE_MEMORY) C(VK_ERROR_INITIALIZATION_FAILED)
    C(VK_ERROR_DEVICE_LOST) C(VK_ERROR_MEMORY_MAP_FAILED) C(VK_ERROR_LAYER_NOT_PRESENT)
    C(VK_ERROR_EXTENSION_NOT_PRESENT) C(VK_ERROR_FEATURE_NOT_PRESENT) C(VK_ERROR_INCOMPATIBLE_DRIVER)
    C(VK_ERROR_TOO_MANY_OBJECTS) C(VK_ERROR_FORMAT_NOT_SUPPORTED) C(VK_ERROR_FRAGMENTED_POOL)
    C(VK_ERROR_UNKNOWN) C(VK_ERROR_OUT_OF_POOL_MEMORY) C(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    C(VK_ERROR_FRAGMENTATION) C(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS) C(VK_PIPELINE_COMPILE_REQUIRED)
    C(VK_ERROR_INVALID_SHADER_NV)
#undef C
    default: return "VK_ERROR_(unnamed)";
  }
}

}  // namespace pensieve::vulkan
