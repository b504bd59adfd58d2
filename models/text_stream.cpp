#include "models/text_stream.h"

#include <algorithm>

namespace pensieve {

TextStream::TextStream(const Tokenizer& tok, std::vector<std::string> stop_strings, bool skip_special)
    : decoder_(tok, skip_special), stop_(std::move(stop_strings)) {
  stop_.erase(std::remove(stop_.begin(), stop_.end(), std::string()), stop_.end());
}

// Appends text to what is held back, and returns the part that can no longer be (the start of)
// a stop string.
std::string TextStream::release(std::string text) {
  if (stopped()) return {};
  held_ += text;
  // The earliest complete stop string wins.
  size_t best = std::string::npos;
  for (size_t i = 0; i < stop_.size(); ++i) {
    size_t at = held_.find(stop_[i]);
    if (at != std::string::npos && at < best) {
      best = at;
      stop_index_ = int(i);
    }
  }
  if (best != std::string::npos) {
    std::string out = held_.substr(0, best);
    held_.clear();
    return out;
  }
  // Keep the longest suffix of held_ that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stop_)
    for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k)
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string TextStream::push(int32_t id) { return release(decoder_.push(id)); }

std::string TextStream::finish() {
  std::string out = release(decoder_.flush());
  if (!stopped()) {
    out += held_;
    held_.clear();
  }
  return out;
}

}  // namespace pensieve
