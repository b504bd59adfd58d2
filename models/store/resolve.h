// Model-name resolution for every command's --model:
//   "demo"                  -> options.demo_dir (the built-in model; the caller knows where it is)
//   a directory path        -> that directory ("./x", "/x", "~/x", or any existing directory)
//   "org/name[@revision]"   -> its snapshot in the HF cache (refs/<revision> -> snapshots/<commit>),
//                              pulled first when missing and allowed
// A cached complete snapshot is used as is, without asking the network.
#pragma once

#include <string>

#include "models/store/hub.h"
#include "tensor/result.h"

namespace pensieve {

// What `serve` runs with no --model.
inline constexpr const char* kDefaultModelRepo = "mlx-community/Phi-3-mini-4k-instruct-4bit";

struct ResolveOptions {
  std::string demo_dir;        // where "demo" points; empty: "demo" is an error
  bool allow_download = true;  // pull a repo missing from the cache
  PullOptions pull;            // hub, cache, progress, timeouts
};

// Returns a model directory that passes check_model_dir().
Result<std::string> resolve_model(const std::string& spec, const ResolveOptions& options);

}  // namespace pensieve
