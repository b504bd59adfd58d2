// POST /v1/messages (and /v1/messages/count_tokens) request bodies -> ChatRequest.
//
// Content is a string or an array of blocks. Text blocks are joined with a blank line. Blocks we
// cannot use are rendered as short text so the conversation still reads in order:
//   image / document          -> "[image]" / "[document]"
//   tool_use                  -> "[tool_use NAME] {input JSON}"
//   tool_result               -> "[tool_result] " + its text content
//   thinking, redacted_thinking and other block types -> dropped
// `tools`, `tool_choice`, `metadata`, `thinking`, `cache_control` and other unknown fields are
// accepted and ignored (tool use is a later issue), so Claude Code and the SDKs never get a 400.
#include <climits>

#include "server/api.h"
#include "server/json_fields.h"

namespace pensieve::server {

namespace {

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out += "\n\n";
    out += p;
  }
  return out;
}

// The text of `content` (a string or an array of blocks) at `path`.
Result<std::string> content_text(const json& content, const std::string& path, bool system,
                                 const ParseOptions& o) {
  if (content.is_string()) {
    std::string s = content.get<std::string>();
    return system && o.strip_billing_header ? strip_billing_header(s) : s;
  }
  if (!content.is_array()) return type_error(path, "a string or an array of content blocks", content);
  std::vector<std::string> parts;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& b = content[i];
    std::string bp = path + "." + std::to_string(i);
    if (!b.is_object()) return type_error(bp, "a content block object", b);
    auto type = opt_string(b, "type", bp + ".type");
    if (!type) return std::move(type).take_error();
    if (!*type) return errorf("%s.type: field required", bp.c_str());
    const std::string& t = **type;
    if (t == "text") {
      auto text = opt_string(b, "text", bp + ".text");
      if (!text) return std::move(text).take_error();
      if (!*text) return errorf("%s.text: field required", bp.c_str());
      parts.push_back(system && o.strip_billing_header ? strip_billing_header(**text) : **text);
    } else if (t == "image" || t == "document") {
      parts.push_back("[" + t + "]");
    } else if (t == "tool_use" || t == "server_tool_use") {
      auto name = opt_string(b, "name", bp + ".name");
      if (!name) return std::move(name).take_error();
      const json* input = field(b, "input");
      parts.push_back("[tool_use " + name->value_or("") + "] " + (input ? dump(ojson(*input)) : "{}"));
    } else if (t == "tool_result") {
      std::string inner;
      if (const json* c = field(b, "content")) {
        auto r = content_text(*c, bp + ".content", false, o);
        if (!r) return std::move(r).take_error();
        inner = std::move(*r);
      }
      parts.push_back("[tool_result] " + inner);
    }
    // thinking, redacted_thinking, search results, ...: nothing the model can use.
  }
  return join(parts);
}

}  // namespace

Result<ChatRequest> parse_anthropic_messages(const json& body, const ParseOptions& o, bool for_count_tokens) {
  ChatRequest r;
  auto model = opt_string(body, "model", "model");
  if (!model) return std::move(model).take_error();
  if (!*model) return errorf("model: field required");
  r.model = **model;

  if (!for_count_tokens) {
    auto mt = opt_int(body, "max_tokens", "max_tokens");
    if (!mt) return std::move(mt).take_error();
    if (!*mt) return errorf("max_tokens: field required");
    if (**mt < 1) return errorf("max_tokens: %lld is out of range, expected >= 1", (long long)**mt);
    r.max_tokens = **mt;
  }

  // System prompt: a string or text blocks; role "system" messages at the start of `messages`
  // join it, later ones stay in place (the Phi templates render system turns anywhere).
  std::vector<std::string> system;
  if (const json* s = field(body, "system")) {
    auto text = content_text(*s, "system", true, o);
    if (!text) return std::move(text).take_error();
    system.push_back(std::move(*text));
  }

  auto messages = messages_array(body);
  if (!messages) return std::move(messages).take_error();
  std::vector<ChatMessage> turns;
  for (size_t i = 0; i < (*messages)->size(); ++i) {
    const json& m = (**messages)[i];
    std::string path = "messages." + std::to_string(i);
    auto role = message_role(m, path);
    if (!role) return std::move(role).take_error();
    if (*role != "user" && *role != "assistant" && *role != "system")
      return errorf("%s.role: \"%s\" is not one of \"user\", \"assistant\", \"system\"", path.c_str(),
                    role->c_str());
    const json* content = field(m, "content");
    if (!content) return errorf("%s.content: field required", path.c_str());
    bool is_system = *role == "system";
    auto text = content_text(*content, path + ".content", is_system, o);
    if (!text) return std::move(text).take_error();
    if (is_system && turns.empty()) {
      system.push_back(std::move(*text));
    } else {
      turns.push_back({*role, std::move(*text), std::nullopt});
    }
  }
  std::string sys = join(system);
  if (!sys.empty()) r.messages.push_back({"system", sys, std::nullopt});
  if (!turns.empty() && turns.back().role == "assistant") {
    r.assistant_prefix = std::move(turns.back().content);
    turns.pop_back();
  }
  for (auto& t : turns) r.messages.push_back(std::move(t));

  // Sampling. Anthropic's documented defaults: temperature 1, top_p and top_k off.
  SamplingParams& sp = r.sampling;
  PENSIEVE_FIELD(opt_number, body, "temperature", "temperature", sp.temperature);
  PENSIEVE_FIELD(opt_number, body, "top_p", "top_p", sp.top_p);
  {
    auto k = opt_int(body, "top_k", "top_k");
    if (!k) return std::move(k).take_error();
    if (*k) {
      if (**k < 0 || **k > INT_MAX) return errorf("top_k: %lld is out of range, expected >= 0", (long long)**k);
      sp.top_k = int(**k);
    }
  }
  {
    auto seed = opt_int(body, "seed", "seed");  // not in Anthropic's API; handy for tests
    if (!seed) return std::move(seed).take_error();
    if (*seed) sp.seed = uint64_t(**seed), sp.has_seed = true;
  }
  Status st = check_sampling(sp);
  if (!st) return Error{st.error()};

  if (const json* ss = field(body, "stop_sequences")) {
    if (!ss->is_array()) return type_error("stop_sequences", "an array of strings", *ss);
    for (size_t i = 0; i < ss->size(); ++i) {
      const json& s = (*ss)[i];
      std::string path = "stop_sequences." + std::to_string(i);
      if (!s.is_string()) return type_error(path, "a string", s);
      if (s.get_ref<const std::string&>().empty()) return errorf("%s: must not be empty", path.c_str());
      r.stop.push_back(s.get<std::string>());
    }
  }
  PENSIEVE_FIELD(opt_bool, body, "stream", "stream", r.stream);
  // tools, tool_choice, metadata, thinking, service_tier, ...: accepted and ignored.
  if (const json* t = field(body, "tools"); t && !t->is_array()) return type_error("tools", "an array", *t);
  return r;
}

}  // namespace pensieve::server
