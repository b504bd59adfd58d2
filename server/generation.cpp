#include "server/generation.h"

#include <algorithm>

namespace pensieve::server {

Generation::Generation(const Tokenizer& tok, std::vector<std::string> stops, Metrics* metrics)
    : metrics_(metrics), stream_(tok, std::move(stops), /*skip_special=*/true) {}

Request Generation::make_request(const std::shared_ptr<Generation>& g, std::vector<int32_t> prompt,
                                 const SamplingParams& sampling, int64_t max_tokens,
                                 std::vector<int32_t> stop_ids) {
  Request r;
  r.prompt = std::move(prompt);
  r.sampling = sampling;
  r.max_tokens = max_tokens;
  r.stop_ids = std::move(stop_ids);
  r.on_start = [g](int64_t cached) { g->on_start(cached); };
  r.on_token = [g](int32_t id) { return g->on_token(id); };
  r.on_finish = [g](const Finish& f) { g->on_finish(f); };
  return r;
}

void Generation::on_start(int64_t cached) {
  std::lock_guard<std::mutex> lock(mu_);
  started_ = true;
  cached_ = cached;
  cv_.notify_all();
}

bool Generation::on_token(int32_t id) {
  // Decoder and matcher belong to the engine thread; only the result is shared.
  if (metrics_) metrics_->token();
  std::string text = stream_.push(id);
  std::lock_guard<std::mutex> lock(mu_);
  if (!text.empty()) {
    pending_ += text;
    all_text_ += text;
    cv_.notify_all();
  }
  return !stream_.stopped() && !abandoned_;
}

void Generation::on_finish(const Finish& f) {
  std::string text = stream_.finish();
  std::lock_guard<std::mutex> lock(mu_);
  pending_ += text;
  all_text_ += text;
  finish_ = f;
  done_ = true;
  cv_.notify_all();
}

Generation::Update Generation::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  auto news = [&] { return !pending_.empty() || (started_ && !reported_start_) || (done_ && !reported_done_); };
  cv_.wait_for(lock, timeout, news);
  Update u;
  u.text = std::move(pending_);
  pending_.clear();
  u.started = started_;
  u.done = done_;
  reported_start_ = started_;
  reported_done_ = done_;
  return u;
}

void Generation::abandon() {
  std::lock_guard<std::mutex> lock(mu_);
  abandoned_ = true;
}

int64_t Generation::cached_tokens() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_;
}

StopReason Generation::stop_reason() const {
  if (!stream_.stop_string().empty()) return StopReason::stop_sequence;
  if (finish_.reason == FinishReason::stop_token) return StopReason::end_turn;
  return StopReason::max_tokens;
}

bool Generation::failed() const {
  if (finish_.reason == FinishReason::error || finish_.reason == FinishReason::cancelled) return true;
  return finish_.reason == FinishReason::callback && stream_.stop_string().empty();
}

}  // namespace pensieve::server
