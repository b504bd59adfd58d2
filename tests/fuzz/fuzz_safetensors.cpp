// libFuzzer target for the safetensors header parser (every byte of a model file is untrusted).
// Build: tests/fuzz/run.sh (clang -fsanitize=fuzzer,address,undefined); the corpus in
// tests/fuzz/corpus/safetensors is also replayed by ctest in every build (test_fuzz_corpus).
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "tensor/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::map<std::string, std::string> metadata;
  auto entries = pensieve::parse_safetensors_header(data, size, &metadata);
  if (entries.ok()) {
    // Whatever the parser accepted must lie inside the buffer: touch every byte of it.
    volatile uint8_t sink = 0;
    for (const auto& e : *entries)
      for (uint64_t i = 0; i < e.nbytes; i += 997) sink = sink ^ data[e.offset + i];
    (void)sink;
  }
  return 0;
}
