#include "server/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "server/connection.h"
#include "server/format.h"
#include "server/generation.h"

namespace pensieve::server {

namespace {

using Clock = std::chrono::steady_clock;

// What the request log line says about the request this thread is answering. Handlers, the
// stream provider and httplib's logger all run on the connection's thread, one request at a time.
struct RequestLog {
  Clock::time_point start;
  int64_t prompt = -1, cached = -1, output = -1;
  std::string outcome;
};
thread_local RequestLog t_log;

// Which API's error shape a request gets: by path, else by the headers an Anthropic client sends.
Api api_for(const httplib::Request& req) {
  if (req.path.rfind("/v1/messages", 0) == 0) return Api::anthropic;
  if (req.path.rfind("/v1/chat/", 0) == 0) return Api::openai;
  if (req.has_header("anthropic-version") || req.has_header("x-api-key")) return Api::anthropic;
  return Api::openai;
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char d = a.size() != b.size();
  for (size_t i = 0; i < a.size(); ++i) d |= (unsigned char)(a[i] ^ b[i % (b.size() ? b.size() : 1)]);
  return d == 0;
}

const char* outcome_name(const Generation& g) {
  if (g.failed()) {
    switch (g.finish().reason) {
      case FinishReason::cancelled: return "cancelled";
      case FinishReason::callback: return "client_gone";
      default: return "error";
    }
  }
  return anthropic_stop_reason(g.stop_reason());
}

// The client-facing error of a generation that failed.
ApiError generation_error(const Generation& g) {
  const Finish& f = g.finish();
  if (f.reason == FinishReason::cancelled)
    return {ErrorKind::unavailable, f.error.empty() ? "the request was cancelled" : f.error};
  return {ErrorKind::internal, "generation failed: " + (f.error.empty() ? std::string("unknown error") : f.error)};
}

void fill(Completion& c, const Generation& g) {
  c.text = g.text();
  c.stop_reason = g.stop_reason();
  c.stop_sequence = g.stop_sequence();
  c.output_tokens = g.finish().output_tokens;
  c.cached_tokens = g.finish().cached_tokens;
}

// State of one streamed response, shared by httplib's content provider and its releaser.
struct StreamState {
  Api api;
  std::shared_ptr<Generation> gen;
  uint64_t seq = 0;
  int fd = -1;
  bool include_usage = false;
  Completion c;
  bool started = false;
  bool finished = false;  // the provider wrote the end (or the error) of the stream
};

}  // namespace

Server::Server(ServerOptions o) : o_(std::move(o)), http_(std::make_unique<httplib::Server>()) { routes(); }

Server::~Server() {
  stop();
  if (engine_thread_.joinable()) engine_thread_.join();
}

std::string Server::url() const {
  bool v6 = o_.host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + o_.host + "]" : o_.host) + ":" + std::to_string(port_);
}

Result<int> Server::bind() {
  int threads = o_.http_threads;
  if (threads <= 0) {
    // Every streaming client holds a thread for its whole response, waiting requests too; the
    // margin keeps /health, /metrics and new connections answered when all slots stream.
    int64_t want = int64_t(o_.engine.max_seqs) + o_.engine.max_queue + 16;
    threads = int(std::clamp<int64_t>(want, 32, 1024));
  }
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  http_->set_payload_max_length(o_.max_body_bytes);
  http_->set_tcp_nodelay(true);  // SSE events are small writes: no Nagle delay
  // httplib's default sets SO_REUSEPORT, which lets a second server bind the same port and
  // silently take half the connections. SO_REUSEADDR only: a restart can rebind at once, a
  // second server gets "address in use".
  http_->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http_->set_keep_alive_max_count(100);
  http_->set_read_timeout(30);
  if (o_.port == 0) {
    int p = http_->bind_to_any_port(o_.host);
    if (p <= 0) return errorf("serve: cannot bind %s on any port", o_.host.c_str());
    port_ = p;
  } else {
    if (!http_->bind_to_port(o_.host, o_.port))
      return errorf("serve: cannot bind %s:%d (in use, or not an address of this machine?)", o_.host.c_str(),
                    o_.port);
    port_ = o_.port;
  }
  return port_;
}

void Server::serve() {
  {
    std::lock_guard<std::mutex> lock(serve_mu_);
    if (stopped_) return;
    serving_ = true;
  }
  http_->listen_after_bind();
  listen_returned_ = true;
}

void Server::attach(std::unique_ptr<Model> model, Tokenizer tokenizer, ChatTemplate chat_template) {
  model_ = std::move(model);
  tok_.emplace(std::move(tokenizer));
  tmpl_.emplace(std::move(chat_template));
  engine_ = std::make_unique<Engine>(*model_, o_.engine);
  warm_up_s_ = engine_->warm_up();  // GPU pipelines of every step size, while /health says "loading"
  std::shared_lock lock(submit_mu_);
  if (stopping_) return;
  engine_thread_ = std::thread([this] { engine_->run(); });
  ready_.store(true, std::memory_order_release);
}

void Server::stop() {
  if (stopped_.exchange(true)) return;
  {
    std::unique_lock lock(submit_mu_);
    stopping_ = true;
  }
  if (engine_) {
    // Running and waiting sequences end as cancelled ("server shutting down"); their handlers
    // write the error and finish, then the HTTP server stops.
    engine_->stop();
    if (engine_thread_.joinable()) engine_thread_.join();
    std::this_thread::sleep_for(std::chrono::milliseconds(2 * o_.poll_ms + 50));
  }
  // httplib's stop() does nothing until listen has started: if serve() is on its way there,
  // wait for it (else it would listen forever).
  bool serving;
  {
    std::lock_guard<std::mutex> lock(serve_mu_);
    serving = serving_;
  }
  while (serving && !http_->is_running() && !listen_returned_)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  http_->stop();
}

EngineStats Server::engine_stats() const {
  if (!ready()) return {};
  return engine_->stats();
}

int64_t Server::context_tokens() const { return ready() ? engine_->max_ctx() : 0; }

void Server::write_error(Api api, httplib::Response& res, const ApiError& e) {
  if (api == Api::anthropic) {
    res.status = anthropic_status(e.kind);
    res.set_content(dump(anthropic_error_json(e)), "application/json");
  } else {
    res.status = openai_status(e.kind);
    res.set_content(dump(openai_error_json(e)), "application/json");
  }
  t_log.outcome = "error";
}

void Server::client_gone(uint64_t seq_id) {
  metrics_.client_gone();  // first: once the engine has cancelled, the count is already visible
  engine_->cancel(seq_id);
}

void Server::routes() {
  http_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_log = RequestLog{};
    t_log.start = Clock::now();
    if (o_.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    std::string key = req.get_header_value("x-api-key");
    if (key.empty()) {
      std::string auth = req.get_header_value("Authorization");
      if (auth.rfind("Bearer ", 0) == 0) key = auth.substr(7);
    }
    if (constant_time_equal(key, o_.api_key)) return httplib::Server::HandlerResponse::Unhandled;
    write_error(api_for(req), res,
                {ErrorKind::authentication, key.empty() ? "missing API key: send it as x-api-key or Authorization: Bearer"
                                                        : "invalid API key"});
    return httplib::Server::HandlerResponse::Handled;
  });

  // httplib's own errors (404 no route, 413 body too large, 400 bad request line): fill in the
  // API's JSON shape.
  http_->set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                         httplib::Response& res) {
    // 499: the client left (nothing to tell it).
    if (!res.body.empty() || res.status == 499) return httplib::Server::HandlerResponse::Unhandled;
    ApiError e;
    switch (res.status) {
      case 404: e = {ErrorKind::not_found, req.method + " " + req.path + " is not an endpoint of this server"}; break;
      case 413:
        e = {ErrorKind::too_large, "the request body is larger than the limit of " + std::to_string(o_.max_body_bytes) +
                                       " bytes (--max-body)"};
        break;
      default: e = {ErrorKind::invalid_request, "bad request (HTTP status " + std::to_string(res.status) + ")"};
    }
    int status = res.status;
    write_error(api_for(req), res, e);
    res.status = status;
    return httplib::Server::HandlerResponse::Handled;
  }));

  // A handler that throws (it should not: parsing is exception-free) answers 500, not a crash.
  http_->set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    write_error(api_for(req), res, {ErrorKind::internal, "internal error: " + what});
  });

  http_->set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics_.http_request(req.path, res.status);
    if (!o_.log_requests) {
      t_log = RequestLog{};
      return;
    }
    double secs = std::chrono::duration<double>(Clock::now() - t_log.start).count();
    std::string tokens;
    if (t_log.prompt >= 0) tokens += " prompt=" + std::to_string(t_log.prompt);
    if (t_log.cached >= 0) tokens += " cached=" + std::to_string(t_log.cached);
    if (t_log.output >= 0) tokens += " output=" + std::to_string(t_log.output);
    if (!t_log.outcome.empty()) tokens += " " + t_log.outcome;
    std::fprintf(stderr, "%s %s %d%s %.3fs\n", req.method.c_str(), req.path.c_str(), res.status, tokens.c_str(), secs);
    t_log = RequestLog{};
  });

  http_->Post("/v1/messages", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generate(Api::anthropic, req, res, false);
  });
  http_->Post("/v1/messages/count_tokens", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generate(Api::anthropic, req, res, true);
  });
  http_->Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generate(Api::openai, req, res, false);
  });
  http_->Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) { handle_models(req, res); });
  http_->Get("/v1/models/(.+)", [this](const httplib::Request& req, httplib::Response& res) { handle_models(req, res); });

  http_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    bool stopping = stopped_.load();
    const char* status = stopping ? "stopping" : ready() ? "ok" : "loading";
    res.status = !stopping && ready() ? 200 : 503;
    ojson j;
    j["status"] = status;
    j["model"] = o_.model_id;
    res.set_content(dump(j), "application/json");
  });

  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    Metrics::Info info;
    info.ready = ready();
    info.slots = o_.engine.max_seqs;
    info.max_queue = o_.engine.max_queue;
    info.ctx = context_tokens();
    res.set_content(metrics_.render(engine_stats(), info), "text/plain; version=0.0.4");
  });
}

void Server::handle_models(const httplib::Request& req, httplib::Response& res) {
  // One entry that both SDKs read: OpenAI's {id, object, created, owned_by} and Anthropic's
  // {type, id, display_name, created_at}. Any id asked for answers with our model.
  ojson m;
  m["id"] = o_.model_id;
  m["object"] = "model";
  m["type"] = "model";
  m["created"] = 0;
  m["created_at"] = "1970-01-01T00:00:00Z";
  m["display_name"] = o_.model_id;
  m["owned_by"] = "pensieve";
  if (req.path != "/v1/models") {
    res.set_content(dump(m), "application/json");
    return;
  }
  ojson j;
  j["object"] = "list";
  j["data"] = ojson::array({m});
  j["has_more"] = false;
  j["first_id"] = o_.model_id;
  j["last_id"] = o_.model_id;
  res.set_content(dump(j), "application/json");
}

void Server::handle_generate(Api api, const httplib::Request& req, httplib::Response& res, bool count_only) {
  auto fail = [&](ErrorKind k, const std::string& msg) { write_error(api, res, {k, msg}); };
  auto body = parse_json_body(req.body);
  if (!body) return fail(ErrorKind::invalid_request, body.error());
  auto cr = api == Api::anthropic ? parse_anthropic_messages(*body, o_.parse, count_only)
                                  : parse_openai_chat(*body, o_.parse);
  if (!cr) return fail(ErrorKind::invalid_request, cr.error());
  if (!ready())
    return fail(ErrorKind::unavailable,
                stopped_ ? "the server is shutting down" : "the model is still loading (GET /health says when it is ready)");

  auto text = render_prompt(*cr, *tmpl_);
  if (!text) return fail(ErrorKind::invalid_request, text.error());
  EncodeOptions enc;
  enc.add_special_tokens = tmpl_->add_special_tokens();
  auto ids = tok_->encode(*text, enc);
  if (!ids) return fail(ErrorKind::internal, "tokenizing the prompt: " + ids.error());
  const int64_t n = int64_t(ids->size());
  t_log.prompt = n;
  if (count_only) {
    res.set_content(dump(ojson{{"input_tokens", n}}), "application/json");
    return;
  }

  // Never truncate: a prompt that does not fit is the client's to shorten.
  const int64_t ctx = engine_->max_ctx();
  if (n == 0) return fail(ErrorKind::invalid_request, "the prompt is empty");
  if (n >= ctx)
    return fail(ErrorKind::invalid_request,
                "prompt is too long: " + std::to_string(n) + " tokens, but the context window is " +
                    std::to_string(ctx) + " tokens (prompt + at least 1 output token must fit)");
  if (cr->max_tokens > ctx)
    return fail(ErrorKind::invalid_request,
                "max_tokens: " + std::to_string(cr->max_tokens) + " is more than the context window of " +
                    std::to_string(ctx) +
                    " tokens (Claude Code: set CLAUDE_CODE_MAX_OUTPUT_TOKENS lower, or serve with a larger --ctx)");
  // Output stops where the context ends (stop_reason max_tokens / finish_reason length).
  const int64_t max_tokens = cr->max_tokens > 0 ? std::min(cr->max_tokens, ctx - n) : ctx - n;

  auto gen = std::make_shared<Generation>(*tok_, cr->stop, &metrics_);
  bool stopping = false;
  Result<uint64_t> seq = [&]() -> Result<uint64_t> {
    std::shared_lock lock(submit_mu_);
    if (stopping_) {
      stopping = true;
      return errorf("the server is shutting down");
    }
    return engine_->submit(Generation::make_request(gen, std::move(*ids), cr->sampling, max_tokens,
                                                    tok_->special_tokens().stop));
  }();
  if (!seq) {
    if (stopping) return fail(ErrorKind::unavailable, seq.error());
    if (seq.error().rfind("overloaded", 0) == 0)
      return fail(ErrorKind::overloaded, "the server is overloaded (" + seq.error().substr(std::min<size_t>(12, seq.error().size())) +
                                             "; --parallel and --max-queue set the limits); retry later");
    return fail(ErrorKind::invalid_request, seq.error());
  }

  Completion c;
  c.id = random_id(api == Api::anthropic ? "msg_" : "chatcmpl-");
  c.model = o_.model_id;
  c.created = int64_t(std::time(nullptr));
  c.prompt_tokens = n;
  const int fd = find_connection_fd(req.local_port, req.remote_addr, req.remote_port);
  const auto poll = std::chrono::milliseconds(o_.poll_ms);

  if (!cr->stream) {
    for (;;) {
      if (gen->wait(poll).done) break;
      if (peer_closed(fd)) {
        gen->abandon();
        client_gone(*seq);
        metrics_.generation_finished("client_gone");
        t_log.outcome = "client_gone";
        res.status = 499;  // nginx's "client closed request": only the log sees it
        return;
      }
    }
    fill(c, *gen);
    t_log.cached = c.cached_tokens;
    t_log.output = c.output_tokens;
    metrics_.generation_finished(outcome_name(*gen));
    if (gen->failed()) return write_error(api, res, generation_error(*gen));
    t_log.outcome = outcome_name(*gen);
    res.set_content(dump(api == Api::anthropic ? anthropic_message(c) : openai_completion(c)), "application/json");
    return;
  }

  auto st = std::make_shared<StreamState>();
  st->api = api;
  st->gen = gen;
  st->seq = *seq;
  st->fd = fd;
  st->include_usage = cr->include_usage;
  st->c = std::move(c);
  t_log.outcome = "client_gone";  // replaced when the stream ends normally
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, st, poll](size_t, httplib::DataSink& sink) {
        Generation::Update u = st->gen->wait(poll);
        std::string out;
        Completion& c = st->c;
        if (u.started && !st->started) {
          st->started = true;
          c.cached_tokens = st->gen->cached_tokens();
          if (st->api == Api::anthropic) {
            out += anthropic_stream_start(c);
          } else {
            out += openai_chunk(c, ojson{{"role", "assistant"}, {"content", ""}}, nullptr, st->include_usage);
          }
        }
        if (!u.text.empty()) {
          out += st->api == Api::anthropic ? anthropic_stream_delta(u.text)
                                           : openai_chunk(c, ojson{{"content", u.text}}, nullptr, st->include_usage);
        }
        if (u.done) {
          const Generation& g = *st->gen;
          fill(c, g);
          t_log.cached = c.cached_tokens;
          t_log.output = c.output_tokens;
          t_log.outcome = outcome_name(g);
          metrics_.generation_finished(outcome_name(g));
          if (g.failed()) {
            ApiError e = generation_error(g);
            out += st->api == Api::anthropic ? anthropic_stream_error(e) : openai_stream_error(e);
          } else if (st->api == Api::anthropic) {
            out += anthropic_stream_end(c);
          } else {
            out += openai_chunk(c, ojson::object(), openai_finish_reason(c.stop_reason), st->include_usage);
            if (st->include_usage) out += openai_stream_usage(c);
            out += kOpenAiDone;
          }
          st->finished = true;
          if (sink.write(out.data(), out.size())) sink.done();
          return true;
        }
        // A failed write or a closed socket: the client is gone; the releaser cancels the sequence.
        if (!out.empty() && !sink.write(out.data(), out.size())) return false;
        return !peer_closed(st->fd);
      },
      [this, st](bool) {
        if (st->finished) return;
        st->gen->abandon();
        client_gone(st->seq);
        metrics_.generation_finished("client_gone");
      });
}

}  // namespace pensieve::server
