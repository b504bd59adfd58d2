// Tokenizer: HF `tokenizer.json` BPE tokenizers (SentencePiece-style with byte fallback, as in
// Phi-3 / Llama-2, and byte-level BPE with a Split regex, as in Phi-4-mini's o200k), encoding
// and decoding exactly as the HF `tokenizers` library does.
//
//   auto tok = Tokenizer::load("models/phi3");          // tokenizer.json (+ tokenizer_config.json)
//   auto ids = tok->encode("<|user|>\nHi<|end|>\n");    // [32010, 6324, 32007]
//   std::string text = tok->decode(*ids, /*skip_special=*/true);
//
// Encoding pipeline (HF's): added tokens are split out of the text first; each remaining segment
// is normalized, pre-tokenized and run through BPE on its own; then the post-processor adds
// BOS/EOS if the file (or tokenizer_config.json's add_bos_token) asks for it.
//
// A Tokenizer is immutable after loading; encode/decode may run concurrently from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tensor/result.h"

namespace pensieve {

namespace tok {
struct TokenizerJson;
}

struct EncodeOptions {
  // Apply the post-processor (BOS/EOS). HF: encode(text, add_special_tokens=True).
  bool add_special_tokens = true;
  // Treat special added tokens written in the text as plain text (HF: encode_special_tokens).
  // Non-special added tokens (e.g. Phi-4's <|tool|>) are still matched.
  bool special_as_text = false;
};

// Token ids the generator needs; -1 where the tokenizer has none.
struct SpecialTokens {
  int32_t bos = -1, eos = -1, pad = -1, unk = -1;
  // Generation stops at any of these: eos, the eos_token_id(s) of config.json and
  // generation_config.json, and the end-of-turn tokens the vocabulary has (<|end|>,
  // <|endoftext|>, <|eot_id|>, <|im_end|>, <|end_of_text|>). Sorted, unique.
  std::vector<int32_t> stop;
};

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json, and when present DIR/tokenizer_config.json (special tokens,
  // add_bos_token, chat template), DIR/chat_template.jinja, and the eos_token_id of
  // DIR/config.json and DIR/generation_config.json.
  static Result<Tokenizer> load(const std::string& model_dir);
  // From file contents (tokenizer_config may be empty). `origin` names the source in errors.
  static Result<Tokenizer> from_json(std::string_view tokenizer_json,
                                     std::string_view tokenizer_config_json = {},
                                     std::string_view origin = "tokenizer.json");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text -> ids. Invalid UTF-8 in `text` is first replaced by U+FFFD (lossy, as Rust's
  // from_utf8_lossy), since HF only ever sees valid strings. Fails only on internal limits
  // (regex engine errors), with a message.
  Result<std::vector<int32_t>> encode(std::string_view text, const EncodeOptions& opts = {}) const;

  // Ids -> text, as HF decode(ids, skip_special_tokens). Ids the vocabulary does not have (such
  // as Phi-3's padded ids 32011..32063, or negative ones) decode to nothing.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // One past the largest id with a token (Phi-3: 32011; the model's vocab_size may be padded).
  int32_t vocab_size() const;
  // The token string of an id ("▁Hello", "<|end|>", "<0x0A>"), or "" if the id has none.
  std::string_view id_to_token(int32_t id) const;
  // The id of a token string (model vocabulary or added token), or -1.
  int32_t token_to_id(std::string_view token) const;
  // Whether id is an added token marked special (skipped by decode(..., skip_special=true)).
  bool is_special(int32_t id) const;

  const SpecialTokens& special_tokens() const;
  // tokenizer_config.json's bos_token / eos_token strings ("" if absent): chat templates use them.
  const std::string& bos_token() const;
  const std::string& eos_token() const;
  // The Jinja chat template source from tokenizer_config.json / chat_template.jinja, or "".
  const std::string& chat_template_source() const;
  // Where this tokenizer came from (directory or origin), for messages.
  const std::string& origin() const;

  struct Impl;

 private:
  friend class StreamDecoder;
  static Result<Tokenizer> build(tok::TokenizerJson&& tokenizer_json, const nlohmann::json& config,
                                 std::string origin);
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streaming detokenizer: feed generated ids one at a time and print what comes back.
// - Pieces never end inside a UTF-8 character: bytes of byte-fallback runs (Phi-3) or of
//   byte-level tokens (Phi-4) are held until their character is complete.
// - The concatenation of all push() results and flush() equals tok.decode(all ids, skip_special),
//   including HF's leading-space strip and its U+FFFD rules for invalid bytes.
// Phi-3's byte-fallback runs are released when the run ends (a run turned invalid later would
// change all of its characters to U+FFFD), so a run's text appears with the next other token.
// The Tokenizer must outlive the decoder.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false);
  StreamDecoder(StreamDecoder&&) noexcept;
  StreamDecoder& operator=(StreamDecoder&&) noexcept;
  ~StreamDecoder();

  // Text that became final with this id (often empty).
  std::string push(int32_t id);
  // End of generation: the rest, with unfinished bytes turned into U+FFFD as decode() does.
  std::string flush();
  // Start a new stream.
  void reset();

 private:
  struct State;
  const Tokenizer* tok_;
  bool skip_special_;
  std::unique_ptr<State> state_;
};

}  // namespace pensieve
