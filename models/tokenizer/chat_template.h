// Chat templates: render a conversation into the prompt text the model was trained on.
//
// We do not run Jinja. The templates of the model families we support are recognised in
// tokenizer_config.json (compared after canonicalisation: whitespace, quoting and Jinja's
// whitespace control do not matter) and rendered by hand-written code that reproduces
// transformers' apply_chat_template output exactly. An unknown template is an error that names
// the --chat-template override.
//
//   name          family                         recognised template
//   phi3          Phi-3-mini-4k/128k-instruct     <|role|>\n{content}<|end|>\n ...
//   phi3.5        Phi-3.5-mini-instruct           the same, skipping an empty system message
//   phi4          Phi-4-mini-instruct             <|role|>{content}<|end|>, optional tools
//   llama2        Llama-2-chat                    <s>[INST] <<SYS>>...<</SYS>> ... [/INST]
//   phi3-original Phi-3-mini-4k (April 2024)      {{bos}}<|user|>\n...<|end|>\n<|assistant|>\n
//   phi3-medium   Phi-3-medium-4k/128k-instruct   the same without bos
//   raw           models without a template       the contents, concatenated
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tensor/result.h"

namespace pensieve {

class Tokenizer;

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (other roles: as the template treats them)
  std::string content;
  // Phi-4-mini: a system message may carry the tool definitions (a JSON string), rendered as
  // <|tool|>...<|/tool|>. Absent = no tools block.
  std::optional<std::string> tools;
};

class ChatTemplate {
 public:
  enum class Format { kPhi3, kPhi35, kPhi4, kLlama2, kPhi3Original, kPhi3Medium, kRaw };

  // By override name (see the table above). bos/eos: the token strings the template inserts.
  static Result<ChatTemplate> from_name(std::string_view name, std::string bos_token = "",
                                        std::string eos_token = "");
  // The template a tokenizer's model uses: the override if non-empty, else the recognised
  // tokenizer_config.json / chat_template.jinja template, else (no template at all) raw.
  static Result<ChatTemplate> select(const Tokenizer& tok, std::string_view override_name = {});
  // Which known template a Jinja source is, or an error.
  static Result<Format> recognize(std::string_view jinja_source);

  // The prompt text (tokenize it with Tokenizer::encode). Fails where the Jinja template would
  // raise (Llama-2: roles not alternating user/assistant).
  Result<std::string> render(std::span<const ChatMessage> messages,
                             bool add_generation_prompt) const;

  // How to encode the rendered text: transformers' apply_chat_template encodes it with
  // add_special_tokens=False (templates that want BOS write it: llama2, phi3-original). The raw
  // template has no markup, so there the tokenizer's own BOS is wanted (llama2.c-style models).
  bool add_special_tokens() const { return format_ == Format::kRaw; }

  Format format() const { return format_; }
  std::string_view name() const;
  // "phi3|phi3.5|phi4|llama2|phi3-original|phi3-medium|raw"
  static std::string_view names();

 private:
  ChatTemplate(Format f, std::string bos, std::string eos)
      : format_(f), bos_(std::move(bos)), eos_(std::move(eos)) {}
  Format format_;
  std::string bos_, eos_;
};

// Exposed for tests: the canonical form two equivalent Jinja sources share.
std::string canonicalize_jinja(std::string_view src);

}  // namespace pensieve
