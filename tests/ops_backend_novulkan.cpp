// Built when there is no Vulkan backend (tests/CMakeLists.txt): no Vulkan devices to test.
#include "tests/ops_backend.h"

namespace pensieve {

std::vector<std::unique_ptr<OpsBackend>> vulkan_ops_backends() { return {}; }

}  // namespace pensieve
