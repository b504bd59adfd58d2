#include "models/tokenizer/chat_template.h"

#include <cctype>

#include <nlohmann/json.hpp>

#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/utf8.h"

namespace pensieve {

namespace {

// ---------------------------------------------------------------------------------------------
// The known templates, as the Jinja sources published in the models' tokenizer_config.json
// (after JSON decoding). Only their canonical forms are compared.

constexpr std::string_view kPhi3 =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' "
    "%}{{'<|assistant|>\n' "
    "+ message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

constexpr std::string_view kPhi35 =
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

constexpr std::string_view kPhi4 =
    "{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and "
    "message['tools'] is not none %}{{ '<|' + message['role'] + '|>' + message['content'] + "
    "'<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}{% else %}{{ '<|' + "
    "message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}";

constexpr std::string_view kPhi3Original =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' "
    "+ "
    "'\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif "
    "(message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% "
    "endfor %}";

constexpr std::string_view kPhi3Medium =
    "{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + "
    "message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == "
    "'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}";

constexpr std::string_view kLlama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
    "system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] "
    "== "
    "'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != "
    "false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
    "message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
    "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% "
    "endfor %}";

struct Known {
  ChatTemplate::Format format;
  std::string_view name;
  std::string_view source;  // empty: no recognisable source (raw)
};

constexpr Known kKnown[] = {
    {ChatTemplate::Format::kPhi3, "phi3", kPhi3},
    {ChatTemplate::Format::kPhi35, "phi3.5", kPhi35},
    {ChatTemplate::Format::kPhi4, "phi4", kPhi4},
    {ChatTemplate::Format::kLlama2, "llama2", kLlama2},
    {ChatTemplate::Format::kPhi3Original, "phi3-original", kPhi3Original},
    {ChatTemplate::Format::kPhi3Medium, "phi3-medium", kPhi3Medium},
    {ChatTemplate::Format::kRaw, "raw", {}},
};

// ---------------------------------------------------------------------------------------------
// Canonical form of a Jinja source, as transformers compiles it (trim_blocks, lstrip_blocks).

bool is_word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
         (static_cast<unsigned char>(c) & 0x80);
}

// The inside of a tag, without whitespace (except one space between words) and with every
// string literal decoded and re-quoted as JSON.
std::string canonical_tag(std::string_view s) {
  std::string out;
  bool last_word = false;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    if (c == '\'' || c == '"') {
      std::string lit;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] == '\\' && j + 1 < s.size()) {
          const char e = s[++j];
          switch (e) {
            case 'n': lit += '\n'; break;
            case 't': lit += '\t'; break;
            case 'r': lit += '\r'; break;
            case '\\':
            case '\'':
            case '"': lit += e; break;
            default: lit += '\\'; lit += e;
          }
        } else {
          lit += s[j];
        }
      }
      out += nlohmann::json(lit).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      i = j + 1;
      last_word = false;
      continue;
    }
    if (is_word_char(c)) {
      if (last_word) out += ' ';
      while (i < s.size() && is_word_char(s[i])) out += s[i++];
      last_word = true;
      continue;
    }
    out += c;
    ++i;
    last_word = false;
  }
  return out;
}

}  // namespace

std::string canonicalize_jinja(std::string_view src) {
  const size_t n = src.size();
  std::string out, text;
  auto flush_text = [&]() {
    if (!text.empty())
      out.append("T").append(
          nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    text.clear();
  };
  auto find_open = [&](size_t from) {
    for (size_t p = src.find('{', from); p != std::string_view::npos && p + 1 < n;
         p = src.find('{', p + 1))
      if (src[p + 1] == '{' || src[p + 1] == '%' || src[p + 1] == '#') return p;
    return std::string_view::npos;
  };
  size_t i = 0;
  bool line_start = true;  // the data at i starts a line (Jinja's lstrip_blocks condition)
  for (;;) {
    const size_t open = find_open(i);
    std::string d(
        src.substr(i, open == std::string_view::npos ? std::string_view::npos : open - i));
    if (open == std::string_view::npos) {
      text += d;
      break;
    }
    const char kind = src[open + 1];  // '{' expression, '%' statement, '#' comment
    size_t body = open + 2;
    const char sign = body < n && (src[body] == '-' || src[body] == '+') ? src[body++] : 0;
    if (sign == '-') {
      while (!d.empty() && std::isspace(static_cast<unsigned char>(d.back()))) d.pop_back();
    } else if (kind != '{' && sign != '+') {
      // lstrip_blocks: only spaces between the start of a line and a block tag are removed.
      size_t l = d.rfind('\n');
      l = l == std::string::npos ? 0 : l + 1;
      if ((l > 0 || line_start) && d.find_first_not_of(" \t\r\f\v", l) == std::string::npos)
        d.erase(l);
    }
    text += d;
    // The closing delimiter, skipping string literals inside the tag.
    const char close = kind == '{' ? '}' : kind;
    size_t j = body;
    char quote = 0;
    for (; j + 1 < n; ++j) {
      const char c = src[j];
      if (quote) {
        if (c == '\\')
          ++j;
        else if (c == quote)
          quote = 0;
      } else if (kind != '#' && (c == '\'' || c == '"')) {
        quote = c;
      } else if (c == close && src[j + 1] == '}') {
        break;
      }
    }
    if (j + 1 >= n) {  // unterminated tag: keep it as text, so it matches nothing known
      text += src.substr(open);
      break;
    }
    size_t inner_end = j;
    const bool rstrip = inner_end > body && src[inner_end - 1] == '-';
    if (rstrip) --inner_end;
    if (kind != '#') {
      flush_text();
      out += kind == '{' ? 'E' : 'S';
      out += canonical_tag(src.substr(body, inner_end - body));
      out += '\x1f';
    }
    i = j + 2;
    line_start = false;
    if (rstrip) {  // "-%}": all following whitespace goes
      size_t k = i;
      while (k < n && std::isspace(static_cast<unsigned char>(src[k]))) ++k;
      line_start = k > i && src[k - 1] == '\n';
      i = k;
    } else if (kind != '{' && i < n && src[i] == '\n') {  // trim_blocks
      ++i;
      line_start = true;
    }
  }
  flush_text();
  return out;
}

namespace {

std::string python_strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e) {
    size_t k = b;
    if (!tok::is_python_space(tok::utf8_next(s, k))) break;
    b = k;
  }
  while (e > b) {
    size_t j = e - 1;
    while (j > b && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
    size_t k = j;
    if (!tok::is_python_space(tok::utf8_next(s, k))) break;
    e = j;
  }
  return std::string(s.substr(b, e - b));
}

}  // namespace

Result<ChatTemplate::Format> ChatTemplate::recognize(std::string_view jinja_source) {
  const std::string canon = canonicalize_jinja(jinja_source);
  for (const Known& k : kKnown)
    if (!k.source.empty() && canonicalize_jinja(k.source) == canon) return k.format;
  std::string head(jinja_source.substr(0, 80));
  for (char& c : head)
    if (c == '\n') c = ' ';
  return errorf(
      "chat template not recognised (it starts: \"%s%s\"); pensieve renders known "
      "templates only: choose one with --chat-template %s",
      head.c_str(), jinja_source.size() > 80 ? "..." : "", std::string(names()).c_str());
}

std::string_view ChatTemplate::names() {
  return "phi3|phi3.5|phi4|llama2|phi3-original|phi3-medium|raw";
}

std::string_view ChatTemplate::name() const {
  for (const Known& k : kKnown)
    if (k.format == format_) return k.name;
  return "?";
}

Result<ChatTemplate> ChatTemplate::from_name(std::string_view name, std::string bos,
                                             std::string eos) {
  for (const Known& k : kKnown)
    if (k.name == name) return ChatTemplate(k.format, std::move(bos), std::move(eos));
  return errorf("--chat-template: unknown template \"%.*s\", expected one of %s",
                static_cast<int>(name.size()), name.data(), std::string(names()).c_str());
}

Result<ChatTemplate> ChatTemplate::select(const Tokenizer& tok, std::string_view override_name) {
  if (!override_name.empty()) return from_name(override_name, tok.bos_token(), tok.eos_token());
  const std::string& src = tok.chat_template_source();
  if (src.empty()) return ChatTemplate(Format::kRaw, tok.bos_token(), tok.eos_token());
  auto f = recognize(src);
  if (!f.ok()) return errorf("%s: %s", tok.origin().c_str(), f.error().c_str());
  return ChatTemplate(*f, tok.bos_token(), tok.eos_token());
}

Result<std::string> ChatTemplate::render(std::span<const ChatMessage> messages,
                                         bool add_generation_prompt) const {
  std::string out;
  switch (format_) {
    case Format::kPhi3:
    case Format::kPhi35:
      for (const ChatMessage& m : messages) {
        if (m.role == "system") {
          if (format_ == Format::kPhi35 && m.content.empty()) continue;  // Phi-3.5 skips it
          out += "<|system|>\n" + m.content + "<|end|>\n";
        } else if (m.role == "user") {
          out += "<|user|>\n" + m.content + "<|end|>\n";
        } else if (m.role == "assistant") {
          out += "<|assistant|>\n" + m.content + "<|end|>\n";
        }  // other roles: the template writes nothing
      }
      out += add_generation_prompt ? "<|assistant|>\n" : eos_;
      break;
    case Format::kPhi4:
      for (const ChatMessage& m : messages) {
        if (m.role == "system" && m.tools)
          out += "<|system|>" + m.content + "<|tool|>" + *m.tools + "<|/tool|><|end|>";
        else
          out += "<|" + m.role + "|>" + m.content + "<|end|>";
      }
      out += add_generation_prompt ? "<|assistant|>" : eos_;
      break;
    case Format::kPhi3Original:
    case Format::kPhi3Medium:
      if (format_ == Format::kPhi3Original) out += bos_;
      for (const ChatMessage& m : messages) {
        if (m.role == "user")
          out += "<|user|>\n" + m.content + "<|end|>\n<|assistant|>\n";
        else if (m.role == "assistant")
          out += m.content + "<|end|>\n";
      }
      break;
    case Format::kLlama2: {
      if (messages.empty())
        return errorf("chat template llama2: no messages (it reads messages[0])");
      std::span<const ChatMessage> loop = messages;
      const ChatMessage* system = nullptr;
      if (messages[0].role == "system") system = &messages[0], loop = messages.subspan(1);
      for (size_t i = 0; i < loop.size(); ++i) {
        const ChatMessage& m = loop[i];
        if ((m.role == "user") != (i % 2 == 0))
          return errorf(
              "chat template llama2: message %zu has role \"%s\": conversation roles "
              "must alternate user/assistant/user/assistant/...",
              i + (system ? 1 : 0), m.role.c_str());
        std::string content = m.content;
        if (i == 0 && system)
          content = "<<SYS>>\n" + system->content + "\n<</SYS>>\n\n" + m.content;
        if (m.role == "user")
          out += bos_ + "[INST] " + python_strip(content) + " [/INST]";
        else if (m.role == "assistant")
          out.append(" ").append(python_strip(content)).append(" ").append(eos_);
      }
      break;
    }
    case Format::kRaw:
      for (const ChatMessage& m : messages) out += m.content;
      break;
  }
  return out;
}

}  // namespace pensieve
