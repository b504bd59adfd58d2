// Normalizers and pre-tokenizers of tokenizer.json, the subset BPE LLM tokenizers use:
//   normalizer:    Sequence, Prepend, Replace (string or regex), Strip
//   pre_tokenizer: Sequence, Split (string or regex; all five behaviours; invert), ByteLevel,
//                  Metaspace
// Anything else is a load error that names the component, never a silent difference.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/tokenizer/regex.h"
#include "tensor/result.h"

namespace pensieve::tok {

class Normalizer {
 public:
  // null -> the identity.
  static Result<Normalizer> from_json(const nlohmann::json& j);
  Status normalize(std::string& s) const;
  bool identity() const { return ops_.empty(); }

 private:
  struct Op {
    enum Kind { kPrepend, kReplace, kReplaceRegex, kStrip } kind;
    std::string a, b;  // prepend: a; replace: a -> b
    std::shared_ptr<const Regex> re;
    bool left = false, right = false;  // strip
  };
  Status add(const nlohmann::json& j);
  std::vector<Op> ops_;
};

// One pre-tokenized word. first: it starts where the original text starts (Metaspace "first").
struct Word {
  std::string text;
  bool first;
};

class PreTokenizer {
 public:
  static Result<PreTokenizer> from_json(const nlohmann::json& j);
  // Splits/transforms words in place.
  Status run(std::vector<Word>& words) const;
  bool identity() const { return ops_.empty(); }

  enum Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

 private:
  struct Op {
    enum Kind { kSplit, kByteLevel, kMetaspace } kind;
    // Split
    std::shared_ptr<const Regex> re;  // null: literal `literal`
    std::string literal;
    Behavior behavior = kIsolated;
    bool invert = false;
    // ByteLevel
    bool add_prefix_space = false, use_regex = false;
    // Metaspace
    std::string replacement;
    enum Prepend { kAlways, kFirst, kNever } prepend = kAlways;
    bool split = true;
  };
  Status add(const nlohmann::json& j);
  Status split_word(const Op& op, Word& w, std::vector<Word>& out) const;
  std::vector<Op> ops_;
};

// GPT-2's reversible byte <-> printable character mapping used by ByteLevel.
const std::string& byte_level_char(unsigned char b);  // UTF-8 of the character for byte b
// The byte a ByteLevel character stands for, or -1 (cp is a code point).
int byte_level_byte(uint32_t cp);

}  // namespace pensieve::tok
