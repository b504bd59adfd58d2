#include <cstdio>

#include "kernels/kernels.h"

namespace pensieve::cli {

int cmd_version(int, char**) {
  std::printf("pensieve 0.1.0\ncpu kernels: %s\n", cpu_kernels().name);
  return 0;
}

}  // namespace pensieve::cli
