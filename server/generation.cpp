#include "server/generation.h"

#include <algorithm>

namespace pensieve::server {

// held_ = text not yet emitted. A stop string found in it ends generation. Otherwise the longest
// suffix of held_ that is a proper prefix of some stop string is kept back and the rest emitted.
// Nothing emitted can be the start of a match: every position before the kept suffix starts
// neither a full stop string nor a prefix of one. The kept suffix starts where a stop string
// starts (a UTF-8 lead byte), so emitted text never ends inside a character.
std::string StopMatcher::feed(std::string_view text) {
  if (done_) return {};
  if (stops_.empty()) return std::string(text);
  held_.append(text);
  size_t best = std::string::npos;
  for (const std::string& s : stops_) {
    size_t p = held_.find(s);
    if (p < best) {
      best = p;
      matched_ = s;
    }
  }
  if (best != std::string::npos) {
    done_ = true;
    std::string out = held_.substr(0, best);
    held_.clear();
    return out;
  }
  size_t keep = 0;
  for (const std::string& s : stops_) {
    size_t max_len = std::min(s.size() - 1, held_.size());
    for (size_t len = max_len; len > keep; --len)
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out = done_ ? std::string() : std::move(held_);
  held_.clear();
  return out;
}

Generation::Generation(const Tokenizer& tok, std::vector<std::string> stops, Metrics* metrics)
    : metrics_(metrics), decoder_(tok, /*skip_special=*/true), matcher_(std::move(stops)) {}

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
  std::string text = matcher_.feed(decoder_.push(id));
  std::lock_guard<std::mutex> lock(mu_);
  if (!text.empty()) {
    pending_ += text;
    all_text_ += text;
    cv_.notify_all();
  }
  return !matcher_.done() && !abandoned_;
}

void Generation::on_finish(const Finish& f) {
  std::string text;
  if (!matcher_.done()) {
    text = matcher_.feed(decoder_.flush());
    text += matcher_.flush();
  }
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
  if (!matcher_.matched().empty()) return StopReason::stop_sequence;
  if (finish_.reason == FinishReason::stop_token) return StopReason::end_turn;
  return StopReason::max_tokens;
}

bool Generation::failed() const {
  if (finish_.reason == FinishReason::error || finish_.reason == FinishReason::cancelled) return true;
  return finish_.reason == FinishReason::callback && matcher_.matched().empty();
}

}  // namespace pensieve::server
