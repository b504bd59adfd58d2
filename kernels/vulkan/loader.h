// The Vulkan entry points pensieve uses, loaded at run time from the system's loader library.
//
// Why dlopen instead of linking libvulkan: one pensieve binary must start on machines with no
// Vulkan loader at all (CI containers, servers without GPU drivers, the lent GPU machine before
// its loader is unpacked). Linking would make the dynamic linker refuse to start the program;
// loading at run time turns a missing loader into an error message and a CPU fallback.
//
// Function pointers are grouped in one table (VkApi) owned by the Context; device-level ones are
// fetched with vkGetDeviceProcAddr so calls skip the loader's dispatch trampoline.
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan_core.h>

#include <string>

#include "tensor/result.h"

namespace pensieve::vulkan {

// X-macro lists: global (no instance), instance-level and device-level entry points.
#define PENSIEVE_VK_GLOBAL_FNS(X)           \
  X(vkCreateInstance)                       \
  X(vkEnumerateInstanceVersion)             \
  X(vkEnumerateInstanceExtensionProperties) \
  X(vkEnumerateInstanceLayerProperties)

#define PENSIEVE_VK_INSTANCE_FNS(X)             \
  X(vkDestroyInstance)                          \
  X(vkEnumeratePhysicalDevices)                 \
  X(vkGetPhysicalDeviceProperties)              \
  X(vkGetPhysicalDeviceProperties2)             \
  X(vkGetPhysicalDeviceFeatures2)               \
  X(vkGetPhysicalDeviceMemoryProperties)        \
  X(vkGetPhysicalDeviceQueueFamilyProperties)   \
  X(vkEnumerateDeviceExtensionProperties)       \
  X(vkCreateDevice)                             \
  X(vkGetDeviceProcAddr)

// Optional instance-level entry points (extensions): null when absent.
#define PENSIEVE_VK_INSTANCE_OPT_FNS(X) X(vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)

#define PENSIEVE_VK_DEVICE_FNS(X)      \
  X(vkDestroyDevice)                   \
  X(vkGetDeviceQueue)                  \
  X(vkDeviceWaitIdle)                  \
  X(vkQueueSubmit)                     \
  X(vkQueueWaitIdle)                   \
  X(vkCreateBuffer)                    \
  X(vkDestroyBuffer)                   \
  X(vkGetBufferMemoryRequirements)     \
  X(vkAllocateMemory)                  \
  X(vkFreeMemory)                      \
  X(vkBindBufferMemory)                \
  X(vkMapMemory)                       \
  X(vkUnmapMemory)                     \
  X(vkFlushMappedMemoryRanges)         \
  X(vkInvalidateMappedMemoryRanges)    \
  X(vkCreateShaderModule)              \
  X(vkDestroyShaderModule)             \
  X(vkCreateDescriptorSetLayout)       \
  X(vkDestroyDescriptorSetLayout)      \
  X(vkCreatePipelineLayout)            \
  X(vkDestroyPipelineLayout)           \
  X(vkCreatePipelineCache)             \
  X(vkDestroyPipelineCache)            \
  X(vkGetPipelineCacheData)            \
  X(vkCreateComputePipelines)          \
  X(vkDestroyPipeline)                 \
  X(vkCreateDescriptorPool)            \
  X(vkDestroyDescriptorPool)           \
  X(vkResetDescriptorPool)             \
  X(vkAllocateDescriptorSets)          \
  X(vkUpdateDescriptorSets)            \
  X(vkCreateCommandPool)               \
  X(vkDestroyCommandPool)              \
  X(vkAllocateCommandBuffers)          \
  X(vkFreeCommandBuffers)              \
  X(vkBeginCommandBuffer)              \
  X(vkEndCommandBuffer)                \
  X(vkResetCommandBuffer)              \
  X(vkCmdBindPipeline)                 \
  X(vkCmdBindDescriptorSets)           \
  X(vkCmdPushConstants)                \
  X(vkCmdDispatch)                     \
  X(vkCmdPipelineBarrier)              \
  X(vkCmdCopyBuffer)                   \
  X(vkCmdFillBuffer)                   \
  X(vkCmdWriteTimestamp)               \
  X(vkCmdResetQueryPool)               \
  X(vkCreateQueryPool)                 \
  X(vkDestroyQueryPool)                \
  X(vkGetQueryPoolResults)             \
  X(vkCreateFence)                     \
  X(vkDestroyFence)                    \
  X(vkResetFences)                     \
  X(vkGetFenceStatus)                  \
  X(vkWaitForFences)

// Device functions of optional extensions (null when absent).
#define PENSIEVE_VK_DEVICE_OPT_FNS(X)          \
  X(vkGetPipelineExecutablePropertiesKHR)      \
  X(vkGetPipelineExecutableStatisticsKHR)

struct VkApi {
  void* lib = nullptr;  // dlopen handle
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr = nullptr;
#define PENSIEVE_VK_DECLARE(name) PFN_##name name = nullptr;
  PENSIEVE_VK_GLOBAL_FNS(PENSIEVE_VK_DECLARE)
  PENSIEVE_VK_INSTANCE_FNS(PENSIEVE_VK_DECLARE)
  PENSIEVE_VK_INSTANCE_OPT_FNS(PENSIEVE_VK_DECLARE)
  PENSIEVE_VK_DEVICE_FNS(PENSIEVE_VK_DECLARE)
  PENSIEVE_VK_DEVICE_OPT_FNS(PENSIEVE_VK_DECLARE)
#undef PENSIEVE_VK_DECLARE

  // Opens the loader library (PENSIEVE_VULKAN_LIBRARY overrides its name) and loads the global
  // entry points. Fails with a message naming the library when it is missing.
  Status load_library();
  Status load_instance(VkInstance instance);
  Status load_device(VkDevice device);
  void unload();  // dlclose; all objects must be destroyed first
};

// "VK_ERROR_OUT_OF_DEVICE_MEMORY" etc.
const char* vk_result_name(VkResult r);
// "vkCreateBuffer" from the text of a call such as "vk.vkCreateBuffer(dev, &ci, nullptr, &b)".
std::string vk_call_name(const char* call_text);

}  // namespace pensieve::vulkan

// Turns a failed VkResult into an Error naming the call: "vkCreateBuffer: VK_ERROR_OUT_OF_DEVICE_MEMORY".
#define PENSIEVE_VK_CHECK(call)                                                                         \
  do {                                                                                                  \
    VkResult _pensieve_vr = (call);                                                                     \
    if (_pensieve_vr != VK_SUCCESS)                                                                     \
      return ::pensieve::errorf("vulkan: %s failed: %s", ::pensieve::vulkan::vk_call_name(#call).c_str(), \
                                ::pensieve::vulkan::vk_result_name(_pensieve_vr));                      \
  } while (0)
