// Server counters for GET /metrics (Prometheus text format 0.0.4), next to the engine's own
// EngineStats (queue depth, slots, KV blocks, preemptions, token totals).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "models/engine.h"

namespace pensieve::server {

class Metrics {
 public:
  // One HTTP request answered (any path; unknown paths are counted as "other").
  void http_request(const std::string& path, int status);
  // One generated token (engine thread), for the tokens/s gauge.
  void token();
  // Generations that ended because the client went away (cancelled in queue, prefill or decode).
  void client_gone() { ++client_gone_; }
  void generation_finished(const char* reason);

  struct Info {
    bool ready = false;
    int slots = 0;
    int64_t max_queue = 0;
    int64_t ctx = 0;
  };
  std::string render(const EngineStats& s, const Info& info);

 private:
  // Tokens per second over the last kWindow whole seconds: one bucket per second.
  static constexpr int kWindow = 10;
  std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> http_;  // (path, status) -> count
  std::map<std::string, int64_t> finished_;              // stop reason / outcome -> count
  int64_t bucket_sec_[kWindow] = {};
  int64_t bucket_n_[kWindow] = {};
  int64_t tokens_total_ = 0;
  std::atomic<int64_t> client_gone_{0};
};

}  // namespace pensieve::server
