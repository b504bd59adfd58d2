// Options every model-running command shares (--model, --threads, --precision, ...) and the one
// way the CLI resolves and loads a model.
#pragma once

#include <memory>
#include <string>

#include "cli/args.h"
#include "models/model.h"

namespace pensieve::cli {

struct ModelArgs {
  std::string model;          // directory, org/name[@rev], or "demo"
  int threads = 0;
  std::string precision;      // "", "exact", "fast"
  std::string kv_type;        // "", "f16", "f32"
  std::string quantize;       // "", "yes", "no"
  bool no_quantize = false;
  int64_t ctx = 0;
  std::string kernels;
  std::string device = "auto";

  // Adds the options to a parser; the usage text lists them via kModelOptionsHelp.
  void add_to(Args& a);
  // --model as a directory: "demo" is extracted from the binary, a repo id is taken from the
  // HF cache or pulled (with a progress bar on stderr).
  Result<std::string> resolve() const;
  // The ModelOptions the flags describe (precision defaults to exact or fast as asked).
  Result<ModelOptions> options(bool default_exact = false) const;
  // resolve() + options() + Model::load(); errors are printed by the caller.
  Result<std::unique_ptr<Model>> load(bool default_exact = false) const;

 private:
  bool force_quantize_ = false;
};

inline constexpr const char* kModelOptionsHelp =
    "  --model DIR|ORG/NAME|demo  model directory, Hugging Face repo (cache, else download), or the\n"
    "                             built-in demo model (stories260K)\n"
    "  -t, --threads N            CPU threads (default: all cores; PENSIEVE_THREADS)\n"
    "  --precision exact|fast     fast (default): int8 activations in matmuls, as llama.cpp;\n"
    "                             exact: f32 activations (matches float64 references to ~1e-5)\n"
    "  --kv-type f16|f32          KV cache element type (default: f32 for unquantized f32 models, else f16)\n"
    "  --no-quantize              keep f16/bf16/f32 weights as they are (default: quantize to 4-bit\n"
    "                             at load when they exceed 256 MB)\n"
    "  --quantize                 always quantize f16/bf16/f32 weights to 4-bit at load\n"
    "  --ctx N                    context window in tokens, prompt + output (default: the model's,\n"
    "                             up to 8192 for run/bench/logits)\n"
    "  --kernels NAME             force CPU kernels: ref, avx2, avx512, neon, dotprod (PENSIEVE_CPU)\n"
    "  --device auto|cpu|vulkan[:N]  compute device (default auto)\n";

// The directory of the built-in demo model (extracted from the binary on first use).
Result<std::string> demo_model_dir();

}  // namespace pensieve::cli
