// pensieve: a local LLM runtime and inference server. `pensieve help` lists the commands.
#include <cstdio>
#include <cstring>

#include "cli/commands.h"

namespace pensieve::cli {
int cmd_version(int argc, char** argv);
int cmd_run(int argc, char** argv);
int cmd_logits(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_make_model(int argc, char** argv);
int cmd_import_llama2c(int argc, char** argv);
int cmd_pull(int argc, char** argv);
int cmd_list(int argc, char** argv);
int cmd_rm(int argc, char** argv);
int cmd_quantize(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_detokenize(int argc, char** argv);
int cmd_serve(int argc, char** argv);
}

namespace {

using pensieve::cli::Command;

const Command kCommands[] = {
    {"serve", "serve a model over HTTP: Anthropic Messages and OpenAI Chat Completions APIs", pensieve::cli::cmd_serve},
    {"run", "generate text from a prompt, or chat", pensieve::cli::cmd_run},
    {"bench", "measure prompt and generation speed of a model", pensieve::cli::cmd_bench},
    {"logits", "write the logits of a token sequence as .npy", pensieve::cli::cmd_logits},
    {"make-model", "write a full-size model with random weights (for benchmarks)", pensieve::cli::cmd_make_model},
    {"import-llama2c", "convert a llama2.c checkpoint and tokenizer", pensieve::cli::cmd_import_llama2c},
    {"version", "print the version and the CPU kernels in use", pensieve::cli::cmd_version},
    {"pull", "download a model from the Hugging Face hub into the HF cache", pensieve::cli::cmd_pull},
    {"list", "list the models in the HF cache", pensieve::cli::cmd_list},
    {"rm", "delete a model from the HF cache", pensieve::cli::cmd_rm},
    {"quantize", "convert f16/bf16/f32 safetensors to the MLX 4/8-bit layout", pensieve::cli::cmd_quantize},
    {"tokenize", "print the token ids of a text as JSON", pensieve::cli::cmd_tokenize},
    {"detokenize", "print the text of token ids", pensieve::cli::cmd_detokenize},
};

int usage(FILE* out) {
  std::fprintf(out, "usage: pensieve <command> [options]\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-16s %s\n", c.name, c.summary);
  std::fprintf(out, "\n`pensieve <command> --help` describes a command's options.\n");
  return out == stdout ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(stderr);
  if (!std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h"))
    return usage(stdout);
  for (const Command& c : kCommands)
    if (!std::strcmp(argv[1], c.name)) return c.run(argc - 1, argv + 1);
  std::fprintf(stderr, "pensieve: unknown command \"%s\"\n\n", argv[1]);
  return usage(stderr);
}
