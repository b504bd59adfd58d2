#include "models/tokenizer/added_vocab.h"

#include <nlohmann/json.hpp>

#include "models/tokenizer/utf8.h"

namespace pensieve::tok {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// StringSetMatcher

int32_t StringSetMatcher::child(int32_t node, unsigned char c) const {
  auto it = edges_.find((static_cast<uint64_t>(node) << 8) | c);
  return it == edges_.end() ? -1 : it->second;
}

void StringSetMatcher::add(std::string_view pattern, int32_t value) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (unsigned char c : pattern) {
    int32_t next = child(node, c);
    if (next < 0) {
      next = static_cast<int32_t>(terminal_.size());
      terminal_.push_back(-1);
      edges_.emplace((static_cast<uint64_t>(node) << 8) | c, next);
    }
    node = next;
  }
  terminal_[node] = value;  // a repeated pattern keeps the last value
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
}

bool StringSetMatcher::find(std::string_view s, size_t from, Match& m) const {
  if (empty()) return false;
  for (size_t i = from; i < s.size(); ++i) {
    if (!first_byte_[static_cast<unsigned char>(s[i])]) continue;
    int32_t node = 0, best_value = -1;
    size_t best_end = 0;
    for (size_t j = i; j < s.size(); ++j) {
      node = child(node, static_cast<unsigned char>(s[j]));
      if (node < 0) break;
      if (terminal_[node] >= 0) best_value = terminal_[node], best_end = j + 1;
    }
    if (best_value >= 0) {
      m = {i, best_end, best_value};
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// AddedVocab

Result<AddedVocab> AddedVocab::from_json(const json& list,
                                         const std::function<std::string(std::string)>& normalize) {
  AddedVocab v;
  if (list.is_null()) return v;
  if (!list.is_array()) return errorf("tokenizer.json: added_tokens is not an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const json& e = list[i];
    if (!e.is_object() || !e.contains("content") || !e["content"].is_string() ||
        !e.contains("id") || !e["id"].is_number_integer())
      return errorf(
          "tokenizer.json: added_tokens[%zu]: expected {\"id\": int, \"content\": string, ...}", i);
    AddedToken t;
    const int64_t id = e["id"].get<int64_t>();
    if (id < 0 || id >= (int64_t{1} << 24))
      return errorf("tokenizer.json: added_tokens[%zu]: id %lld out of range", i,
                    static_cast<long long>(id));
    t.id = static_cast<int32_t>(id);
    t.content = e["content"].get<std::string>();
    t.single_word = e.value("single_word", false);
    t.lstrip = e.value("lstrip", false);
    t.rstrip = e.value("rstrip", false);
    t.special = e.value("special", false);
    t.normalized = e.value("normalized", !t.special);  // HF's default for each kind
    if (t.content.empty()) continue;                   // HF ignores empty tokens
    const size_t index = v.tokens_.size();
    v.by_id_[t.id] = index;
    v.by_content_[t.content] = index;
    if (t.normalized)
      v.normalized_.add(normalize(t.content), static_cast<int32_t>(index));
    else
      v.raw_.add(t.content, static_cast<int32_t>(index));
    v.any_single_word_ = v.any_single_word_ || t.single_word;
    v.tokens_.push_back(std::move(t));
  }
  if (v.any_single_word_) {
    // Rust regex \w: alphabetic, marks, decimal digits, connector punctuation, joiners.
    auto ws = Regex::compile(R"(^[\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])");
    auto we = Regex::compile(R"([\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}]$)");
    if (!ws.ok()) return std::move(ws).take_error();
    if (!we.ok()) return std::move(we).take_error();
    v.word_start_ = std::move(ws.value());
    v.word_end_ = std::move(we.value());
  }
  return v;
}

const AddedToken* AddedVocab::by_id(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocab::by_content(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

namespace {

// Start of the run of whitespace that ends s (Rust regex \s*$).
size_t trailing_space_start(std::string_view s) {
  size_t i = s.size();
  while (i > 0) {
    size_t j = i - 1;
    while (j > 0 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
    size_t k = j;
    if (!is_unicode_whitespace(utf8_next(s, k))) break;
    i = j;
  }
  return i;
}

// Length of the run of whitespace that starts s (Rust regex ^\s*).
size_t leading_space_len(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t k = i;
    if (!is_unicode_whitespace(utf8_next(s, k))) break;
    i = k;
  }
  return i;
}

bool regex_hits(const Regex& re, std::string_view s) {
  std::vector<std::pair<size_t, size_t>> m;
  return re.find_all(s, m).ok() && !m.empty();
}

}  // namespace

void AddedVocab::split(std::string_view s, bool normalized_set, bool encode_special,
                       std::vector<Segment>& out) const {
  const StringSetMatcher& matcher = normalized_set ? normalized_ : raw_;
  size_t start_offset = 0;
  StringSetMatcher::Match m;
  // Like the Aho-Corasick iterator HF uses, a match that is then discarded still consumes its text.
  for (size_t from = 0; matcher.find(s, from, m); from = m.end) {
    const AddedToken& t = tokens_[m.value];
    if (encode_special && t.special) continue;
    size_t start = m.start, stop = m.end;
    if (t.single_word) {
      const bool start_space = start == 0 || !regex_hits(word_end_, s.substr(0, start));
      const bool stop_space = stop == s.size() || !regex_hits(word_start_, s.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) start = std::max(trailing_space_start(s.substr(0, start)), start_offset);
    if (t.rstrip) stop += leading_space_len(s.substr(stop));
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, t.id});
    start_offset = stop;
  }
  if (start_offset < s.size()) out.push_back({start_offset, s.size(), -1});
}

}  // namespace pensieve::tok
