// pensieve quantize --model DIR|REPO --out DIR: HF safetensors -> MLX 4/8-bit layout.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "models/store/quantize_model.h"
#include "models/store/resolve.h"

namespace pensieve::cli {

static int quantize_usage(FILE* out) {
  std::fprintf(out,
               "usage: pensieve quantize --model DIR|ORG/NAME[@REV] --out DIR [--bits 4|8] [--group-size 32|64|128]\n"
               "                         [--threads N] [--quiet]\n\n"
               "Converts a Hugging Face f16/bf16/f32 safetensors model into the MLX-community quantized layout\n"
               "(the format `mlx_lm.convert -q` writes, which pensieve and MLX load). Defaults: 4 bits, group 64.\n");
  return out == stdout ? 0 : 2;
}

static bool parse_int(const char* s, int* out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (!end || *end || v < 0 || v > 1 << 20) return false;
  *out = int(v);
  return true;
}

int cmd_quantize(int argc, char** argv) {
  std::string model, out;
  QuantizeOptions opt;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    bool has_value = i + 1 < argc;
    if (a == "-h" || a == "--help") return quantize_usage(stdout);
    if (a == "--quiet" || a == "-q") {
      quiet = true;
    } else if (a == "--model" && has_value) {
      model = argv[++i];
    } else if (a == "--out" && has_value) {
      out = argv[++i];
    } else if ((a == "--bits" || a == "--group-size" || a == "--threads") && has_value) {
      int* dst = a == "--bits" ? &opt.bits : a == "--group-size" ? &opt.group_size : &opt.threads;
      if (!parse_int(argv[++i], dst)) {
        std::fprintf(stderr, "pensieve quantize: %s expects a number, got \"%s\"\n", a.c_str(), argv[i]);
        return 2;
      }
    } else {
      std::fprintf(stderr, "pensieve quantize: unexpected argument \"%s\"\n\n", a.c_str());
      return quantize_usage(stderr);
    }
  }
  if (model.empty() || out.empty()) return quantize_usage(stderr);

  TerminalProgress progress(stderr);
  ResolveOptions ro;  // "demo" is already quantized: no demo_dir here
  if (!quiet) ro.pull.progress = &progress;
  auto dir = resolve_model(model, ro);
  if (!dir) {
    std::fprintf(stderr, "pensieve quantize: %s\n", dir.error().c_str());
    return 1;
  }
  if (!quiet) opt.progress = &progress;
  auto report = quantize_model(*dir, out, opt);
  if (!report) {
    std::fprintf(stderr, "pensieve %s\n", report.error().c_str());
    return 1;
  }
  if (!quiet)
    std::fprintf(stderr, "quantize: %d modules to %d-bit (group %d), %d tensors copied, %d dropped: %s -> %s in %s\n",
                 report->quantized, opt.bits, opt.group_size, report->copied, report->dropped,
                 format_bytes(report->bytes_in).c_str(), format_bytes(report->bytes_out).c_str(), out.c_str());
  return 0;
}

}  // namespace pensieve::cli
