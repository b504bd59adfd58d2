// TextStream: generated token ids in, printable text out, with stop strings.
// - Text comes from the tokenizer's StreamDecoder (never a partial UTF-8 character).
// - A stop string may span tokens: text that could still become the start of a stop string is
//   held back until it cannot; when a stop string appears, the text before it is released and
//   the stream reports which stop string ended it (the stop string itself is never emitted).
#pragma once

#include <string>
#include <vector>

#include "models/tokenizer/tokenizer.h"

namespace pensieve {

class TextStream {
 public:
  TextStream(const Tokenizer& tok, std::vector<std::string> stop_strings, bool skip_special = true);

  // Text that is final after this token (possibly empty).
  std::string push(int32_t id);
  // End of generation: everything held back (unless a stop string was hit).
  std::string finish();
  bool stopped() const { return stop_index_ >= 0; }
  const std::string& stop_string() const { return stop_[size_t(stop_index_)]; }

 private:
  std::string release(std::string text);

  StreamDecoder decoder_;
  std::vector<std::string> stop_;
  std::string held_;
  int stop_index_ = -1;
};

}  // namespace pensieve
