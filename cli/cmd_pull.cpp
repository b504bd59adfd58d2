// pensieve pull ORG/NAME[@REVISION]: download a model into the Hugging Face cache.
#include <cstdio>
#include <cstring>
#include <string>

#include "models/store/hub.h"

namespace pensieve::cli {

static int pull_usage(FILE* out) {
  std::fprintf(out,
               "usage: pensieve pull ORG/NAME[@REVISION] [--cache-dir DIR] [--quiet]\n\n"
               "Downloads a model (config, tokenizer, safetensors weights) from the Hugging Face hub into the\n"
               "HF cache, shared with huggingface-cli and MLX, and prints its directory. Interrupted downloads\n"
               "resume; files are checked against the hub's sha256.\n\n"
               "  --cache-dir DIR  cache to use (default: $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub)\n"
               "  --quiet          no progress output\n\n"
               "environment: HF_ENDPOINT (a mirror), HF_TOKEN (private or gated repos), HF_HUB_OFFLINE=1,\n"
               "             https_proxy / http_proxy / no_proxy\n");
  return out == stdout ? 0 : 2;
}

int cmd_pull(int argc, char** argv) {
  std::string spec, cache_dir;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") return pull_usage(stdout);
    if (a == "--quiet" || a == "-q") quiet = true;
    else if (a == "--cache-dir" && i + 1 < argc) cache_dir = argv[++i];
    else if (!a.empty() && a[0] != '-' && spec.empty()) spec = a;
    else {
      std::fprintf(stderr, "pensieve pull: unexpected argument \"%s\"\n\n", a.c_str());
      return pull_usage(stderr);
    }
  }
  if (spec.empty()) return pull_usage(stderr);
  auto ref = parse_repo_ref(spec);
  if (!ref) {
    std::fprintf(stderr, "pensieve pull: %s\n", ref.error().c_str());
    return 2;
  }
  PullOptions opt;
  if (!cache_dir.empty()) opt.hub.cache_dir = cache_dir;
  TerminalProgress progress(stderr);
  if (!quiet) opt.progress = &progress;
  auto res = pull_model(*ref, opt);
  if (!res) {
    std::fprintf(stderr, "pensieve %s\n", res.error().c_str());
    return 1;
  }
  if (!quiet) {
    if (res->from_cache_only) std::fprintf(stderr, "pull %s: offline, using the cached copy\n", ref->str().c_str());
    else
      std::fprintf(stderr, "pull %s: done, %d of %d files downloaded (%s)\n", ref->str().c_str(), res->files_downloaded,
                   res->files_total, format_bytes(res->bytes_downloaded).c_str());
  }
  std::printf("%s\n", res->snapshot_dir.c_str());
  return 0;
}

}  // namespace pensieve::cli
