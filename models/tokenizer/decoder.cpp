#include "models/tokenizer/decoder.h"

#include <nlohmann/json.hpp>

#include "models/tokenizer/pipeline.h"
#include "models/tokenizer/utf8.h"

namespace pensieve::tok {

using nlohmann::json;

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// HF ByteFallback: a token of exactly six bytes "<0x" XX ">" where XX parses with Rust's
// u8::from_str_radix(XX, 16) (which also accepts a '+' sign: "<0x+A>" is byte 10).
int byte_fallback_value(std::string_view t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  if (t[3] == '+') return hex_digit(t[4]);
  const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Whether s could still be the start of valid UTF-8 (valid, except maybe an unfinished tail).
bool utf8_valid_prefix(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    Utf8Step st = utf8_step(p + i, s.size() - i);
    if (!st.valid) return st.truncated;
    i += st.len;
  }
  return true;
}

bool single_char(std::string_view s) {
  return !s.empty() && utf8_char_len(static_cast<unsigned char>(s[0])) == s.size();
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  if (from.empty()) return s;
  std::string out;
  size_t prev = 0;
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + from.size())) {
    out.append(s, prev, p - prev);
    out.append(to);
    prev = p + from.size();
  }
  if (prev == 0) return s;
  out.append(s, prev, std::string::npos);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Decoder (configuration)

Result<Decoder> Decoder::from_json(const json& j) {
  Decoder d;
  if (j.is_null()) {
    DecodeStage join{};
    join.kind = DecodeStage::kJoinSpace;
    d.stages_.push_back(std::move(join));
    return d;
  }
  bool fused = false;
  PENSIEVE_TRY(d.add(j, fused));
  return d;
}

Status Decoder::add(const json& j, bool& fused) {
  const std::string type = j.is_object() && j.contains("type") && j["type"].is_string()
                               ? j["type"].get<std::string>()
                               : "?";
  auto unsupported_fused = [&]() {
    return errorf("tokenizer.json: decoder \"%s\" after Fuse/ByteLevel is not supported",
                  type.c_str());
  };
  DecodeStage s{};
  s.fused = fused;
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array())
      return errorf("tokenizer.json: decoder Sequence without a \"decoders\" array");
    for (const json& e : j["decoders"]) PENSIEVE_TRY(add(e, fused));
    return Status::Ok();
  } else if (type == "Replace") {
    s.kind = DecodeStage::kReplace;
    const json pat = j.value("pattern", json());
    if (!pat.is_object() || !pat.contains("String") || !pat["String"].is_string() ||
        !j.contains("content") || !j["content"].is_string())
      return errorf(
          "tokenizer.json: decoder Replace: expected {\"pattern\": {\"String\": ...}, "
          "\"content\": ...} (regex patterns are not supported)");
    s.from = pat["String"].get<std::string>();
    s.to = j["content"].get<std::string>();
    if (s.from.empty()) return errorf("tokenizer.json: decoder Replace: empty pattern");
    // A pattern of one character cannot straddle two pieces of a fused token.
    if (fused && !single_char(s.from)) return unsupported_fused();
  } else if (type == "ByteFallback") {
    s.kind = DecodeStage::kByteFallback;
    if (fused) return unsupported_fused();
  } else if (type == "Fuse") {
    s.kind = DecodeStage::kFuse;
    fused = true;
  } else if (type == "Strip") {
    s.kind = DecodeStage::kStrip;
    s.content = j.value("content", std::string(" "));
    if (!single_char(s.content))
      return errorf("tokenizer.json: decoder Strip: content \"%s\" is not one character",
                    s.content.c_str());
    const int64_t start = j.value("start", int64_t{0}), stop = j.value("stop", int64_t{0});
    if (start < 0 || stop < 0 || start > 1024 || stop > 1024)
      return errorf("tokenizer.json: decoder Strip: start %lld / stop %lld out of range [0, 1024]",
                    static_cast<long long>(start), static_cast<long long>(stop));
    s.start = static_cast<size_t>(start);
    s.stop = static_cast<size_t>(stop);
  } else if (type == "ByteLevel") {
    s.kind = DecodeStage::kByteLevel;
    if (fused) return unsupported_fused();
    fused = true;
  } else if (type == "Metaspace") {
    s.kind = DecodeStage::kMetaspace;
    s.from = j.value("replacement", std::string("\xE2\x96\x81"));
    if (!single_char(s.from))
      return errorf("tokenizer.json: decoder Metaspace: replacement \"%s\" is not one character",
                    s.from.c_str());
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string())
      s.metaspace_prepend = j["prepend_scheme"].get<std::string>() != "never";
    else
      s.metaspace_prepend = j.value("add_prefix_space", true);
  } else {
    return errorf(
        "tokenizer.json: decoder \"%s\" is not supported (supported: Sequence, Replace, "
        "ByteFallback, Fuse, Strip, ByteLevel, Metaspace)",
        type.c_str());
  }
  stages_.push_back(std::move(s));
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// DecodeState (one stream)

DecodeState::DecodeState(const Decoder* d) : d_(d), st_(d->stages().size()) {}

void DecodeState::reset() { st_.assign(d_->stages().size(), StageState{}); }

void DecodeState::push(std::string token, std::string& out) { feed(0, std::move(token), out); }

void DecodeState::flush(std::string& out) { finish(0, out); }

// End of a run of byte tokens: valid UTF-8 as a whole -> one string, else one U+FFFD per byte
// (unless those already went out when the run turned invalid).
void DecodeState::end_byte_run(size_t i, std::string& out) {
  StageState& st = st_[i];
  if (!st.bytes.empty() && !st.run_invalid) {
    if (utf8_is_valid(st.bytes)) {
      feed(i + 1, std::move(st.bytes), out);
    } else {
      for (size_t k = 0; k < st.bytes.size(); ++k) feed(i + 1, std::string(kReplacementChar), out);
    }
  }
  st.bytes.clear();
  st.run_invalid = false;
}

void DecodeState::feed(size_t i, std::string piece, std::string& out) {
  const auto& stages = d_->stages();
  if (i == stages.size()) {
    out += piece;  // HF joins the final list of strings with ""
    return;
  }
  const DecodeStage& s = stages[i];
  StageState& st = st_[i];
  switch (s.kind) {
    case DecodeStage::kReplace:
      return feed(i + 1, replace_all(std::move(piece), s.from, s.to), out);

    case DecodeStage::kFuse: return feed(i + 1, std::move(piece), out);

    case DecodeStage::kByteFallback: {
      const int byte = byte_fallback_value(piece);
      if (byte >= 0) {
        // A run of byte tokens becomes one string if it is valid UTF-8 as a whole, and otherwise
        // one U+FFFD per byte (HF's rule). Once a run cannot be valid any more, its U+FFFDs are
        // final and go out at once.
        st.bytes.push_back(static_cast<char>(byte));
        if (st.run_invalid) return feed(i + 1, std::string(kReplacementChar), out);
        if (!utf8_valid_prefix(st.bytes)) {
          st.run_invalid = true;
          for (size_t k = 0; k < st.bytes.size(); ++k)
            feed(i + 1, std::string(kReplacementChar), out);
        }
        return;
      }
      end_byte_run(i, out);
      return feed(i + 1, std::move(piece), out);
    }

    case DecodeStage::kStrip: {
      if (!s.fused) {
        // One whole token: strip up to `start` leading and `stop` trailing `content` characters.
        size_t b = 0, e = piece.size(), n = 0;
        while (n < s.start && piece.compare(b, s.content.size(), s.content) == 0 && b < e)
          b += s.content.size(), ++n;
        n = 0;
        while (n < s.stop && e >= b + s.content.size() &&
               piece.compare(e - s.content.size(), s.content.size(), s.content) == 0)
          e -= s.content.size(), ++n;
        return feed(i + 1, piece.substr(b, e - b), out);
      }
      // Fused: the stream is one token. Leading characters are stripped as they arrive; trailing
      // `content` characters are held back until something else follows them.
      size_t b = 0;
      while (!st.started && st.count < s.start && b < piece.size() &&
             piece.compare(b, s.content.size(), s.content) == 0)
        b += s.content.size(), ++st.count;
      if (b < piece.size() || st.count >= s.start) st.started = true;
      std::string_view rest = std::string_view(piece).substr(b);
      if (s.stop == 0) return feed(i + 1, std::string(rest), out);
      size_t e = rest.size(), trailing = 0;
      while (e >= s.content.size() &&
             rest.compare(e - s.content.size(), s.content.size(), s.content) == 0)
        e -= s.content.size(), ++trailing;
      std::string emit;
      if (e > 0) {  // something other than `content`: the held characters are final
        for (size_t k = 0; k < st.held; ++k) emit += s.content;
        emit.append(rest.substr(0, e));
        st.held = 0;
      }
      st.held += trailing;
      for (; st.held > s.stop; --st.held) emit += s.content;
      return feed(i + 1, std::move(emit), out);
    }

    case DecodeStage::kByteLevel: {
      // Characters of the byte alphabet become their bytes; a token with any other character is
      // taken as its own UTF-8 (HF's rule, which keeps added tokens readable).
      std::string bytes;
      bytes.reserve(piece.size());
      bool all = true;
      for (size_t k = 0; k < piece.size() && all;) {
        const int b = byte_level_byte(utf8_next(piece, k));
        if (b < 0) all = false;
        bytes.push_back(static_cast<char>(b));
      }
      st.bytes.append(all ? bytes : piece);
      // Everything but an unfinished last character is final: lossy decoding of a prefix that
      // ends before a lead byte is the same as that of the whole.
      const size_t keep = utf8_incomplete_tail(st.bytes);
      if (st.bytes.size() > keep) {
        std::string text = utf8_lossy(std::string_view(st.bytes).substr(0, st.bytes.size() - keep));
        st.bytes.erase(0, st.bytes.size() - keep);
        feed(i + 1, std::move(text), out);
      }
      return;
    }

    case DecodeStage::kMetaspace: {
      const bool first = s.fused || st.count == 0;  // fused: all pieces are the first token
      ++st.count;
      if (first && s.metaspace_prepend)
        return feed(i + 1, replace_all(std::move(piece), s.from, ""), out);
      return feed(i + 1, replace_all(std::move(piece), s.from, " "), out);
    }

    case DecodeStage::kJoinSpace:
      if (st.count++ > 0) piece = " " + piece;
      return feed(i + 1, std::move(piece), out);
  }
}

void DecodeState::finish(size_t i, std::string& out) {
  const auto& stages = d_->stages();
  if (i == stages.size()) return;
  const DecodeStage& s = stages[i];
  StageState& st = st_[i];
  if (s.kind == DecodeStage::kByteFallback) {
    end_byte_run(i, out);
  } else if (s.kind == DecodeStage::kByteLevel && !st.bytes.empty()) {
    std::string text = utf8_lossy(st.bytes);
    st.bytes.clear();
    feed(i + 1, std::move(text), out);
  }
  // Strip: held trailing characters (at most `stop`) are exactly the ones stripped.
  finish(i + 1, out);
}

}  // namespace pensieve::tok
