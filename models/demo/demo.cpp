#include "models/demo/demo.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
extern const unsigned char pensieve_demo_config_begin[], pensieve_demo_config_end[];
extern const unsigned char pensieve_demo_weights_begin[], pensieve_demo_weights_end[];
extern const unsigned char pensieve_demo_tokenizer_begin[], pensieve_demo_tokenizer_end[];
}

namespace pensieve {

namespace {

struct File {
  const char* name;
  const unsigned char* begin;
  const unsigned char* end;
  size_t size() const { return size_t(end - begin); }
};

const File kFiles[] = {
    {"config.json", pensieve_demo_config_begin, pensieve_demo_config_end},
    {"model.safetensors", pensieve_demo_weights_begin, pensieve_demo_weights_end},
    {"tokenizer.json", pensieve_demo_tokenizer_begin, pensieve_demo_tokenizer_end},
};

// FNV-1a over the embedded bytes: a new binary with another demo model gets another directory.
std::string content_hash() {
  uint64_t h = 1469598103934665603ull;
  for (const File& f : kFiles)
    for (const unsigned char* p = f.begin; p != f.end; ++p) h = (h ^ *p) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", (unsigned long long)h);
  return std::string(buf, 12);
}

bool complete(const std::string& dir) {
  for (const File& f : kFiles) {
    struct stat st;
    if (stat((dir + "/" + f.name).c_str(), &st) != 0 || size_t(st.st_size) != f.size()) return false;
  }
  return true;
}

bool mkdirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i != path.size() && path[i] != '/') continue;
    std::string p = path.substr(0, i);
    if (mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) return false;
  }
  return true;
}

// Writes the files into a fresh temporary directory beside `dir`, then renames it into place, so
// a concurrent or interrupted extraction never leaves a half-written model behind.
Status extract_to(const std::string& dir) {
  std::string parent = dir.substr(0, dir.find_last_of('/'));
  if (!mkdirs(parent)) return errorf("demo model: cannot create %s", parent.c_str());
  std::string tmp = dir + ".tmp-" + std::to_string(getpid());
  if (mkdir(tmp.c_str(), 0755) != 0 && errno != EEXIST) return errorf("demo model: cannot create %s", tmp.c_str());
  for (const File& f : kFiles) {
    std::string path = tmp + "/" + f.name;
    FILE* out = std::fopen(path.c_str(), "wb");
    bool ok = out && std::fwrite(f.begin, 1, f.size(), out) == f.size();
    ok = out && std::fclose(out) == 0 && ok;
    if (!ok) return errorf("demo model: cannot write %s", path.c_str());
  }
  if (std::rename(tmp.c_str(), dir.c_str()) != 0) {
    for (const File& f : kFiles) std::remove((tmp + "/" + f.name).c_str());
    rmdir(tmp.c_str());
    if (!complete(dir)) return errorf("demo model: cannot move %s into place", tmp.c_str());
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> extract_demo_model() {
  const std::string name = "/pensieve/demo-stories260K-" + content_hash();
  std::vector<std::string> candidates;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) candidates.push_back(x + name);
  if (const char* h = std::getenv("HOME"); h && *h) candidates.push_back(std::string(h) + "/.cache" + name);
  const char* t = std::getenv("TMPDIR");
  candidates.push_back(std::string(t && *t ? t : "/tmp") + name + "-" + std::to_string(getuid()));
  std::string errors;
  for (const std::string& dir : candidates) {
    if (complete(dir)) return dir;
    Status st = extract_to(dir);
    if (st.ok() && complete(dir)) return dir;
    errors += "\n  " + (st.ok() ? dir + ": incomplete after extraction" : st.error());
  }
  return errorf("demo model: no writable place to extract it:%s", errors.c_str());
}

}  // namespace pensieve
