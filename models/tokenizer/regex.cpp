#define PCRE2_CODE_UNIT_WIDTH 8
#include "models/tokenizer/regex.h"

#include <pcre2.h>

#include "models/tokenizer/utf8.h"

namespace pensieve::tok {

Result<Regex> Regex::compile(std::string_view pattern) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    return errorf("regex: cannot compile /%.*s/ at offset %zu: %s",
                  static_cast<int>(pattern.size()), pattern.data(), static_cast<size_t>(err_off),
                  reinterpret_cast<char*>(msg));
  }
  // JIT is an optimisation only: the interpreter gives the same matches where it is unavailable.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  Regex r;
  r.code_ = code;
  return r;
}

Regex::~Regex() {
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

Regex& Regex::operator=(Regex&& o) noexcept {
  if (this != &o) {
    if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
    code_ = std::exchange(o.code_, nullptr);
  }
  return *this;
}

Status Regex::find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  if (!code) return errorf("regex: matching with an empty pattern object");
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  if (!md) return errorf("regex: out of memory creating match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  Status st;
  while (pos <= s.size()) {
    // The subject was validated (or made valid) before: skip PCRE2's UTF check on every call.
    int rc = pcre2_match(code, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      st = errorf("regex: match failed at byte %zu of %zu: %s", pos, s.size(),
                  reinterpret_cast<char*>(msg));
      break;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t b = ov[0], e = ov[1];
    if (e == b) {  // empty match: skip one character
      if (b >= s.size()) break;
      pos = b + utf8_char_len(static_cast<unsigned char>(s[b]));
      continue;
    }
    out.emplace_back(b, e);
    pos = e;
  }
  pcre2_match_data_free(md);
  return st;
}

}  // namespace pensieve::tok
