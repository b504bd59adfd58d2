// pensieve make-model --like phi3-mini|phi3-mini-128k|phi4-mini --random --out DIR
#include <cstdio>

#include "cli/args.h"
#include "models/random_model.h"

namespace pensieve::cli {

static const char kUsage[] =
    "usage: pensieve make-model --like phi3-mini|phi3-mini-128k|phi4-mini --random --out DIR\n"
    "                           [--tokenizer DIR] [--bits 4|8] [--group-size 32|64|128] [--seed N]\n"
    "\n"
    "Writes a full-size model with random weights in the MLX 4-bit layout and the real config of\n"
    "the published model (Phi-3-mini-4k, Phi-3-mini-128k, Phi-4-mini), so speed can be measured\n"
    "without downloads. --tokenizer copies tokenizer.json/tokenizer_config.json from DIR.\n";

int cmd_make_model(int argc, char** argv) {
  RandomModelOptions o;
  bool random = false;
  int64_t seed = 1;
  Args a("make-model", kUsage);
  a.option("--like", &o.like);
  a.flag("--random", &random);
  a.option("--out", &o.out_dir, "-o");
  a.option("--tokenizer", &o.tokenizer_dir);
  a.option("--bits", &o.bits);
  a.option("--group-size", &o.group_size);
  a.option("--seed", &seed);
  if (int rc; !a.parse(argc, argv, &rc)) return rc;
  if (!random || o.like.empty() || o.out_dir.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  o.seed = uint64_t(seed);
  if (Status st = write_random_model(o); !st.ok()) {
    std::fprintf(stderr, "pensieve make-model: %s\n", st.error().c_str());
    return 1;
  }
  std::fprintf(stderr, "wrote %s\n", o.out_dir.c_str());
  return 0;
}

}  // namespace pensieve::cli
