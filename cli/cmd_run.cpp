// pensieve run: generate text from a prompt, or chat interactively, streaming to stdout.
// Only the generated text goes to stdout (pipe it, compare it); statistics go to stderr.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "cli/model_args.h"
#include "models/engine.h"
#include "models/text_stream.h"
#include "models/tokenizer/chat_template.h"

namespace pensieve::cli {

static const char kUsage[] =
    "usage: pensieve run --model DIR|ORG/NAME|demo [--prompt TEXT] [options]\n"
    "\n"
    "Streams the continuation of TEXT to stdout and prints prompt and generation speed to stderr.\n"
    "With --chat the prompt is a user message rendered with the model's chat template. Without\n"
    "--prompt on a terminal it is an interactive chat; with stdin redirected, stdin is the prompt.\n"
    "\n"
    "  --prompt TEXT              the prompt (\"\" is the empty prompt: the model starts from BOS)\n"
    "  --chat                     render the prompt as a chat turn\n"
    "  --system TEXT              system message (chat)\n"
    "  --chat-template NAME       override the template: phi3, phi3.5, phi4, llama2, raw\n"
    "  -n, --max-tokens N         tokens to generate (default: until an end token or the context end)\n"
    "  --temperature T            0 = greedy (default 0.8)\n"
    "  --top-k K                  (default 40; 0 = off)\n"
    "  --top-p P                  (default 0.95)\n"
    "  --min-p P                  (default 0.05)\n"
    "  --repeat-penalty R         (default 1.0 = off)\n"
    "  --presence-penalty P, --frequency-penalty F   (default 0)\n"
    "  --seed S                   make sampling reproducible\n"
    "  --stop TEXT                stop when TEXT appears (repeatable; TEXT is not printed)\n"
    "  --verbose                  print the prompt's token count and timing details\n"
    "\nmodel options:\n";

namespace {

struct Options {
  std::string prompt, system, chat_template;
  bool have_prompt = false, chat = false, verbose = false;
  int64_t max_tokens = -1;
  SamplingParams sampling;
  int64_t seed = -1;
  std::vector<std::string> stop;
};

struct Generated {
  std::string text;
  Finish finish;
};

// Runs one request to completion on the calling thread, streaming text to stdout.
Result<Generated> generate(Engine& engine, const Tokenizer& tok, const std::vector<int32_t>& prompt, const Options& o) {
  Generated g;
  TextStream stream(tok, o.stop);
  bool done = false;
  Request r;
  r.prompt = prompt;
  r.sampling = o.sampling;
  r.max_tokens = o.max_tokens > 0 ? o.max_tokens : engine.max_ctx();
  r.stop_ids = tok.special_tokens().stop;
  r.on_token = [&](int32_t t) {
    std::string piece = stream.push(t);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    g.text += piece;
    return !stream.stopped();
  };
  r.on_finish = [&](const Finish& f) {
    g.finish = f;
    done = true;
  };
  auto id = engine.submit(std::move(r));
  if (!id) return std::move(id).take_error();
  while (!done) engine.step();
  std::string tail = stream.finish();
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  g.text += tail;
  if (g.finish.reason == FinishReason::error) return errorf("%s", g.finish.error.c_str());
  return g;
}

void print_stats(const Finish& f, bool verbose) {
  double pp = f.prefill_seconds > 0 ? double(f.prompt_tokens - f.cached_tokens) / f.prefill_seconds : 0;
  // The first generated token comes out of the prefill; the rest are decode steps.
  double tg = f.decode_seconds > 0 && f.output_tokens > 1 ? double(f.output_tokens - 1) / f.decode_seconds : 0;
  std::fprintf(stderr, "\nprompt: %lld tokens (%lld cached), %.1f tok/s | generation: %lld tokens, %.1f tok/s\n",
               (long long)f.prompt_tokens, (long long)f.cached_tokens, pp, (long long)f.output_tokens, tg);
  if (verbose)
    std::fprintf(stderr, "prefill %.3f s, decode %.3f s, finish: %s\n", f.prefill_seconds, f.decode_seconds,
                 finish_reason_name(f.reason));
}

}  // namespace

int cmd_run(int argc, char** argv) {
  ModelArgs margs;
  Options o;
  o.sampling.temperature = 0.8f;
  o.sampling.top_k = 40;
  o.sampling.top_p = 0.95f;
  o.sampling.min_p = 0.05f;
  std::string usage = std::string(kUsage) + kModelOptionsHelp;
  Args a("run", usage.c_str());
  margs.add_to(a);
  a.option("--prompt", &o.prompt, "-p");
  a.option("--system", &o.system);
  a.option("--chat-template", &o.chat_template);
  a.flag("--chat", &o.chat);
  a.flag("--verbose", &o.verbose);
  a.option("--max-tokens", &o.max_tokens, "-n");
  a.option("--temperature", &o.sampling.temperature);
  a.option("--top-k", &o.sampling.top_k);
  a.option("--top-p", &o.sampling.top_p);
  a.option("--min-p", &o.sampling.min_p);
  a.option("--repeat-penalty", &o.sampling.repetition_penalty);
  a.option("--presence-penalty", &o.sampling.presence_penalty);
  a.option("--frequency-penalty", &o.sampling.frequency_penalty);
  a.option("--seed", &o.seed);
  a.option("--stop", &o.stop);
  if (int rc; !a.parse(argc, argv, &rc)) return rc;
  o.have_prompt = a.given("--prompt");
  if (o.seed >= 0) {
    o.sampling.seed = uint64_t(o.seed);
    o.sampling.has_seed = true;
  }
  if (Status st = validate(o.sampling); !st.ok()) {
    std::fprintf(stderr, "pensieve run: %s\n", st.error().c_str());
    return 2;
  }
  bool interactive = !o.have_prompt && isatty(STDIN_FILENO);
  if (!o.have_prompt && !interactive) {
    o.prompt.assign(std::istreambuf_iterator<char>(std::cin), {});
    o.have_prompt = true;
  }

  auto model = margs.load();
  if (!model) {
    std::fprintf(stderr, "pensieve run: %s\n", model.error().c_str());
    return 1;
  }
  auto tok = Tokenizer::load((*model)->dir());
  if (!tok) {
    std::fprintf(stderr, "pensieve run: %s\n", tok.error().c_str());
    return 1;
  }
  auto tmpl = ChatTemplate::select(*tok, o.chat_template);
  if ((o.chat || interactive) && !tmpl) {
    std::fprintf(stderr, "pensieve run: %s\n", tmpl.error().c_str());
    return 1;
  }
  EngineOptions eo;
  eo.max_seqs = 1;
  Engine engine(**model, eo);

  std::vector<ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system, {}});
  for (;;) {
    std::string text;
    bool add_special = true;
    if (interactive) {
      std::fprintf(stderr, "> ");
      if (!std::getline(std::cin, o.prompt)) break;
      if (o.prompt.empty()) continue;
    }
    if (o.chat || interactive) {
      messages.push_back({"user", o.prompt, {}});
      auto rendered = tmpl->render(messages, true);
      if (!rendered) {
        std::fprintf(stderr, "pensieve run: %s\n", rendered.error().c_str());
        return 1;
      }
      text = *rendered;
      add_special = tmpl->add_special_tokens();
    } else {
      text = o.prompt;
    }
    EncodeOptions eopt;
    eopt.add_special_tokens = add_special;
    auto ids = tok->encode(text, eopt);
    if (!ids) {
      std::fprintf(stderr, "pensieve run: %s\n", ids.error().c_str());
      return 1;
    }
    if (ids->empty()) {
      std::fprintf(stderr, "pensieve run: the prompt encodes to no tokens (this model adds no BOS); give some text\n");
      return 1;
    }
    auto g = generate(engine, *tok, *ids, o);
    if (!g) {
      std::fprintf(stderr, "\npensieve run: %s\n", g.error().c_str());
      return 1;
    }
    std::fputc('\n', stdout);
    std::fflush(stdout);
    print_stats(g->finish, o.verbose);
    if (!interactive) break;
    messages.push_back({"assistant", g->text, {}});
  }
  return 0;
}

}  // namespace pensieve::cli
