// UTF-8 helpers with the exact semantics the HF `tokenizers` library (Rust) has:
// validation per RFC 3629 (no surrogates, no overlongs, max U+10FFFF) and String::from_utf8_lossy,
// which replaces each "maximal subpart" of an invalid sequence by one U+FFFD.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pensieve::tok {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// What starts at s[0]: a valid sequence of `len` bytes, or an invalid maximal subpart of `len`
// bytes (>= 1). `truncated` means the bytes are a valid but unfinished prefix cut by the end of s.
struct Utf8Step {
  uint32_t len;
  bool valid;
  bool truncated;
};
Utf8Step utf8_step(const unsigned char* s, size_t n);

bool utf8_is_valid(std::string_view s);

// Rust's String::from_utf8_lossy.
std::string utf8_lossy(std::string_view s);

// Number of bytes (0..3) at the end of s that form a valid but unfinished sequence: text that
// could still become a character when more bytes arrive.
size_t utf8_incomplete_tail(std::string_view s);

// Decodes the code point at s[i] and advances i. s must be valid UTF-8 at i.
uint32_t utf8_next(std::string_view s, size_t& i);

// Byte length of the character starting at s[i] (s valid UTF-8).
inline size_t utf8_char_len(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

void utf8_append(std::string& out, uint32_t cp);

// Rust char::is_whitespace (Unicode White_Space).
bool is_unicode_whitespace(uint32_t cp);

// Python str.isspace for one character (White_Space plus U+001C..U+001F).
bool is_python_space(uint32_t cp);

}  // namespace pensieve::tok
