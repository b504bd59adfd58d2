#include "tensor/result.h"

#include <cstdarg>
#include <cstdio>

namespace pensieve {

static std::string vformat(const char* fmt, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n < 0) return fmt;
  std::string out(static_cast<size_t>(n), '\0');
  std::vsnprintf(out.data(), out.size() + 1, fmt, args);
  return out;
}

std::string format_str(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::string s = vformat(fmt, args);
  va_end(args);
  return s;
}

Error errorf(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  Error e{vformat(fmt, args)};
  va_end(args);
  return e;
}

}  // namespace pensieve
