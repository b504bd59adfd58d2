#include "cli/args.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace pensieve::cli {

void Args::add(const char* name, const char* alias, bool takes_value, std::function<bool(const char*)> set) {
  specs_.push_back({name, alias ? alias : "", takes_value, std::move(set)});
}

void Args::flag(const char* name, bool* out, const char* alias) {
  add(name, alias, false, [out](const char*) { *out = true; return true; });
}

void Args::option(const char* name, std::string* out, const char* alias) {
  add(name, alias, true, [out](const char* v) { *out = v; return true; });
}

void Args::option(const char* name, std::vector<std::string>* out, const char* alias) {
  add(name, alias, true, [out](const char* v) { out->push_back(v); return true; });
}

static bool parse_i64(const char* v, int64_t* out) {
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v, &end, 10);
  if (errno || end == v || *end) return false;
  *out = x;
  return true;
}

void Args::option(const char* name, int64_t* out, const char* alias) {
  add(name, alias, true, [out](const char* v) { return parse_i64(v, out); });
}

void Args::option(const char* name, int* out, const char* alias) {
  add(name, alias, true, [out](const char* v) {
    int64_t x;
    if (!parse_i64(v, &x) || x < INT32_MIN || x > INT32_MAX) return false;
    *out = int(x);
    return true;
  });
}

void Args::option(const char* name, float* out, const char* alias) {
  add(name, alias, true, [out](const char* v) {
    errno = 0;
    char* end = nullptr;
    float x = std::strtof(v, &end);
    if (errno || end == v || *end || !std::isfinite(x)) return false;
    *out = x;
    return true;
  });
}

bool Args::given(const char* name) const {
  for (const Spec& s : specs_)
    if (s.name == name) return s.seen;
  return false;
}

bool Args::parse(int argc, char** argv, int* exit_code) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(usage_, stdout);
      *exit_code = 0;
      return false;
    }
    std::string value;
    bool inline_value = false;
    if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {  // --key=value
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
      inline_value = true;
    }
    Spec* spec = nullptr;
    for (Spec& s : specs_)
      if (s.name == a || (!s.alias.empty() && s.alias == a)) spec = &s;
    if (!spec) {
      std::fprintf(stderr, "pensieve %s: unknown option \"%s\" (see pensieve %s --help)\n", command_, argv[i], command_);
      *exit_code = 2;
      return false;
    }
    spec->seen = true;
    if (!spec->takes_value) {
      spec->set(nullptr);
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "pensieve %s: %s needs a value\n", command_, a.c_str());
        *exit_code = 2;
        return false;
      }
      value = argv[++i];
    }
    if (!spec->set(value.c_str())) {
      std::fprintf(stderr, "pensieve %s: %s got \"%s\", which is not a valid value\n", command_, a.c_str(), value.c_str());
      *exit_code = 2;
      return false;
    }
  }
  return true;
}

}  // namespace pensieve::cli
