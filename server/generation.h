// The bridge between one HTTP request and the engine.
//
// The engine thread calls the Request's callbacks; they detokenize (StreamDecoder: pieces never
// split a UTF-8 character), look for stop strings, and append the text that is final to a buffer
// the HTTP thread waits on. The HTTP thread only takes text out and writes it.
//
//   engine thread:  on_start(cached) -> on_token(id)... -> on_finish(Finish)
//   HTTP thread:    wait() -> Update{text, started, done} ... until done
//
// A Generation is shared (shared_ptr) by both sides: the HTTP side may give up first (client
// gone); the engine side always ends with on_finish.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "models/engine.h"
#include "models/text_stream.h"
#include "models/tokenizer/tokenizer.h"
#include "server/metrics.h"

namespace pensieve::server {

enum class StopReason { end_turn, max_tokens, stop_sequence };

class Generation {
 public:
  // `metrics` (optional) counts each generated token.
  Generation(const Tokenizer& tok, std::vector<std::string> stops, Metrics* metrics = nullptr);

  // An engine Request whose callbacks feed this Generation (they hold a shared_ptr to it).
  static Request make_request(const std::shared_ptr<Generation>& g, std::vector<int32_t> prompt,
                              const SamplingParams& sampling, int64_t max_tokens, std::vector<int32_t> stop_ids);

  struct Update {
    std::string text;     // new final text since the last wait()
    bool started = false; // the sequence has a slot (cached_tokens() is valid)
    bool done = false;    // finished: finish() etc. are valid; no more text comes
  };
  // HTTP thread: returns as soon as there is new text, or the start or end is new, or after
  // `timeout` (an empty Update then).
  Update wait(std::chrono::milliseconds timeout);
  // HTTP thread: the client is gone; the engine stops the sequence at its next token (the caller
  // also calls Engine::cancel so a sequence still in prefill stops too).
  void abandon();

  // Valid once started / done (read them after wait() reported it).
  int64_t cached_tokens() const;
  const Finish& finish() const { return finish_; }
  const std::string& stop_sequence() const { return stream_.stop_string(); }
  StopReason stop_reason() const;
  bool failed() const;  // error or cancelled (not by a stop string); see finish().error
  // All text produced (kept for non-streaming responses).
  const std::string& text() const { return all_text_; }

 private:
  void on_start(int64_t cached);
  bool on_token(int32_t id);
  void on_finish(const Finish& f);

  Metrics* metrics_;
  TextStream stream_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string pending_;          // guarded by mu_: final text not yet taken by wait()
  std::string all_text_;         // guarded by mu_ until done
  bool started_ = false, done_ = false;          // guarded by mu_
  bool reported_start_ = false, reported_done_ = false;  // HTTP thread only
  bool abandoned_ = false;       // guarded by mu_
  int64_t cached_ = 0;           // guarded by mu_
  Finish finish_;                // written before done_ (under mu_)
};

}  // namespace pensieve::server
