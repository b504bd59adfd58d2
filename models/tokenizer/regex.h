// A compiled PCRE2 pattern (UTF + UCP, JIT when available) standing in for the Oniguruma regexes
// of tokenizer.json. Move-only RAII; matching is const and thread-safe (match data per call).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tensor/result.h"

namespace pensieve::tok {

class Regex {
 public:
  static Result<Regex> compile(std::string_view pattern);

  Regex() = default;
  ~Regex();
  Regex(Regex&& o) noexcept : code_(std::exchange(o.code_, nullptr)) {}
  Regex& operator=(Regex&& o) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches in s (valid UTF-8), left to right, as [start, end) byte offsets.
  // An empty match advances by one character, as Oniguruma's iterator does.
  Status find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
};

}  // namespace pensieve::tok
