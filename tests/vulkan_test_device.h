// The Vulkan device the model-level tests run on (lavapipe in CI, the GPU on the lent machine).
#pragma once

#include <cstdlib>
#include <string>

#ifdef PENSIEVE_HAS_VULKAN
#include "kernels/vulkan/device.h"
#endif

namespace pensieve {

// "vulkan:N" for PENSIEVE_VK_DEVICE=N, else the first device the loader lists; "" when there is
// no loader, no device, or no Vulkan backend in this build (the tests then skip).
inline std::string test_vulkan_device() {
#ifdef PENSIEVE_HAS_VULKAN
  auto devices = vulkan::Context::list_devices();
  if (!devices.ok() || devices->empty()) return "";
  const char* only = std::getenv("PENSIEVE_VK_DEVICE");
  int index = only && *only ? std::atoi(only) : (*devices)[0].index;
  return "vulkan:" + std::to_string(index);
#else
  return "";
#endif
}

}  // namespace pensieve
