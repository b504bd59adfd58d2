// The built-in demo model: stories260K (a real 260K-parameter Llama trained on TinyStories,
// MIT), converted by `pensieve import-llama2c` and compiled into the binary, so `--model demo`
// works on any machine, offline. On first use its files are written to
// $XDG_CACHE_HOME/pensieve/demo-stories260K-<hash> (else ~/.cache/..., else $TMPDIR) and loaded
// from there like any model directory.
#pragma once

#include <string>

#include "tensor/result.h"

namespace pensieve {

// The directory holding the demo model's files (extracting them if needed).
Result<std::string> extract_demo_model();

}  // namespace pensieve
