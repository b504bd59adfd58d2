// Generated token ids in, printable text out, with stop strings.
//
// StopMatcher: stop strings across piece boundaries. Text that might still become the start of a
// stop string is held back until it cannot; when a stop string appears, the text before it is
// released, the stop string itself never is, and later text is dropped.
//
// TextStream: the tokenizer's StreamDecoder (never a partial UTF-8 character) feeding a
// StopMatcher — what `pensieve run` prints and what the server streams.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "models/tokenizer/tokenizer.h"

namespace pensieve {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Feeds decoded text; returns the text that is safe to emit. After a match, matched() is the
  // stop string and the returned text ends right before it; later feeds return nothing.
  std::string feed(std::string_view text);
  // End of generation: the held-back text (empty after a match).
  std::string flush();
  const std::string& matched() const { return matched_; }
  bool done() const { return done_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  std::string matched_;
  bool done_ = false;
};

class TextStream {
 public:
  TextStream(const Tokenizer& tok, std::vector<std::string> stop_strings, bool skip_special = true)
      : decoder_(tok, skip_special), matcher_(std::move(stop_strings)) {}

  // Text that is final after this token (possibly empty).
  std::string push(int32_t id) { return matcher_.feed(decoder_.push(id)); }
  // End of generation: everything held back (nothing after a stop string).
  std::string finish();
  bool stopped() const { return matcher_.done(); }
  // The stop string that ended the stream ("" if none).
  const std::string& stop_string() const { return matcher_.matched(); }

 private:
  StreamDecoder decoder_;
  StopMatcher matcher_;
};

}  // namespace pensieve
