// pensieve rm ORG/NAME: delete a model from the Hugging Face cache.
#include <cstdio>
#include <string>

#include "models/store/hf_cache.h"
#include "models/store/progress.h"

namespace pensieve::cli {

int cmd_rm(int argc, char** argv) {
  HubConfig hub = HubConfig::from_env();
  std::string repo;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--cache-dir" && i + 1 < argc) {
      hub.cache_dir = argv[++i];
    } else if (!a.empty() && a[0] != '-' && repo.empty()) {
      repo = a;
    } else {
      std::FILE* out = (a == "-h" || a == "--help") ? stdout : stderr;
      std::fprintf(out, "usage: pensieve rm ORG/NAME [--cache-dir DIR]\n\n"
                        "Deletes a model (all its revisions) from the Hugging Face cache.\n");
      return out == stdout ? 0 : 2;
    }
  }
  if (repo.empty()) {
    std::fprintf(stderr, "usage: pensieve rm ORG/NAME [--cache-dir DIR]\n");
    return 2;
  }
  if (repo.find('@') != std::string::npos) {
    std::fprintf(stderr, "pensieve rm: %s: rm removes a whole repo; give ORG/NAME without @REVISION\n", repo.c_str());
    return 2;
  }
  auto freed = remove_cached_repo(hub.cache_dir, repo);
  if (!freed) {
    std::fprintf(stderr, "pensieve %s\n", freed.error().c_str());
    return 1;
  }
  std::printf("removed %s (%s)\n", repo.c_str(), format_bytes(*freed).c_str());
  return 0;
}

}  // namespace pensieve::cli
