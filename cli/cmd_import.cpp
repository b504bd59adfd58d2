// pensieve import-llama2c CHECKPOINT TOKENIZER --out DIR
#include <cstdio>
#include <string>
#include <vector>

#include "cli/args.h"
#include "models/llama2c.h"

namespace pensieve::cli {

static const char kUsage[] =
    "usage: pensieve import-llama2c CHECKPOINT TOKENIZER --out DIR\n"
    "\n"
    "Converts a llama2.c checkpoint (run.c's .bin format) and its tokenizer (.bin) into a\n"
    "pensieve model directory: config.json (LlamaForCausalLM), model.safetensors (f32, q/k rows\n"
    "permuted for rotate-half RoPE) and tokenizer.json (BPE with byte fallback, merges ranked by\n"
    "the llama2.c scores). DIR must not exist.\n";

int cmd_import_llama2c(int argc, char** argv) {
  std::string out;
  std::vector<std::string> positional;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] != '-' || std::string(argv[i]) == "-") {
      positional.push_back(argv[i]);
    } else {
      rest.push_back(argv[i]);
      if (std::string(argv[i]) == "--out" && i + 1 < argc) rest.push_back(argv[++i]);
    }
  }
  Args a("import-llama2c", kUsage);
  a.option("--out", &out, "-o");
  if (int rc; !a.parse(int(rest.size()), rest.data(), &rc)) return rc;
  if (positional.size() != 2 || out.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  Status st = import_llama2c(positional[0], positional[1], out);
  if (!st.ok()) {
    std::fprintf(stderr, "pensieve import-llama2c: %s\n", st.error().c_str());
    return 1;
  }
  std::fprintf(stderr, "wrote %s\n", out.c_str());
  return 0;
}

}  // namespace pensieve::cli
