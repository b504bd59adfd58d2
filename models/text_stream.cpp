#include "models/text_stream.h"

#include <algorithm>

namespace pensieve {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

// held_ = text not yet emitted. A stop string found in it ends generation (the earliest wins).
// Otherwise the longest suffix of held_ that is a proper prefix of some stop string is kept back
// and the rest emitted: nothing emitted can be the start of a match. The kept suffix starts where
// a stop string starts (a UTF-8 lead byte), so emitted text never ends inside a character.
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

std::string TextStream::finish() {
  if (matcher_.done()) return {};
  std::string out = matcher_.feed(decoder_.flush());
  return out + matcher_.flush();
}

}  // namespace pensieve
