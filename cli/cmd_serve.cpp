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
    "  --model SPEC        a model directory, a Hugging Face repo org/name[@revision] (pulled into\n"
    "                      the HF cache when missing), or \"demo\"\n"
    "                      (default: mlx-community/Phi-3-mini-4k-instruct-4bit)\n"
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
    "  --device D          auto|cpu|vulkan[:N] (default auto = cpu for now: the Vulkan forward\n"
    "                      pass is not wired into the model loader yet)\n"
    "  --threads N         CPU threads for the model (default: all cores)\n"
    "  --precision P       exact|fast (default fast)\n"
    "  --chat-template T   override the tokenizer's chat template (phi3|phi3.5|phi4|llama2|\n"
    "                      phi3-original|phi3-medium|raw)\n"
    "  --api-key KEY       require KEY on /v1/* as x-api-key or Authorization: Bearer (401 otherwise)\n"
    "  --max-body BYTES    largest request body (default 33554432 = 32 MiB; larger: 413)\n"
    "  --keep-billing-header  keep Claude Code's per-request \"x-anthropic-billing-header: ...;\n"
    "                      cch=<hash>;\" system line in the prompt. By default it is dropped, since\n"
    "                      it changes every request and would defeat prefix-cache reuse\n"
    "  --model-id NAME     the model name responses report (default: from --model); clients may\n"
    "                      send any model name\n"
    "  --demo-dir DIR      where --model demo points (default: $PENSIEVE_DEMO_DIR)\n"
    "  --quiet             no per-request log lines (stderr)\n";

int usage_error(const char* fmt, const char* arg) {
  std::fprintf(stderr, "pensieve serve: ");
  std::fprintf(stderr, fmt, arg);
  std::fprintf(stderr, "\n\n%s", kUsage);
  return 2;
}

bool parse_i64(const char* s, int64_t lo, int64_t hi, int64_t* out) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s, &end, 10);
  if (end == s || *end || errno == ERANGE || v < lo || v > hi) return false;
  *out = v;
  return true;
}

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
  std::string spec, device = "auto", chat_template, demo_dir, model_id;
  const char* env_demo = std::getenv("PENSIEVE_DEMO_DIR");
  if (env_demo) demo_dir = env_demo;
  int64_t parallel = 0, ctx = 0, kv_tokens = 0, max_queue = 64, threads = 0;
  Precision precision = Precision::fast;
  server::ServerOptions so;
  so.port = 8080;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    auto number = [&](int64_t lo, int64_t hi, int64_t* out) {
      const char* v = value();
      return v && parse_i64(v, lo, hi, out);
    };
    int64_t n = 0;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--model") {
      const char* v = value();
      if (!v) return usage_error("%s needs a value", "--model");
      spec = v;
    } else if (a == "--host") {
      const char* v = value();
      if (!v) return usage_error("%s needs a value", "--host");
      so.host = v;
    } else if (a == "--port") {
      if (!number(0, 65535, &n)) return usage_error("%s needs a port number 0..65535", "--port");
      so.port = int(n);
    } else if (a == "--parallel") {
      if (!number(1, 1024, &parallel)) return usage_error("%s needs a number 1..1024", "--parallel");
    } else if (a == "--ctx") {
      if (!number(16, int64_t(1) << 24, &ctx)) return usage_error("%s needs a number of tokens >= 16", "--ctx");
    } else if (a == "--kv-tokens") {
      if (!number(16, int64_t(1) << 32, &kv_tokens)) return usage_error("%s needs a number of tokens >= 16", "--kv-tokens");
    } else if (a == "--max-queue") {
      if (!number(0, 1 << 20, &max_queue)) return usage_error("%s needs a number >= 0", "--max-queue");
    } else if (a == "--threads") {
      if (!number(1, 1024, &threads)) return usage_error("%s needs a number 1..1024", "--threads");
    } else if (a == "--max-body") {
      if (!number(1024, int64_t(1) << 40, &n)) return usage_error("%s needs a number of bytes >= 1024", "--max-body");
      so.max_body_bytes = size_t(n);
    } else if (a == "--device") {
      const char* v = value();
      if (!v) return usage_error("%s needs a value", "--device");
      device = v;
    } else if (a == "--precision") {
      const char* v = value();
      if (!v || (std::strcmp(v, "exact") && std::strcmp(v, "fast")))
        return usage_error("%s needs exact or fast", "--precision");
      precision = !std::strcmp(v, "exact") ? Precision::exact : Precision::fast;
    } else if (a == "--chat-template") {
      const char* v = value();
      if (!v) return usage_error("%s needs a value", "--chat-template");
      chat_template = v;
    } else if (a == "--api-key") {
      const char* v = value();
      if (!v || !*v) return usage_error("%s needs a value", "--api-key");
      so.api_key = v;
    } else if (a == "--keep-billing-header") {
      so.parse.strip_billing_header = false;
    } else if (a == "--model-id") {
      const char* v = value();
      if (!v || !*v) return usage_error("%s needs a value", "--model-id");
      model_id = v;
    } else if (a == "--demo-dir") {
      const char* v = value();
      if (!v) return usage_error("%s needs a value", "--demo-dir");
      demo_dir = v;
    } else if (a == "--quiet" || a == "-q") {
      so.log_requests = false;
    } else {
      return usage_error("unknown option \"%s\"", a.c_str());
    }
  }
  if (device != "auto" && device != "cpu") {
    if (device.rfind("vulkan", 0) == 0) {
      std::fprintf(stderr,
                   "pensieve serve: --device %s: the Vulkan forward pass is not wired into the model loader yet; "
                   "use --device cpu\n",
                   device.c_str());
      return 2;
    }
    return usage_error("--device: \"%s\" is not auto, cpu or vulkan[:N]", device.c_str());
  }
  if (spec.empty()) spec = kDefaultModelRepo;

  // SIGINT/SIGTERM go to one watcher thread (sigwait); every thread started from here on
  // inherits the blocked mask. Writes to a closed socket must not kill the process.
  signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  ResolveOptions ro;
  ro.demo_dir = demo_dir;
  TerminalProgress progress(stderr);
  ro.pull.progress = &progress;
  auto dir = resolve_model(spec, ro);
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
  so.model_id = model_id.empty() ? default_model_id(spec, *dir) : model_id;

  server::Server srv(so);
  auto port = srv.bind();
  if (!port) {
    std::fprintf(stderr, "pensieve %s\n", port.error().c_str());
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
  ModelOptions mo;
  mo.precision = precision;
  mo.threads = int(threads);
  mo.kv.n_blocks = (kv_tokens + mo.kv.block_size - 1) / mo.kv.block_size;
  auto model = Model::load(*dir, mo);
  if (!model) {
    std::fprintf(stderr, "pensieve serve: %s\n", model.error().c_str());
    return finish(1);
  }
  double load_s = (*model)->load_seconds();
  std::string template_name(tmpl->name());
  srv.attach(std::move(*model), std::move(*tok), std::move(*tmpl));
  if (srv.ready()) {
    std::fprintf(stderr,
                 "pensieve serve: ready in %.1f s: %lld slots, context %lld tokens per sequence, KV pool %lld tokens "
                 "(%.2f GiB) shared by all slots, chat template %s\n",
                 load_s, (long long)parallel, (long long)srv.context_tokens(), (long long)kv_tokens,
                 double(kv_tokens * kv_bytes_per_token) / (1 << 30), template_name.c_str());
    std::printf("pensieve serve: %s at %s\n", so.model_id.c_str(), srv.url().c_str());
    std::fflush(stdout);
  }
  http.join();  // until a signal stops the server
  return finish(0);
}

}  // namespace pensieve::cli
