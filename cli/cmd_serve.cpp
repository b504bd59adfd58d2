// pensieve serve: the Anthropic Messages and OpenAI Chat Completions APIs over HTTP (server/).
//
// Startup: resolve --model, bind the port (so /health answers "loading" at once), load the
// tokenizer and the model, then attach them to the server and print the URL. SIGINT/SIGTERM stop
// it cleanly: new requests get 503, streams end with an error event, the engine thread stops.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "cli/args.h"
#include "cli/model_args.h"
#include "models/config.h"
#include "models/model.h"
#include "models/store/progress.h"
#include "models/store/resolve.h"
#include "models/tokenizer/chat_template.h"
#include "models/tokenizer/tokenizer.h"
#include "server/server.h"

namespace pensieve::cli {

namespace {

const char kUsage[] =
    "usage: pensieve serve [--model DIR|ORG/NAME[@REV]|demo] [options]\n"
    "\n"
    "Serves the Anthropic Messages API (POST /v1/messages, /v1/messages/count_tokens) and the\n"
    "OpenAI Chat Completions API (POST /v1/chat/completions), plus GET /v1/models, /health and\n"
    "/metrics. Parallel requests are batched together (continuous batching). Point Claude Code at\n"
    "it with ANTHROPIC_BASE_URL=http://127.0.0.1:8080, the OpenAI SDKs with base URL .../v1.\n"
    "\n"
      "  --host ADDR         address to listen on (default 127.0.0.1: this machine only)\n"
    "  --port N            port (default 8080; 0: any free port, printed when ready)\n"
    "  --parallel N        sequences generated at once (engine slots). Default: sized to memory,\n"
    "                      KV pool tokens / 1024, between 1 and 32\n"
    "  --ctx N             context window of EACH sequence, prompt + output (default: the model's\n"
    "                      max_position_embeddings, at most the KV pool). The context is per\n"
    "                      sequence, never divided among slots: all slots draw KV blocks from one\n"
    "                      shared pool until it is full (then the youngest waits and is recomputed)\n"
    "  --kv-tokens N       size of that shared KV pool in tokens (default: half the memory left\n"
    "                      after the weights, at most 32 full contexts, at least 4096 or one\n"
    "                      full context if smaller)\n"
  "  --max-queue N       requests waiting for a slot (default 64); more get 429 (OpenAI) or\n"
    "                      529 overloaded_error (Anthropic)\n"
    "  --chat-template T   override the tokenizer's chat template (phi3|phi3.5|phi4|llama2|\n"
    "                      phi3-original|phi3-medium|raw)\n"
    "  --api-key KEY       require KEY on /v1/* as x-api-key or Authorization: Bearer (401 otherwise)\n"
    "  --max-body BYTES    largest request body (default 33554432 = 32 MiB; larger: 413)\n"
    "  --keep-billing-header  keep Claude Code's per-request \"x-anthropic-billing-header: ...;\n"
    "                      cch=<hash>;\" system line in the prompt. By default it is dropped, since\n"
    "                      it changes every request and would defeat prefix-cache reuse\n"
    "  --model-id NAME     the model name responses report (default: from --model); clients may\n"
    "                      send any model name\n"
    "  --quiet             no per-request log lines (stderr)\n"
    "\nmodel options (--model defaults to mlx-community/Phi-3-mini-4k-instruct-4bit; --ctx is above):\n";

// MemAvailable from /proc/meminfo, in bytes (0 if unknown).
int64_t mem_available() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

// Bytes of the model's weight files (they are mapped and end up resident).
int64_t weights_bytes(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  int64_t total = 0;
  for (auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".safetensors") continue;
    auto n = fs::file_size(e.path(), ec);  // follows symlinks (the HF cache links to blobs)
    if (!ec) total += int64_t(n);
  }
  return total;
}

std::string default_model_id(const std::string& spec, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (spec != "demo" && !fs::is_directory(spec, ec)) return spec;  // a repo: org/name[@rev]
  if (spec == "demo") return "demo";
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  ModelArgs margs;
  std::string chat_template, model_id;
  int64_t parallel = 0, kv_tokens = 0, max_queue = 64, max_body = 32 << 20;
  int port = 8080;
  bool keep_billing_header = false, quiet = false;
  server::ServerOptions so;
  std::string usage = std::string(kUsage) + kModelOptionsHelp;
  Args a("serve", usage.c_str());
  margs.add_to(a);
  a.option("--host", &so.host);
  a.option("--port", &port);
  a.option("--parallel", &parallel);
  a.option("--kv-tokens", &kv_tokens);
  a.option("--max-queue", &max_queue);
  a.option("--max-body", &max_body);
  a.option("--chat-template", &chat_template);
  a.option("--api-key", &so.api_key);
  a.flag("--keep-billing-header", &keep_billing_header);
  a.option("--model-id", &model_id);
  a.flag("--quiet", &quiet, "-q");
  if (int rc; !a.parse(argc, argv, &rc)) return rc;
  auto bad = [&](const char* what) {
    std::fprintf(stderr, "pensieve serve: %s (see pensieve serve --help)\n", what);
    return 2;
  };
  if (port < 0 || port > 65535) return bad("--port needs a port number 0..65535");
  if (a.given("--parallel") && (parallel < 1 || parallel > 1024)) return bad("--parallel needs a number 1..1024");
  if (a.given("--ctx") && margs.ctx < 16) return bad("--ctx needs a number of tokens >= 16");
  if (a.given("--kv-tokens") && (kv_tokens < 16 || kv_tokens > (int64_t(1) << 32))) return bad("--kv-tokens needs a number of tokens >= 16");
  if (max_queue < 0) return bad("--max-queue needs a number >= 0");
  if (max_body < 1024) return bad("--max-body needs a number of bytes >= 1024");
  if (a.given("--api-key") && so.api_key.empty()) return bad("--api-key needs a value");
  so.port = port;
  so.max_body_bytes = size_t(max_body);
  so.parse.strip_billing_header = !keep_billing_header;
  so.log_requests = !quiet;
  if (margs.model.empty()) margs.model = kDefaultModelRepo;
  auto mo = margs.options();
  if (!mo) {
    std::fprintf(stderr, "pensieve serve: %s\n", mo.error().c_str());
    return 2;
  }
  int64_t ctx = margs.ctx;

  // SIGINT/SIGTERM go to one watcher thread (sigwait); every thread started from here on
  // inherits the blocked mask. Writes to a closed socket must not kill the process.
  signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  auto dir = margs.resolve();
  if (!dir) {
    std::fprintf(stderr, "pensieve serve: %s\n", dir.error().c_str());
    return 1;
  }
  auto config = load_model_config(*dir);
  if (!config) {
    std::fprintf(stderr, "pensieve serve: %s\n", config.error().c_str());
    return 1;
  }

  // Sizing. KV bytes per token: K and V, every layer, f16.
  const int64_t kv_bytes_per_token = 2 * int64_t(config->n_layers) * config->kv_dim() * 2;
  if (ctx == 0) ctx = config->max_positions;
  ctx = std::min(ctx, config->max_positions);
  if (kv_tokens == 0) {
    int64_t avail = mem_available() - weights_bytes(*dir);
    int64_t budget = avail > 0 ? avail / 2 : 0;
    kv_tokens = std::min(budget / kv_bytes_per_token, 32 * ctx);
    kv_tokens = std::max(kv_tokens, std::min<int64_t>(ctx, 4096));
  }
  if (ctx > kv_tokens) {
    std::fprintf(stderr, "pensieve serve: the context is capped at the KV pool, %lld tokens (--ctx %lld)\n",
                 (long long)kv_tokens, (long long)ctx);
    ctx = kv_tokens;
  }
  if (parallel == 0) parallel = std::clamp<int64_t>(kv_tokens / 1024, 1, 32);
  so.engine.max_seqs = int(parallel);
  so.engine.max_queue = max_queue;
  so.engine.max_ctx = ctx;
  so.model_id = model_id.empty() ? default_model_id(margs.model, *dir) : model_id;

  server::Server srv(so);
  auto bound = srv.bind();
  if (!bound) {
    std::fprintf(stderr, "pensieve %s\n", bound.error().c_str());
    return 1;
  }
  std::thread http([&] { srv.serve(); });
  std::atomic<bool> exiting{false}, signalled{false};
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (exiting) return;
    signalled = true;
    std::fprintf(stderr, "pensieve serve: %s, shutting down\n", sig == SIGINT ? "interrupted" : "terminated");
    srv.stop();
  });
  // Stops the server (if a signal has not), waits for the HTTP and watcher threads.
  auto finish = [&](int code) {
    srv.stop();
    if (http.joinable()) http.join();
    exiting = true;
    if (!signalled) pthread_kill(watcher.native_handle(), SIGTERM);  // wakes its sigwait
    watcher.join();
    if (code == 0) std::fprintf(stderr, "pensieve serve: stopped\n");
    return code;
  };

  std::fprintf(stderr, "pensieve serve: loading %s (%s) on %s\n", so.model_id.c_str(), dir->c_str(), srv.url().c_str());
  auto tok = Tokenizer::load(*dir);
  if (!tok) {
    std::fprintf(stderr, "pensieve serve: %s\n", tok.error().c_str());
    return finish(1);
  }
  auto tmpl = ChatTemplate::select(*tok, chat_template);
  if (!tmpl) {
    std::fprintf(stderr, "pensieve serve: %s\n", tmpl.error().c_str());
    return finish(1);
  }
  mo->kv.n_blocks = (kv_tokens + mo->kv.block_size - 1) / mo->kv.block_size;
  auto model = Model::load(*dir, *mo);
  if (!model) {
    std::fprintf(stderr, "pensieve serve: %s\n", model.error().c_str());
    return finish(1);
  }
  double load_s = (*model)->load_seconds();
  std::string template_name(tmpl->name());
  srv.attach(std::move(*model), std::move(*tok), std::move(*tmpl));
  if (srv.ready()) {
    if (srv.warm_up_seconds() > 0)
      std::fprintf(stderr, "pensieve serve: GPU pipelines for every step size built in %.1f s\n", srv.warm_up_seconds());
    std::fprintf(stderr,
                 "pensieve serve: ready in %.1f s: %lld slots, context %lld tokens per sequence, KV pool %lld tokens "
                 "(%.2f GiB) shared by all slots, chat template %s\n",
                 load_s + srv.warm_up_seconds(), (long long)parallel, (long long)srv.context_tokens(), (long long)kv_tokens,
                 double(kv_tokens * kv_bytes_per_token) / (1 << 30), template_name.c_str());
    std::printf("pensieve serve: %s at %s\n", so.model_id.c_str(), srv.url().c_str());
    std::fflush(stdout);
  }
  http.join();  // until a signal stops the server
  return finish(0);
}

}  // namespace pensieve::cli
