// The HTTP server: Anthropic Messages and OpenAI Chat Completions over one Engine.
//
//   POST /v1/messages               Anthropic Messages (stream or not)
//   POST /v1/messages/count_tokens  Anthropic token counting
//   POST /v1/chat/completions       OpenAI Chat Completions (stream or not)
//   GET  /v1/models[/ID]            the one model, in a shape both SDKs read
//   GET  /health                    200 {"status":"ok"} / 503 {"status":"loading"}
//   GET  /metrics                   Prometheus text
//
// Threads: cpp-httplib's pool runs one connection per thread; those threads parse, render and
// tokenize the prompt, submit it, then wait on their Generation and write what it produced. One
// engine thread (Engine::run) owns the model. A handler that finds its client gone (a failed
// write, or a closed socket while it waits) cancels the sequence, in the queue, in prefill or
// in decode.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>

#include "models/engine.h"
#include "models/model.h"
#include "models/tokenizer/chat_template.h"
#include "models/tokenizer/tokenizer.h"
#include "server/api.h"
#include "server/metrics.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace pensieve::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                  // 0: any free port (see Server::port())
  std::string api_key;              // non-empty: /v1/* need it as x-api-key or Authorization: Bearer
  size_t max_body_bytes = 32u << 20;  // larger bodies get 413
  ParseOptions parse;               // billing-header stripping
  std::string model_id = "pensieve";  // the "model" we report (clients may send any name)
  EngineOptions engine;             // slots (max_seqs), queue, per-sequence context
  int http_threads = 0;             // 0: slots + max_queue + 16, at least 32
  bool log_requests = true;         // one line per request on stderr
  int poll_ms = 50;                 // how often a waiting handler checks that its client is there
};

enum class Api { anthropic, openai };

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port; returns the port (the one the OS chose for port 0).
  Result<int> bind();
  // Serves on the calling thread until stop(). Until attach(), /health answers "loading" and
  // generation requests get 503.
  void serve();
  // The model is loaded: builds the engine over it and starts the engine thread.
  void attach(std::unique_ptr<Model> model, Tokenizer tokenizer, ChatTemplate chat_template);
  // Any thread (e.g. a signal watcher): new generation requests get 503, running ones end (an
  // error event on streams), the engine thread stops, then serve() returns. Idempotent.
  void stop();

  int port() const { return port_; }
  std::string url() const;
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  EngineStats engine_stats() const;
  // Seconds attach() spent in Engine::warm_up (GPU pipelines; 0 on the CPU).
  double warm_up_seconds() const { return warm_up_s_; }
  int64_t context_tokens() const;

 private:
  void routes();
  void handle_generate(Api api, const httplib::Request& req, httplib::Response& res, bool count_only);
  void handle_models(const httplib::Request& req, httplib::Response& res);
  void write_error(Api api, httplib::Response& res, const ApiError& e);
  void client_gone(uint64_t seq_id);

  ServerOptions o_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  Metrics metrics_;

  // Set once by attach(), before ready_ becomes true; read-only afterwards.
  std::unique_ptr<Model> model_;
  std::optional<Tokenizer> tok_;
  std::optional<ChatTemplate> tmpl_;
  std::unique_ptr<Engine> engine_;
  double warm_up_s_ = 0;
  std::thread engine_thread_;
  std::atomic<bool> ready_{false};

  // Submits hold it shared; stop() takes it exclusively to set stopping_, so no request is
  // submitted to an engine that has stopped.
  std::shared_mutex submit_mu_;
  bool stopping_ = false;  // guarded by submit_mu_
  std::atomic<bool> stopped_{false};
  std::mutex serve_mu_;
  bool serving_ = false;  // guarded by serve_mu_: serve() is about to listen (or listens)
  std::atomic<bool> listen_returned_{false};
};

}  // namespace pensieve::server
