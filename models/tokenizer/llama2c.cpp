#include "models/tokenizer/llama2c.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "models/tokenizer/utf8.h"
#include "tensor/mapped_file.h"

namespace pensieve {

using nlohmann::json;

namespace {

constexpr std::string_view kMetaspace = "\xE2\x96\x81";

std::string spaces_to_metaspace(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ' ')
      out += kMetaspace;
    else
      out.push_back(c);
  }
  return out;
}

}  // namespace

Result<std::string> tokenizer_json_from_llama2c_bytes(std::span<const uint8_t> bytes,
                                                      const std::string& origin,
                                                      int32_t expected_vocab_size) {
  const char* op = "tokenizer_json_from_llama2c";
  // Parse: int32 max_token_length, then (float32 score, int32 len, bytes) until the end.
  size_t pos = 0;
  auto read4 = [&](void* dst) {
    if (bytes.size() - pos < 4) return false;
    std::memcpy(dst, bytes.data() + pos, 4);
    pos += 4;
    return true;
  };
  int32_t max_len = 0;
  if (!read4(&max_len))
    return errorf("%s: %s: %zu bytes, expected at least a 4-byte header", op, origin.c_str(),
                  bytes.size());
  if (max_len <= 0 || max_len > 4096)
    return errorf("%s: %s: max_token_length %d, expected 1..4096", op, origin.c_str(), max_len);
  std::vector<std::string> pieces;
  std::vector<float> scores;
  while (pos < bytes.size()) {
    float score;
    int32_t len;
    if (!read4(&score) || !read4(&len))
      return errorf("%s: %s: token %zu: truncated record at byte %zu of %zu", op, origin.c_str(),
                    pieces.size(), pos, bytes.size());
    if (len < 0 || len > max_len || static_cast<size_t>(len) > bytes.size() - pos)
      return errorf(
          "%s: %s: token %zu: length %d at byte %zu, expected 0..%d within the %zu-byte file", op,
          origin.c_str(), pieces.size(), len, pos - 4, max_len, bytes.size());
    pieces.emplace_back(reinterpret_cast<const char*>(bytes.data() + pos),
                        static_cast<size_t>(len));
    scores.push_back(score);
    pos += static_cast<size_t>(len);
  }
  const size_t n = pieces.size();
  if (expected_vocab_size > 0 && n != static_cast<size_t>(expected_vocab_size))
    return errorf("%s: %s: %zu tokens, expected vocab_size %d", op, origin.c_str(), n,
                  expected_vocab_size);
  if (n < 259)
    return errorf("%s: %s: %zu tokens, expected at least 259 (<unk>, <s>, </s>, 256 byte tokens)",
                  op, origin.c_str(), n);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    if (pieces[3 + b] != name)
      return errorf("%s: %s: token %d is \"%s\", expected the byte token %s", op, origin.c_str(),
                    3 + b, pieces[3 + b].c_str(), name);
  }

  // Vocabulary with HF names: the three specials renamed, spaces as "▁".
  std::vector<std::string> names(n);
  names[0] = "<unk>";
  names[1] = "<s>";
  names[2] = "</s>";
  json vocab = json::object();
  for (size_t id = 0; id < n; ++id) {
    if (id >= 3) {
      if (!tok::utf8_is_valid(pieces[id]))
        return errorf("%s: %s: token %zu is not valid UTF-8", op, origin.c_str(), id);
      if (pieces[id].empty()) return errorf("%s: %s: token %zu is empty", op, origin.c_str(), id);
      if (pieces[id].find(kMetaspace) != std::string::npos)
        return errorf(
            "%s: %s: token %zu contains \"▁\" (U+2581), which the conversion uses for spaces", op,
            origin.c_str(), id);
      names[id] = spaces_to_metaspace(pieces[id]);
    }
    if (vocab.contains(names[id]))
      return errorf("%s: %s: token %zu \"%s\" appears twice", op, origin.c_str(), id,
                    names[id].c_str());
    vocab[names[id]] = id;
  }

  // Merges. llama2.c looks up the concatenation of two adjacent tokens' strings among all pieces
  // and merges the highest-scoring one. So every split of a piece (ids >= 3, as llama2.c stores
  // it) into two pieces is a merge, ranked by the piece's score; equal scores (the same piece
  // from different splits) by id, then split position.
  std::unordered_map<std::string, int32_t> by_piece;
  for (size_t id = 0; id < n; ++id) by_piece.emplace(pieces[id], static_cast<int32_t>(id));
  struct Merge {
    float score;
    int32_t id;
    size_t split;
  };
  std::vector<Merge> merges;
  for (size_t id = 3; id < n; ++id) {
    const std::string& p = pieces[id];
    for (size_t k = 1; k < p.size(); ++k) {
      if ((static_cast<unsigned char>(p[k]) & 0xC0) == 0x80) continue;  // inside a character
      if (by_piece.count(p.substr(0, k)) && by_piece.count(p.substr(k)))
        merges.push_back({scores[id], static_cast<int32_t>(id), k});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.id != b.id) return a.id < b.id;
    return a.split < b.split;
  });
  json merge_list = json::array();
  for (const Merge& m : merges) {
    const std::string& p = pieces[m.id];
    const int32_t left = by_piece.at(p.substr(0, m.split)), right = by_piece.at(p.substr(m.split));
    merge_list.push_back(json::array({names[left], names[right]}));
  }

  json added = json::array();
  for (int id = 0; id < 3; ++id)
    added.push_back({{"id", id},
                     {"content", names[id]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});

  auto str_pattern = [](const std::string& s) { return json{{"String", s}}; };
  json tj = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", std::string(kMetaspace)}},
                                     {{"type", "Replace"},
                                      {"pattern", str_pattern(" ")},
                                      {"content", std::string(kMetaspace)}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "<s>"}, {"type_id", 1}}}},
                              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
        {"special_tokens",
         {{"<s>", {{"id", "<s>"}, {"ids", json::array({1})}, {"tokens", json::array({"<s>"})}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         json::array({{{"type", "Replace"},
                       {"pattern", str_pattern(std::string(kMetaspace))},
                       {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"vocab", vocab},
        {"merges", merge_list}}},
  };
  return tj.dump();
}

Result<std::string> tokenizer_json_from_llama2c(const std::string& path,
                                                int32_t expected_vocab_size) {
  auto f = MappedFile::open(path);
  if (!f.ok()) return errorf("tokenizer_json_from_llama2c: %s", f.error().c_str());
  return tokenizer_json_from_llama2c_bytes(std::span<const uint8_t>(f->data(), f->size()), path,
                                           expected_vocab_size);
}

}  // namespace pensieve
