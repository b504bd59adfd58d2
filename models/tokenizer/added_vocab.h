// Added tokens (tokenizer.json "added_tokens"): found in the text before anything else, exactly as
// HF `tokenizers`' AddedVocabulary does: leftmost-longest, non-overlapping matching; single_word,
// lstrip and rstrip; tokens with normalized=true are matched in the normalized text instead.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/tokenizer/regex.h"
#include "tensor/result.h"

namespace pensieve::tok {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// Leftmost-longest matching of a set of strings (a byte trie).
class StringSetMatcher {
 public:
  void add(std::string_view pattern, int32_t value);
  struct Match {
    size_t start, end;
    int32_t value;
  };
  // The leftmost match starting at or after `from`, longest among those; false if none.
  bool find(std::string_view s, size_t from, Match& m) const;
  bool empty() const { return terminal_.size() <= 1; }

 private:
  int32_t child(int32_t node, unsigned char c) const;
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> node
  std::vector<int32_t> terminal_{-1};            // node -> value, or -1; node 0 is the root
  bool first_byte_[256] = {};
};

// A piece of the text: an added token (id >= 0) or text to normalize and tokenize (id == -1).
struct Segment {
  size_t begin, end;
  int32_t id;
};

class AddedVocab {
 public:
  // `normalize` turns the content of normalized=true tokens into the pattern looked for.
  static Result<AddedVocab> from_json(const nlohmann::json& added_tokens,
                                      const std::function<std::string(std::string)>& normalize);

  // HF find_matches on s, with the raw (normalized=false) or the normalized token set. With
  // encode_special, special tokens are not matched (non-special added tokens still are).
  // Appends segments covering s, in order.
  void split(std::string_view s, bool normalized_set, bool encode_special,
             std::vector<Segment>& out) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* by_id(int32_t id) const;
  const AddedToken* by_content(std::string_view content) const;

 private:
  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  StringSetMatcher raw_, normalized_;  // values: index into tokens_
  bool any_single_word_ = false;
  Regex word_start_, word_end_;  // Rust regex ^\w and \w$ (single_word only)
};

}  // namespace pensieve::tok
