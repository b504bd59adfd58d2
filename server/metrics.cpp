#include "server/metrics.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>

namespace pensieve::server {

namespace {

int64_t now_sec() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

const char* known_path(const std::string& p) {
  for (const char* k : {"/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions", "/v1/models",
                        "/health", "/metrics"})
    if (p == k) return k;
  if (p.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

void metric(std::string& out, const char* name, const char* type, const char* help, double v) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
  out += buf;
}

}  // namespace

void Metrics::http_request(const std::string& path, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++http_[{known_path(path), status}];
}

void Metrics::token() {
  int64_t s = now_sec();
  std::lock_guard<std::mutex> lock(mu_);
  int i = int(s % kWindow);
  if (bucket_sec_[i] != s) bucket_sec_[i] = s, bucket_n_[i] = 0;
  ++bucket_n_[i];
  ++tokens_total_;
}

void Metrics::generation_finished(const char* reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++finished_[reason];
}

std::string Metrics::render(const EngineStats& s, const Info& info) {
  std::string out;
  out.reserve(4096);
  std::lock_guard<std::mutex> lock(mu_);
  // The window is the kWindow seconds before the current one (which is still filling).
  int64_t now = now_sec(), n = 0;
  for (int i = 0; i < kWindow; ++i)
    if (bucket_sec_[i] < now && bucket_sec_[i] >= now - kWindow) n += bucket_n_[i];

  metric(out, "pensieve_ready", "gauge", "1 when the model is loaded and requests are served", info.ready ? 1 : 0);
  out += "# HELP pensieve_http_requests_total HTTP requests answered, by path and status.\n"
         "# TYPE pensieve_http_requests_total counter\n";
  for (auto& [k, v] : http_) {
    char buf[256];
    std::snprintf(buf, sizeof(buf), "pensieve_http_requests_total{path=\"%s\",status=\"%d\"} %" PRId64 "\n",
                  k.first.c_str(), k.second, v);
    out += buf;
  }
  out += "# HELP pensieve_generations_total Generations finished, by outcome.\n"
         "# TYPE pensieve_generations_total counter\n";
  for (auto& [k, v] : finished_) {
    char buf[256];
    std::snprintf(buf, sizeof(buf), "pensieve_generations_total{outcome=\"%s\"} %" PRId64 "\n", k.c_str(), v);
    out += buf;
  }
  metric(out, "pensieve_client_disconnects_total", "counter",
         "Generations cancelled because the client went away (in queue, prefill or decode).",
         double(client_gone_.load()));
  metric(out, "pensieve_requests_total", "counter", "Requests admitted by the engine.", double(s.requests_total));
  metric(out, "pensieve_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.",
         double(s.prompt_tokens_total));
  metric(out, "pensieve_cached_prompt_tokens_total", "counter", "Prompt tokens reused from the prefix cache.",
         double(s.cached_tokens_total));
  metric(out, "pensieve_output_tokens_total", "counter", "Tokens generated.", double(tokens_total_));
  metric(out, "pensieve_output_tokens_per_second", "gauge", "Tokens generated per second over the last 10 s.",
         double(n) / kWindow);
  metric(out, "pensieve_queue_depth", "gauge", "Requests waiting for a slot.", double(s.waiting));
  metric(out, "pensieve_active_slots", "gauge", "Sequences running (prefill or decode).", double(s.running));
  metric(out, "pensieve_slots", "gauge", "Engine slots (--parallel).", info.slots);
  metric(out, "pensieve_max_queue", "gauge", "Waiting requests allowed beyond the slots (--max-queue).",
         double(info.max_queue));
  metric(out, "pensieve_context_tokens", "gauge", "Context window per sequence.", double(info.ctx));
  metric(out, "pensieve_kv_blocks_total", "gauge", "KV cache blocks in the shared pool.", double(s.kv_blocks_total));
  metric(out, "pensieve_kv_blocks_used", "gauge", "KV blocks held by sequences or kept for prefix reuse.",
         double(s.kv_blocks_used));
  metric(out, "pensieve_kv_blocks_cached", "gauge", "KV blocks findable by prefix reuse.", double(s.kv_blocks_cached));
  metric(out, "pensieve_preemptions_total", "counter", "Sequences preempted (KV pool full) and later recomputed.",
         double(s.preemptions_total));
  metric(out, "pensieve_engine_steps_total", "counter", "Engine steps (batched forward passes).",
         double(s.steps_total));
  metric(out, "pensieve_engine_step_tokens_total", "counter", "Tokens run in engine steps (decode and prefill).",
         double(s.step_tokens_total));
  metric(out, "pensieve_engine_step_seconds_total", "counter",
         "Wall time of engine steps (scheduling, forward pass, sampling, streaming callbacks).", s.step_seconds_total);
  metric(out, "pensieve_engine_forward_seconds_total", "counter", "Part of the step time spent in the forward pass.",
         s.forward_seconds_total);
  metric(out, "pensieve_engine_prefill_steps_total", "counter", "Engine steps that prefilled prompt tokens.",
         double(s.prefill_steps_total));
  metric(out, "pensieve_engine_prefill_step_seconds_total", "counter", "Wall time of the steps that prefilled.",
         s.prefill_step_seconds_total);
  return out;
}

}  // namespace pensieve::server
