// The compute shaders, compiled to SPIR-V at build time (shaders/CMakeLists.txt) and embedded.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pensieve::shaders {

struct Spirv {
  const char* name;  // variant name from shaders/CMakeLists.txt, e.g. "matvec_sg"
  const uint32_t* words;
  size_t n_words;
};

// The shader named `name`, or nullptr.
const Spirv* find_spirv(const char* name);
// All embedded shaders.
const Spirv* all_spirv(size_t* count);

}  // namespace pensieve::shaders
