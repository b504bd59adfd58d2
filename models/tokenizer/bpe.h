// BPE model of tokenizer.json ("model": {"type": "BPE", ...}), as HF `tokenizers` runs it:
// a word's characters become symbols (unknown ones fall back to <0xXX> byte tokens or <unk>),
// then the adjacent pair with the lowest merge rank is merged, leftmost first, until none is left.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tensor/result.h"

namespace pensieve::tok {

// Open-addressing hash map (token pair -> merge) for the hot loop of BPE.
class MergeTable {
 public:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  void reserve(size_t n);
  // Inserts or overwrites (HF builds its merge map with collect(): a repeated pair keeps the last).
  void put(int32_t a, int32_t b, Merge m);
  const Merge* find(int32_t a, int32_t b) const;
  size_t size() const { return count_; }

 private:
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void grow();
  std::vector<uint64_t> keys_;  // kEmpty marks a free slot
  std::vector<Merge> vals_;
  size_t count_ = 0;
  uint64_t mask_ = 0;
};

// token string -> id over the strings of an id -> token table (open addressing; each slot keeps
// the id and 32 bits of the hash, so a probe rarely touches a string that does not match).
class TokenIndex {
 public:
  void build(const std::vector<std::string>& tokens, const std::vector<bool>& present);
  // Adds one more token (tokens[id] must stay where it is); false if the string is already there.
  bool insert(const std::vector<std::string>& tokens, int32_t id);
  int32_t find(const std::vector<std::string>& tokens, std::string_view s) const;
  size_t size() const { return count_; }

 private:
  std::vector<uint64_t> slots_;  // (hash >> 32) << 32 | id; kFree when empty
  uint64_t mask_ = 0;
  size_t count_ = 0;
};

class BpeModel {
 public:
  // `model`: the "model" object of tokenizer.json without its vocab and merges, which come as
  // arrays (see json_load.h): vocab in any order, merges in rank order.
  static Result<BpeModel> build(const nlohmann::json& model,
                                std::vector<std::pair<std::string, int64_t>>&& vocab,
                                std::vector<std::pair<std::string, std::string>>&& merges);

  // Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  int32_t token_to_id(std::string_view token) const;  // -1 if absent
  // The token string of id, or nullptr for ids the vocabulary does not have.
  const std::string* id_to_token(int32_t id) const;
  // One past the largest id in the vocabulary.
  int32_t id_limit() const { return static_cast<int32_t>(vocab_r_.size()); }
  size_t vocab_count() const { return vocab_.size(); }
  // Calls fn(token, id) for every token of the vocabulary.
  template <class F>
  void for_each(F&& fn) const {
    for (size_t id = 0; id < vocab_r_.size(); ++id)
      if (present_[id]) fn(std::string_view(vocab_r_[id]), static_cast<int32_t>(id));
  }
  size_t merge_count() const { return merges_.size(); }
  int32_t unk_id() const { return unk_id_; }
  bool byte_fallback() const { return byte_fallback_; }

 private:
  void tokenize_chunk(std::string_view word, std::vector<int32_t>& out) const;
  int32_t char_id(std::string_view ch) const;

  std::vector<std::string> vocab_r_;  // id -> token; holes are empty and absent from vocab_
  std::vector<bool> present_;
  TokenIndex vocab_;
  std::unordered_map<uint32_t, int32_t> char_ids_;  // single-character tokens by code point
  MergeTable merges_;
  int32_t byte_ids_[256];  // <0xXX> tokens for byte fallback, -1 where missing
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  std::string prefix_;  // continuing_subword_prefix
  std::string suffix_;  // end_of_word_suffix
  // A character before which no token of the vocabulary can span (see from_json): words are cut
  // there, which keeps the merge queue short for pre-tokenizer-less SentencePiece models.
  uint32_t split_cp_ = 0;
};

}  // namespace pensieve::tok
