#include "models/tokenizer/json_load.h"

namespace pensieve::tok {

using nlohmann::json;

namespace {

// Builds the DOM like nlohmann's own SAX-DOM parser, except inside model.vocab / model.merges,
// whose entries are collected into TokenizerJson's arrays.
class Handler : public nlohmann::json_sax<json> {
 public:
  explicit Handler(TokenizerJson& out) : out_(out) {}
  std::string error;

  bool null() override { return value(json(nullptr)); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == kVocab) return vocab_id(v);
    return value(json(v));
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == kVocab) return vocab_id(v > INT64_MAX ? -1 : static_cast<int64_t>(v));
    return value(json(v));
  }
  bool number_float(number_float_t v, const string_t&) override {
    if (mode_ == kVocab) return fail("model.vocab[\"" + key_ + "\"]: id is not an integer");
    return value(json(v));
  }
  bool string(string_t& v) override {
    if (mode_ == kMerges) {
      // "a b": exactly one space (HF splits on ' ' and wants two parts).
      const size_t sp = v.find(' ');
      if (sp == std::string::npos || v.find(' ', sp + 1) != std::string::npos)
        return fail("model.merges[" + std::to_string(out_.merges.size()) + "] = \"" + v +
                    "\": expected two tokens separated by one space");
      out_.merges.emplace_back(v.substr(0, sp), v.substr(sp + 1));
      return true;
    }
    if (mode_ == kMergePair) {
      if (pair_n_ >= 2) return fail(pair_error());
      (pair_n_ == 0 ? pair_.first : pair_.second) = std::move(v);
      ++pair_n_;
      return true;
    }
    if (mode_ == kVocab) return fail("model.vocab[\"" + key_ + "\"]: id is not an integer");
    return value(json(std::move(v)));
  }
  bool binary(binary_t&) override { return fail("unexpected binary value"); }

  bool start_object(std::size_t) override {
    if (mode_ == kVocab || mode_ == kMerges || mode_ == kMergePair)
      return fail(mode_ == kVocab ? "model.vocab: ids must be integers" : pair_error());
    if (stack_.size() == 2 && at_model() && key_ == "vocab") {
      mode_ = kVocab;
      out_.has_vocab = true;
      return true;
    }
    return open(json::object());
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    if (mode_ == kVocab) {
      mode_ = kNone;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (mode_ == kVocab) return fail("model.vocab: ids must be integers");
    if (mode_ == kMergePair) return fail(pair_error());
    if (mode_ == kMerges) {
      mode_ = kMergePair;
      pair_n_ = 0;
      return true;
    }
    if (stack_.size() == 2 && at_model() && key_ == "merges") {
      mode_ = kMerges;
      out_.has_merges = true;
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    if (mode_ == kMergePair) {
      if (pair_n_ != 2) return fail(pair_error());
      out_.merges.push_back(std::move(pair_));
      pair_ = {};
      mode_ = kMerges;
      return true;
    }
    if (mode_ == kMerges) {
      mode_ = kNone;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t pos, const std::string&,
                   const nlohmann::detail::exception& e) override {
    if (error.empty()) error = "invalid JSON at byte " + std::to_string(pos) + ": " + e.what();
    return false;
  }

 private:
  enum Mode { kNone, kVocab, kMerges, kMergePair };

  bool fail(std::string msg) {
    error = std::move(msg);
    return false;
  }
  std::string pair_error() const {
    return "model.merges[" + std::to_string(out_.merges.size()) +
           "]: expected \"a b\" or [\"a\", \"b\"]";
  }
  bool vocab_id(int64_t id) {
    out_.vocab.emplace_back(std::move(key_), id);
    key_.clear();
    return true;
  }
  // The open container is the root's "model" object.
  bool at_model() const { return stack_[0]->is_object() && stack_[1] == model_; }

  // Adds a scalar to the open container.
  bool value(json v) {
    if (mode_ != kNone) return fail("unexpected value in model.vocab / model.merges");
    if (stack_.empty()) {
      out_.rest = std::move(v);
      return true;
    }
    json& top = *stack_.back();
    if (top.is_array())
      top.push_back(std::move(v));
    else
      top[key_] = std::move(v);
    return true;
  }
  // Adds a container to the open one and makes it the open one.
  bool open(json v) {
    if (stack_.empty()) {
      out_.rest = std::move(v);
      stack_.push_back(&out_.rest);
      return true;
    }
    json& top = *stack_.back();
    json* child;
    if (top.is_array()) {
      top.push_back(std::move(v));
      child = &top.back();
    } else {
      child = &(top[key_] = std::move(v));
      if (stack_.size() == 1 && key_ == "model") model_ = child;
    }
    stack_.push_back(child);
    return true;
  }

  TokenizerJson& out_;
  std::vector<json*> stack_;
  json* model_ = nullptr;
  std::string key_;
  Mode mode_ = kNone;
  std::pair<std::string, std::string> pair_;
  int pair_n_ = 0;
};

}  // namespace

Result<TokenizerJson> parse_tokenizer_json(std::string_view text, const std::string& what) {
  TokenizerJson out;
  Handler h(out);
  bool ok;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &h);
  } catch (const json::exception& e) {
    return errorf("%s: invalid JSON (%s)", what.c_str(), e.what());
  }
  if (!ok)
    return errorf("%s: %s", what.c_str(), h.error.empty() ? "invalid JSON" : h.error.c_str());
  return out;
}

}  // namespace pensieve::tok
