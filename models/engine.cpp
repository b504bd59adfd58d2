#include "models/engine.h"

#include <algorithm>
#include <chrono>
#include <iterator>

namespace pensieve {

using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::stop_token: return "stop_token";
    case FinishReason::length: return "length";
    case FinishReason::callback: return "callback";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::error: return "error";
  }
  return "?";
}

struct Engine::Seq {
  uint64_t id = 0;
  Request req;
  Sampler sampler;
  SeqKv kv;                        // tokens = prompt + output; KV computed for a prefix of them
  std::vector<int32_t> output;
  int64_t cached = 0;
  bool started = false;            // has held a slot before (preempted sequences restart)
  bool cancelled = false;
  Clock::time_point submitted, admitted, first_token;

  explicit Seq(Request r) : req(std::move(r)), sampler(req.sampling) {}
  int64_t pending() const { return int64_t(kv.tokens().size()) - kv.n_computed(); }
};

Engine::Engine(Model& model, const EngineOptions& o) : model_(model), o_(o) {
  const ModelConfig& c = model.config();
  max_ctx_ = c.max_positions;
  if (o.max_ctx > 0) max_ctx_ = std::min(max_ctx_, o.max_ctx);
  max_ctx_ = std::min(max_ctx_, model.cache().n_blocks() * model.cache().block_size());
  if (o_.max_seqs < 1) o_.max_seqs = 1;
  if (o_.max_batch_tokens < o_.max_seqs) o_.max_batch_tokens = o_.max_seqs;
  stats_.kv_blocks_total = model.cache().n_blocks();
  published_ = stats_;
}

Engine::~Engine() = default;

double Engine::warm_up() {
  Forward& f = model_.forward();
  if (!f.builds_on_first_use()) return 0;
  const Clock::time_point t0 = Clock::now();
  KvCache& cache = model_.cache();
  // The classes that pick their own pipelines (vulkan::ops matmul tiles and K splits by token
  // count, decode or prefill attention, the split-K combine past 512 keys): decode steps of
  // 1-4, 8 and 24 sequences, and one sequence prefilled in chunks of 48 .. 400 tokens, then
  // decoded at ~1,050 keys. Steps that do not fit the slots, the context or the pool are skipped.
  const int64_t V = model_.config().vocab;
  constexpr int64_t kBatches[] = {1, 2, 3, 4, 8, 24}, kChunks[] = {48, 100, 200, 300, 400, 1};
  std::vector<int32_t> tokens(size_t(*std::max_element(std::begin(kChunks), std::end(kChunks))),
                              int32_t(std::min<int64_t>(V - 1, 1)));
  std::vector<float> top_v(size_t(kBatches[std::size(kBatches) - 1] * kMaxTopK));  // the largest batch
  std::vector<int32_t> top_i(top_v.size());
  const TopK top{top_v.data(), top_i.data()};
  auto run = [&](std::vector<SeqKv>& seqs, const std::vector<int64_t>& pos, int64_t n) {
    std::vector<SeqChunk> chunks(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
      if (!seqs[i].reserve(cache, pos[i] + n)) return false;
      chunks[i].tokens = tokens.data();
      chunks[i].n = n;
      chunks[i].pos0 = pos[i];
      chunks[i].block_table = seqs[i].blocks().data();
      chunks[i].top_k = 1;
    }
    return f.run_topk(chunks, nullptr, top).ok();
  };
  for (int64_t k : kBatches) {
    if (k > o_.max_seqs) break;
    std::vector<SeqKv> seqs(static_cast<size_t>(k));
    for (auto& s : seqs) s.start(cache, {tokens[0]}, false, false);
    run(seqs, std::vector<int64_t>(size_t(k), 0), 1);
    for (auto& s : seqs) s.release(cache);
  }
  std::vector<SeqKv> one(1);
  one[0].start(cache, {tokens[0]}, false, false);
  int64_t pos = 0;
  for (int64_t n : kChunks) {
    if (pos + n >= max_ctx_ || !run(one, {pos}, n)) break;
    pos += n;
  }
  one[0].release(cache);
  return seconds_since(t0);
}

Result<uint64_t> Engine::submit(Request r) {
  if (r.prompt.empty()) return errorf("the prompt is empty");
  if (int64_t(r.prompt.size()) >= max_ctx_)
    return errorf("the prompt is %zu tokens, which leaves no room in the %lld-token context", r.prompt.size(),
                  (long long)max_ctx_);
  if (r.max_tokens <= 0) return errorf("max_tokens is %lld, expected > 0", (long long)r.max_tokens);
  for (int32_t t : r.prompt)
    if (t < 0 || t >= model_.config().vocab)
      return errorf("prompt token id %d is outside the vocabulary [0, %lld)", t, (long long)model_.config().vocab);
  PENSIEVE_TRY(validate(r.sampling));
  auto s = std::make_unique<Seq>(std::move(r));
  s->submitted = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  // live_ drops before on_finish runs, so a client that got its answer can submit again at once
  // (the published stats would still count its sequence until the step ends).
  if (live_ >= o_.max_queue + o_.max_seqs)
    return errorf("overloaded: %lld requests are running or waiting (%d slots + a queue of %lld)", (long long)live_.load(),
                  o_.max_seqs, (long long)o_.max_queue);
  ++live_;
  s->id = next_id_++;
  uint64_t id = s->id;
  incoming_.push_back(std::move(s));
  cv_.notify_one();
  return id;
}

void Engine::cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  cancels_.push_back(id);
  cv_.notify_one();
}

void Engine::stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = true;
  cv_.notify_one();
}

void Engine::run() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !incoming_.empty() || !cancels_.empty() || !waiting_.empty() || !running_.empty(); });
      if (stop_) break;
    }
    step();
  }
  // Shutting down: every request still here gets its on_finish.
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : incoming_) waiting_.push_back(std::move(s));
  incoming_.clear();
  while (!running_.empty()) finish(running_.back().get(), FinishReason::cancelled, "server shutting down");
  for (auto& s : waiting_) {
    Finish f;
    f.reason = FinishReason::cancelled;
    f.error = "server shutting down";
    notify_finish(s->req, f);
  }
  waiting_.clear();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s = published_;
  s.waiting += int64_t(incoming_.size());
  return s;
}

void Engine::notify_finish(const Request& r, const Finish& f) {
  --live_;
  if (r.on_finish) r.on_finish(f);
}

void Engine::finish(Seq* s, FinishReason r, const std::string& error) {
  Finish f;
  f.reason = r;
  f.prompt_tokens = int64_t(s->req.prompt.size());
  f.cached_tokens = s->cached;
  f.output_tokens = int64_t(s->output.size());
  if (r == FinishReason::stop_token && !s->output.empty()) {
    f.stop_token = s->output.back();
    f.output_tokens -= 1;  // the end token is not part of the text
  }
  f.error = error;
  auto now = Clock::now();
  bool got_first = s->first_token != Clock::time_point();
  f.queue_seconds = std::chrono::duration<double>(s->admitted - s->submitted).count();
  f.prefill_seconds = std::chrono::duration<double>((got_first ? s->first_token : now) - s->admitted).count();
  f.decode_seconds = got_first ? seconds_since(s->first_token) : 0;
  stats_.output_tokens_total += f.output_tokens;
  s->kv.release(model_.cache());
  notify_finish(s->req, f);
  auto it = std::find_if(running_.begin(), running_.end(), [&](auto& p) { return p.get() == s; });
  if (it != running_.end()) running_.erase(it);
}

void Engine::preempt(Seq* s) {
  s->kv.release(model_.cache());
  auto it = std::find_if(running_.begin(), running_.end(), [&](auto& p) { return p.get() == s; });
  waiting_.push_front(std::move(*it));
  running_.erase(it);
  ++stats_.preemptions_total;
}

// Moves new requests and cancellations in, then fills free slots from the waiting queue.
void Engine::admit() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& s : incoming_) waiting_.push_back(std::move(s));
    incoming_.clear();
    for (uint64_t id : cancels_) {
      for (auto& s : running_)
        if (s->id == id) s->cancelled = true;
      for (auto& s : waiting_)
        if (s->id == id) s->cancelled = true;
    }
    cancels_.clear();
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->cancelled) {
      Seq* s = it->get();
      Finish f;
      f.reason = FinishReason::cancelled;
      f.prompt_tokens = int64_t(s->req.prompt.size());
      notify_finish(s->req, f);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  const ModelConfig& c = model_.config();
  while (!waiting_.empty() && int64_t(running_.size()) < o_.max_seqs) {
    std::unique_ptr<Seq> s = std::move(waiting_.front());
    waiting_.pop_front();
    std::vector<int32_t> tokens = s->req.prompt;
    tokens.insert(tokens.end(), s->output.begin(), s->output.end());
    int64_t reused = s->kv.start(model_.cache(), tokens, c.long_rope(int64_t(tokens.size())), s->req.reuse_prefix);
    if (!s->started) {
      s->started = true;
      s->admitted = Clock::now();
      s->cached = reused;
      ++stats_.requests_total;
      stats_.prompt_tokens_total += int64_t(s->req.prompt.size());
      stats_.cached_tokens_total += reused;
      if (s->req.on_start) s->req.on_start(reused);
    }
    running_.push_back(std::move(s));
  }
}

// Builds this step's batch: every decoding sequence's token first, then prefill chunks, oldest
// first, within max_batch_tokens; reserves KV blocks, preempting the youngest when the pool is dry.
bool Engine::schedule(std::vector<Seq*>* seqs, std::vector<SeqChunk>* chunks) {
  const ModelConfig& c = model_.config();
  KvCache& cache = model_.cache();
  int64_t budget = o_.max_batch_tokens;
  std::vector<Seq*> order;
  for (auto& s : running_)
    if (s->pending() == 1) order.push_back(s.get());
  for (auto& s : running_)
    if (s->pending() > 1) order.push_back(s.get());
  for (Seq* s : order) {
    if (budget == 0) break;
    bool alive = std::any_of(running_.begin(), running_.end(), [&](auto& p) { return p.get() == s; });
    if (!alive) continue;  // preempted earlier in this loop
    // longrope: once a sequence outgrows original_max, its keys are recomputed with the long
    // factors (as Hugging Face's Phi-3 generation does).
    int64_t len = int64_t(s->kv.tokens().size());
    if (c.long_rope(len) && !s->kv.long_rope()) {
      std::vector<int32_t> tokens = s->kv.tokens();
      s->kv.start(cache, tokens, true, s->req.reuse_prefix);
    }
    int64_t n = std::min(s->pending(), budget);
    int64_t end = s->kv.n_computed() + n;
    while (!s->kv.reserve(cache, end)) {
      Seq* victim = nullptr;
      for (auto it = running_.rbegin(); it != running_.rend(); ++it)
        if (it->get() != s && std::find(seqs->begin(), seqs->end(), it->get()) == seqs->end()) {
          victim = it->get();
          break;
        }
      if (!victim) break;
      preempt(victim);
    }
    if (s->kv.blocks_needed(cache, end) > 0) {
      if (seqs->empty() && running_.size() == 1)
        finish(s, FinishReason::error, "the KV cache pool is too small for this sequence");
      continue;  // waits for blocks to free up
    }
    SeqChunk ch;
    ch.tokens = s->kv.tokens().data() + s->kv.n_computed();
    ch.n = n;
    ch.pos0 = s->kv.n_computed();
    ch.block_table = s->kv.blocks().data();
    ch.long_rope = s->kv.long_rope();
    ch.logits = n == s->pending() ? SeqChunk::Logits::last : SeqChunk::Logits::none;
    // Sampling that needs only the row's best few logits gets them selected by the forward pass
    // (on the GPU: a few numbers per token cross back instead of the whole row).
    ch.top_k = int(std::min<int64_t>(s->sampler.candidates_needed(kMaxTopK), c.vocab));
    seqs->push_back(s);
    chunks->push_back(ch);
    budget -= n;
  }
  return !chunks->empty();
}

bool Engine::step() {
  const Clock::time_point t_step = Clock::now();
  admit();
  for (size_t i = 0; i < running_.size();) {
    if (running_[i]->cancelled) {
      finish(running_[i].get(), FinishReason::cancelled);
    } else {
      ++i;
    }
  }
  std::vector<Seq*> seqs;
  std::vector<SeqChunk> chunks;
  bool worked = schedule(&seqs, &chunks);
  if (worked) {
    const int64_t V = model_.config().vocab;
    const int64_t top_rows = topk_rows(chunks);
    logits_.resize(size_t((logits_rows(chunks) - top_rows) * V));
    top_values_.resize(size_t(top_rows * kMaxTopK));
    top_ids_.resize(size_t(top_rows * kMaxTopK));
    const Clock::time_point t_fwd = Clock::now();
    Status st = model_.forward().run_topk(chunks, logits_.data(), TopK{top_values_.data(), top_ids_.data()});
    stats_.forward_seconds_total += seconds_since(t_fwd);
    ++stats_.steps_total;
    bool prefill = false;
    for (const SeqChunk& ch : chunks) {
      stats_.step_tokens_total += ch.n;
      prefill = prefill || ch.n > 1;
    }
    int64_t row = 0, top_row = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
      Seq* s = seqs[i];
      const SeqChunk& ch = chunks[i];
      if (!st.ok()) {
        finish(s, FinishReason::error, st.error());
        continue;
      }
      s->kv.computed(model_.cache(), ch.pos0 + ch.n, s->req.reuse_prefix);
      if (ch.logits == SeqChunk::Logits::none) continue;
      int32_t t;
      if (ch.top_k > 0) {
        t = s->sampler.sample_top(top_values_.data() + top_row * kMaxTopK, top_ids_.data() + top_row * kMaxTopK, ch.top_k);
        ++top_row;
      } else {
        t = s->sampler.sample(logits_.data() + row++ * V, V, s->req.prompt, s->output);
      }
      s->output.push_back(t);
      if (s->first_token == Clock::time_point()) s->first_token = Clock::now();
      if (std::find(s->req.stop_ids.begin(), s->req.stop_ids.end(), t) != s->req.stop_ids.end()) {
        finish(s, FinishReason::stop_token);
        continue;
      }
      if (s->req.on_token && !s->req.on_token(t)) {
        finish(s, FinishReason::callback);
        continue;
      }
      if (int64_t(s->output.size()) >= s->req.max_tokens ||
          int64_t(s->req.prompt.size() + s->output.size()) >= max_ctx_) {
        finish(s, FinishReason::length);
        continue;
      }
      s->kv.append(t);
    }
    const double secs = seconds_since(t_step);
    stats_.step_seconds_total += secs;
    if (prefill) {
      ++stats_.prefill_steps_total;
      stats_.prefill_step_seconds_total += secs;
    }
  }
  stats_.running = int64_t(running_.size());
  stats_.waiting = int64_t(waiting_.size());
  stats_.kv_blocks_used = model_.cache().used_blocks();
  stats_.kv_blocks_cached = model_.cache().cached_blocks();
  std::lock_guard<std::mutex> lock(mu_);
  published_ = stats_;
  return worked;
}

}  // namespace pensieve
