#include "models/tokenizer/pipeline.h"

#include <array>

#include <nlohmann/json.hpp>

#include "models/tokenizer/utf8.h"

namespace pensieve::tok {

using nlohmann::json;

namespace {

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : std::string("?");
}

// A tokenizer.json pattern: {"String": "..."} or {"Regex": "..."}.
Status parse_pattern(const json& j, const char* where, std::string& literal,
                     std::shared_ptr<const Regex>& re) {
  if (j.is_object() && j.contains("String") && j["String"].is_string()) {
    literal = j["String"].get<std::string>();
    if (literal.empty()) return errorf("tokenizer.json: %s: empty String pattern", where);
    return Status::Ok();
  }
  if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
    auto r = Regex::compile(j["Regex"].get<std::string>());
    if (!r.ok()) return errorf("tokenizer.json: %s: %s", where, r.error().c_str());
    re = std::make_shared<const Regex>(std::move(r.value()));
    return Status::Ok();
  }
  return errorf("tokenizer.json: %s: pattern must be {\"String\": ...} or {\"Regex\": ...}", where);
}

// Matches of a pattern in s as [start, end) ranges (non-overlapping, left to right).
Status find_pattern(const std::shared_ptr<const Regex>& re, const std::string& literal,
                    std::string_view s, std::vector<std::pair<size_t, size_t>>& out) {
  if (re) return re->find_all(s, out);
  for (size_t p = s.find(literal); p != std::string_view::npos;
       p = s.find(literal, p + literal.size()))
    out.emplace_back(p, p + literal.size());
  return Status::Ok();
}

std::string replace_ranges(std::string_view s, const std::vector<std::pair<size_t, size_t>>& m,
                           std::string_view with) {
  std::string out;
  out.reserve(s.size());
  size_t prev = 0;
  for (auto [b, e] : m) {
    out.append(s.substr(prev, b - prev));
    out.append(with);
    prev = e;
  }
  out.append(s.substr(prev));
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Normalizer

Result<Normalizer> Normalizer::from_json(const json& j) {
  Normalizer n;
  if (j.is_null()) return n;
  PENSIEVE_TRY(n.add(j));
  return n;
}

Status Normalizer::add(const json& j) {
  const std::string type = type_of(j);
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array())
      return errorf("tokenizer.json: normalizer Sequence without a \"normalizers\" array");
    for (const json& e : j["normalizers"]) PENSIEVE_TRY(add(e));
  } else if (type == "Prepend") {
    if (!j.contains("prepend") || !j["prepend"].is_string())
      return errorf("tokenizer.json: normalizer Prepend without a \"prepend\" string");
    ops_.push_back({Op::kPrepend, j["prepend"].get<std::string>(), {}, nullptr});
  } else if (type == "Replace") {
    Op op{Op::kReplace, {}, {}, nullptr};
    if (!j.contains("content") || !j["content"].is_string())
      return errorf("tokenizer.json: normalizer Replace without a \"content\" string");
    op.b = j["content"].get<std::string>();
    PENSIEVE_TRY(parse_pattern(j.value("pattern", json()), "normalizer Replace", op.a, op.re));
    if (op.re) op.kind = Op::kReplaceRegex;
    ops_.push_back(std::move(op));
  } else if (type == "Strip") {
    Op op{Op::kStrip, {}, {}, nullptr};
    op.left = j.value("strip_left", true);
    op.right = j.value("strip_right", true);
    ops_.push_back(std::move(op));
  } else {
    return errorf(
        "tokenizer.json: normalizer \"%s\" is not supported (supported: Sequence, "
        "Prepend, Replace, Strip)",
        type.c_str());
  }
  return Status::Ok();
}

Status Normalizer::normalize(std::string& s) const {
  for (const Op& op : ops_) {
    switch (op.kind) {
      case Op::kPrepend:
        if (!s.empty()) s.insert(0, op.a);  // HF prepends to non-empty strings only
        break;
      case Op::kReplace:
      case Op::kReplaceRegex: {
        std::vector<std::pair<size_t, size_t>> m;
        PENSIEVE_TRY(find_pattern(op.re, op.a, s, m));
        if (!m.empty()) s = replace_ranges(s, m, op.b);
        break;
      }
      case Op::kStrip: {
        size_t b = 0, e = s.size();
        if (op.left)
          while (b < e) {
            size_t k = b;
            if (!is_unicode_whitespace(utf8_next(s, k))) break;
            b = k;
          }
        if (op.right)
          while (e > b) {
            size_t j = e - 1;
            while (j > b && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
            size_t k = j;
            if (!is_unicode_whitespace(utf8_next(s, k))) break;
            e = j;
          }
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// ByteLevel alphabet (GPT-2 bytes_to_unicode): printable Latin-1 bytes stand for themselves, the
// other 68 bytes map to U+0100.. in byte order, so every byte has a visible, non-space character.

namespace {

struct ByteLevelTables {
  std::array<std::string, 256> to_char;
  std::array<uint32_t, 256> cp;
  ByteLevelTables() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      cp[b] = printable ? static_cast<uint32_t>(b) : next++;
      utf8_append(to_char[b], cp[b]);
    }
  }
};

const ByteLevelTables& byte_tables() {
  static const ByteLevelTables t;
  return t;
}

}  // namespace

const std::string& byte_level_char(unsigned char b) { return byte_tables().to_char[b]; }

int byte_level_byte(uint32_t cp) {
  if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
    return static_cast<int>(cp);
  if (cp >= 256 && cp < 256 + 68) {
    // The (cp - 256)-th non-printable byte.
    const auto& t = byte_tables();
    for (int b = 0; b < 256; ++b)
      if (t.cp[b] == cp) return b;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// PreTokenizer

Result<PreTokenizer> PreTokenizer::from_json(const json& j) {
  PreTokenizer p;
  if (j.is_null()) return p;
  PENSIEVE_TRY(p.add(j));
  return p;
}

Status PreTokenizer::add(const json& j) {
  const std::string type = type_of(j);
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
      return errorf("tokenizer.json: pre_tokenizer Sequence without a \"pretokenizers\" array");
    for (const json& e : j["pretokenizers"]) PENSIEVE_TRY(add(e));
    return Status::Ok();
  }
  Op op{};
  if (type == "Split") {
    op.kind = Op::kSplit;
    PENSIEVE_TRY(
        parse_pattern(j.value("pattern", json()), "pre_tokenizer Split", op.literal, op.re));
    const std::string b = j.value("behavior", std::string("Isolated"));
    if (b == "Removed")
      op.behavior = kRemoved;
    else if (b == "Isolated")
      op.behavior = kIsolated;
    else if (b == "MergedWithPrevious")
      op.behavior = kMergedWithPrevious;
    else if (b == "MergedWithNext")
      op.behavior = kMergedWithNext;
    else if (b == "Contiguous")
      op.behavior = kContiguous;
    else
      return errorf("tokenizer.json: pre_tokenizer Split: unknown behavior \"%s\"", b.c_str());
    op.invert = j.value("invert", false);
  } else if (type == "ByteLevel") {
    op.kind = Op::kByteLevel;
    op.add_prefix_space = j.value("add_prefix_space", true);
    op.use_regex = j.value("use_regex", true);
    if (op.use_regex) {
      // GPT-2's pattern, which HF's ByteLevel uses when use_regex is true.
      auto r = Regex::compile(
          R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
      if (!r.ok()) return std::move(r).take_error();
      op.re = std::make_shared<const Regex>(std::move(r.value()));
    }
  } else if (type == "Metaspace") {
    op.kind = Op::kMetaspace;
    op.replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      const std::string s = j["prepend_scheme"].get<std::string>();
      if (s == "always")
        op.prepend = Op::kAlways;
      else if (s == "first")
        op.prepend = Op::kFirst;
      else if (s == "never")
        op.prepend = Op::kNever;
      else
        return errorf("tokenizer.json: Metaspace: unknown prepend_scheme \"%s\"", s.c_str());
    } else {
      op.prepend = j.value("add_prefix_space", true) ? Op::kAlways : Op::kNever;
    }
    op.split = j.value("split", true);
  } else {
    return errorf(
        "tokenizer.json: pre_tokenizer \"%s\" is not supported (supported: Sequence, "
        "Split, ByteLevel, Metaspace)",
        type.c_str());
  }
  ops_.push_back(std::move(op));
  return Status::Ok();
}

// HF NormalizedString::split: `pieces` cover the word as (range, is_match); the behaviour decides
// which pieces survive and how delimiters attach.
namespace {

struct Piece {
  size_t b, e;
  bool match;
};

std::vector<std::pair<size_t, size_t>> apply_behavior(const std::vector<Piece>& pieces,
                                                      PreTokenizer::Behavior behavior) {
  std::vector<std::pair<size_t, size_t>> out;
  bool prev_match = false;
  switch (behavior) {
    case PreTokenizer::kRemoved:
      for (const Piece& p : pieces)
        if (!p.match) out.emplace_back(p.b, p.e);
      break;
    case PreTokenizer::kIsolated:
      for (const Piece& p : pieces) out.emplace_back(p.b, p.e);
      break;
    case PreTokenizer::kContiguous:
      for (const Piece& p : pieces) {
        if (p.match == prev_match && !out.empty())
          out.back().second = p.e;
        else
          out.emplace_back(p.b, p.e);
        prev_match = p.match;
      }
      break;
    case PreTokenizer::kMergedWithPrevious:
      for (const Piece& p : pieces) {
        if (p.match && !prev_match && !out.empty())
          out.back().second = p.e;
        else
          out.emplace_back(p.b, p.e);
        prev_match = p.match;
      }
      break;
    case PreTokenizer::kMergedWithNext:
      for (size_t k = pieces.size(); k-- > 0;) {
        const Piece& p = pieces[k];
        if (p.match && !prev_match && !out.empty())
          out.back().first = p.b;
        else
          out.emplace_back(p.b, p.e);
        prev_match = p.match;
      }
      std::reverse(out.begin(), out.end());
      break;
  }
  return out;
}

}  // namespace

Status PreTokenizer::split_word(const Op& op, Word& w, std::vector<Word>& out) const {
  std::vector<std::pair<size_t, size_t>> m;
  PENSIEVE_TRY(find_pattern(op.re, op.literal, w.text, m));
  std::vector<Piece> pieces;
  size_t prev = 0;
  for (auto [b, e] : m) {
    if (prev != b) pieces.push_back({prev, b, false});
    pieces.push_back({b, e, true});
    prev = e;
  }
  if (prev != w.text.size()) pieces.push_back({prev, w.text.size(), false});
  if (op.invert)
    for (Piece& p : pieces) p.match = !p.match;
  for (auto [b, e] : apply_behavior(pieces, op.behavior))
    if (e > b) out.push_back({w.text.substr(b, e - b), w.first && b == 0});
  return Status::Ok();
}

Status PreTokenizer::run(std::vector<Word>& words) const {
  std::vector<Word> next;
  for (const Op& op : ops_) {
    next.clear();
    next.reserve(words.size());
    for (Word& w : words) {
      switch (op.kind) {
        case Op::kSplit: PENSIEVE_TRY(split_word(op, w, next)); break;
        case Op::kByteLevel: {
          if (op.add_prefix_space && (w.text.empty() || w.text[0] != ' ')) w.text = " " + w.text;
          const size_t first = next.size();
          if (op.use_regex) {
            Op sp{};
            sp.kind = Op::kSplit;
            sp.re = op.re;
            sp.behavior = kIsolated;
            PENSIEVE_TRY(split_word(sp, w, next));
          } else {
            next.push_back(std::move(w));
          }
          for (size_t k = first; k < next.size(); ++k) {
            std::string mapped;
            mapped.reserve(next[k].text.size() * 2);
            for (unsigned char c : next[k].text) mapped += byte_level_char(c);
            next[k].text = std::move(mapped);
          }
          break;
        }
        case Op::kMetaspace: {
          std::string t;
          t.reserve(w.text.size() + 3);
          for (char c : w.text) {
            if (c == ' ')
              t += op.replacement;
            else
              t.push_back(c);
          }
          const bool starts = t.compare(0, op.replacement.size(), op.replacement) == 0;
          if (!starts && (op.prepend == Op::kAlways || (op.prepend == Op::kFirst && w.first)))
            t.insert(0, op.replacement);
          Word tw{std::move(t), w.first};
          if (op.split) {
            Op sp{};
            sp.kind = Op::kSplit;
            sp.literal = op.replacement;
            sp.behavior = kMergedWithNext;
            PENSIEVE_TRY(split_word(sp, tw, next));
          } else {
            next.push_back(std::move(tw));
          }
          break;
        }
      }
    }
    words.swap(next);
  }
  return Status::Ok();
}

}  // namespace pensieve::tok
