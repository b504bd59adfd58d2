// Engine: continuous batching over one Model. Requests join and leave the running batch at token
// boundaries; each step runs every running sequence's next token plus chunks of waiting prompts
// as ONE forward pass (weights read once per step), then samples each sequence's next token.
//
//   submit() (any thread) -> waiting queue -> admitted when a slot is free (prefix blocks reused)
//   step(): decode tokens of running sequences + prefill chunks within max_batch_tokens
//           -> forward -> sample -> on_token callbacks -> finished sequences release their blocks
//
// KV blocks come from the model's one pool; when it runs dry the youngest sequence is preempted
// (its blocks released, its tokens kept) and later recomputed — the kernels are batch-invariant,
// so recomputation reproduces the same keys and values bit for bit and the output is unchanged
// (Forward::batch_invariant(): all but the Vulkan fast precision on GPUs with tensor cores, whose
// prefill projections run in f16 there; results then still follow the model, not bit for bit).
// Sampling that needs only a row's best logits (greedy; top_k <= 64 without penalties) gets
// them from Forward::run_topk, selected on the GPU; the token is the same as from the full row.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "models/model.h"
#include "models/sampler.h"

namespace pensieve {

enum class FinishReason { stop_token, length, callback, cancelled, error };
const char* finish_reason_name(FinishReason r);

struct Finish {
  FinishReason reason = FinishReason::length;
  int32_t stop_token = -1;        // the end token sampled (stop_token), not passed to on_token
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;      // prompt tokens whose KV came from the prefix cache
  int64_t output_tokens = 0;
  double queue_seconds = 0;       // submit -> admitted
  double prefill_seconds = 0;     // admitted -> first token
  double decode_seconds = 0;      // first token -> finish
  std::string error;
};

struct Request {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int64_t max_tokens = 256;
  std::vector<int32_t> stop_ids;  // ends generation when sampled
  bool reuse_prefix = true;
  // Engine thread: each generated token; return false to stop (stop string matched, client gone).
  std::function<bool(int32_t token)> on_token;
  // Engine thread: once, when the sequence first gets a slot (prefill starts); `cached` prompt
  // tokens were reused from the prefix cache. Not called for requests cancelled while waiting.
  std::function<void(int64_t cached)> on_start;
  // Engine thread: once, at the end (also after cancel or error).
  std::function<void(const Finish&)> on_finish;
};

struct EngineOptions {
  int max_seqs = 16;              // running sequences (slots)
  int64_t max_queue = 64;         // waiting requests beyond the slots; more is an overload error
  int64_t max_batch_tokens = 512; // tokens per step (decode tokens first, then prefill chunks)
  int64_t max_ctx = 0;            // per-sequence context limit (0: the model's max_position_embeddings)
};

struct EngineStats {
  int64_t waiting = 0, running = 0;
  int64_t kv_blocks_used = 0, kv_blocks_total = 0, kv_blocks_cached = 0;
  int64_t requests_total = 0, prompt_tokens_total = 0, cached_tokens_total = 0, output_tokens_total = 0;
  int64_t preemptions_total = 0, steps_total = 0;
  // Steps that ran a batch: tokens in them (decode + prefill), wall seconds from scheduling to the
  // last sampled token, and the part of that spent in the model's forward pass (the rest is host
  // work: scheduling, sampling, streaming callbacks).
  int64_t step_tokens_total = 0;
  double step_seconds_total = 0, forward_seconds_total = 0;
  // Of those, the steps that prefilled (a chunk of more than one token) and their wall seconds.
  int64_t prefill_steps_total = 0;
  double prefill_step_seconds_total = 0;
};

class Engine {
 public:
  Engine(Model& model, const EngineOptions& options);
  ~Engine();

  // Thread-safe. Errors: empty prompt, prompt longer than the context, max_tokens <= 0,
  // queue full (message starts with "overloaded").
  Result<uint64_t> submit(Request r);
  void cancel(uint64_t id);  // thread-safe; the sequence ends at the next step boundary

  // Before serving: on a backend that builds pipelines on first use, one throwaway forward pass of
  // each step-size class (decode batches, prefill chunks, a context past one attention split), so
  // the first requests do not wait for them. Returns the seconds spent; nothing on other backends.
  // Not thread-safe: call before run().
  double warm_up();
  // Runs steps until stop() (the server's engine thread), sleeping while idle.
  void run();
  void stop();
  // One step on the calling thread; false when there was nothing to do.
  bool step();

  EngineStats stats() const;
  int64_t max_ctx() const { return max_ctx_; }
  const ModelConfig& config() const { return model_.config(); }

 private:
  struct Seq;
  void admit();
  bool schedule(std::vector<Seq*>* batch_seqs, std::vector<SeqChunk>* chunks);
  void preempt(Seq* s);
  void finish(Seq* s, FinishReason r, const std::string& error = "");
  void notify_finish(const Request& r, const Finish& f);  // --live_, then on_finish

  Model& model_;
  EngineOptions o_;
  int64_t max_ctx_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Seq>> incoming_;  // guarded by mu_
  std::vector<uint64_t> cancels_;              // guarded by mu_
  bool stop_ = false;                          // guarded by mu_
  uint64_t next_id_ = 1;                       // guarded by mu_
  std::atomic<int64_t> live_{0};               // submitted, on_finish not yet called

  // Engine thread only.
  std::deque<std::unique_ptr<Seq>> waiting_;   // admitted order (preempted ones go to the front)
  std::vector<std::unique_ptr<Seq>> running_;  // oldest first
  std::vector<float> logits_;                  // full rows (sampling that needs them)
  std::vector<float> top_values_;              // top-k rows [rows, kMaxTopK]
  std::vector<int32_t> top_ids_;
  EngineStats stats_;                          // published under mu_ by step()
  EngineStats published_;
};

}  // namespace pensieve
