#include "models/store/resolve.h"

#include <cstdlib>
#include <filesystem>

#include "models/store/model_dir.h"

namespace pensieve {

namespace fs = std::filesystem;

static bool looks_like_path(const std::string& s) {
  return s.rfind("/", 0) == 0 || s.rfind("./", 0) == 0 || s.rfind("../", 0) == 0 || s.rfind("~/", 0) == 0 ||
         s == "." || s == ".." || s == "~";
}

Result<std::string> resolve_model(const std::string& spec, const ResolveOptions& options) {
  if (spec.empty()) return errorf("--model is empty: give a directory, ORG/NAME[@REVISION] or demo");
  if (spec == "demo") {
    if (options.demo_dir.empty()) return errorf("--model demo: this build has no demo model");
    PENSIEVE_TRY_CTX(check_model_dir(options.demo_dir), "--model demo");
    return options.demo_dir;
  }
  std::string path = spec;
  if (path == "~" || path.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    path = std::string(home ? home : "") + path.substr(1);
  }
  std::error_code ec;
  if (looks_like_path(spec) || fs::is_directory(path, ec)) {
    if (!fs::exists(path, ec)) return errorf("--model %s: no such directory", spec.c_str());
    PENSIEVE_TRY_CTX(check_model_dir(path), "--model %s", spec.c_str());
    return path;
  }

  auto ref = parse_repo_ref(spec);
  if (!ref || ref->repo.find('/') == std::string::npos) {
    std::string why = ref ? "" : " (" + ref.error() + ")";
    return errorf("--model %s: not a directory, \"demo\", or a Hugging Face repo id ORG/NAME[@REVISION]%s",
                  spec.c_str(), why.c_str());
  }
  const std::string& cache = options.pull.hub.cache_dir;
  if (auto snap = cached_snapshot(cache, *ref); snap && check_model_dir(*snap).ok()) return *snap;

  if (!options.allow_download)
    return errorf("--model %s: not in the cache %s; run `pensieve pull %s` first", spec.c_str(), cache.c_str(),
                  ref->str().c_str());
  if (options.pull.hub.offline)
    return errorf("--model %s: not in the cache %s, and HF_HUB_OFFLINE is set. Run `pensieve pull %s` with network "
                  "access, or try the built-in demo model: --model demo",
                  spec.c_str(), cache.c_str(), ref->str().c_str());
  auto pulled = pull_model(*ref, options.pull);
  if (!pulled)
    return errorf("--model %s (not a local directory, so a Hugging Face repo): %s", spec.c_str(), pulled.error().c_str());
  PENSIEVE_TRY_CTX(check_model_dir(pulled->snapshot_dir), "--model %s", spec.c_str());
  return pulled->snapshot_dir;
}

}  // namespace pensieve
