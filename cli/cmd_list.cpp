// pensieve list: the models in the Hugging Face cache.
#include <cstdio>
#include <string>

#include "models/store/hf_cache.h"
#include "models/store/progress.h"

namespace pensieve::cli {

int cmd_list(int argc, char** argv) {
  HubConfig hub = HubConfig::from_env();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--cache-dir" && i + 1 < argc) {
      hub.cache_dir = argv[++i];
    } else {
      std::FILE* out = (a == "-h" || a == "--help") ? stdout : stderr;
      std::fprintf(out,
                   "usage: pensieve list [--cache-dir DIR]\n\n"
                   "Lists the models in the Hugging Face cache (%s): repo, revisions, size on disk, format.\n",
                   hub.cache_dir.c_str());
      return out == stdout ? 0 : 2;
    }
  }
  auto repos = scan_cache(hub.cache_dir);
  if (!repos) {
    std::fprintf(stderr, "pensieve list: %s\n", repos.error().c_str());
    return 1;
  }
  if (repos->empty()) {
    std::fprintf(stderr, "no models in %s; `pensieve pull ORG/NAME` downloads one\n", hub.cache_dir.c_str());
    return 0;
  }
  std::printf("%-50s %-12s %10s  %s\n", "REPO", "REVISION", "SIZE", "FORMAT");
  for (const CachedRepo& r : *repos) {
    std::string revs;
    for (const auto& [rev, commit] : r.refs) revs += (revs.empty() ? "" : ",") + rev;
    if (revs.empty() && !r.snapshots.empty()) revs = r.snapshots.back().substr(0, 12);
    std::string format = r.format;
    if (!r.complete) format += " (incomplete)";
    if (r.incomplete_bytes) format += ", " + format_bytes(r.incomplete_bytes) + " partial download";
    std::printf("%-50s %-12s %10s  %s\n", r.repo.c_str(), revs.c_str(), format_bytes(r.size_bytes).c_str(), format.c_str());
  }
  return 0;
}

}  // namespace pensieve::cli
