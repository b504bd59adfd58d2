// POST /v1/chat/completions request bodies -> ChatRequest.
//
// Roles: system and developer (-> system), user, assistant, tool (-> a user turn "[tool_result] ...").
// Content: a string, null (assistant turns with tool_calls), or an array of parts: text parts are
// joined with a blank line, image/audio/file parts become "[image]" and the like. An assistant's
// tool_calls are rendered as "[tool_use NAME] ARGUMENTS". tools, tool_choice, response_format,
// logprobs, user, metadata and other unknown fields are accepted and ignored; n > 1 is a 400.
#include "server/api.h"
#include "server/json_fields.h"

namespace pensieve::server {

namespace {

Result<std::string> content_text(const json& content, const std::string& path) {
  if (content.is_null()) return std::string();
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return type_error(path, "a string or an array of content parts", content);
  std::string out;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& p = content[i];
    std::string pp = path + "." + std::to_string(i);
    if (!p.is_object()) return type_error(pp, "a content part object", p);
    auto type = opt_string(p, "type", pp + ".type");
    if (!type) return std::move(type).take_error();
    if (!*type) return errorf("%s.type: field required", pp.c_str());
    std::string piece;
    if (**type == "text") {
      auto text = opt_string(p, "text", pp + ".text");
      if (!text) return std::move(text).take_error();
      if (!*text) return errorf("%s.text: field required", pp.c_str());
      piece = **text;
    } else if (**type == "image_url") {
      piece = "[image]";
    } else if (**type == "input_audio") {
      piece = "[audio]";
    } else if (**type == "file") {
      piece = "[file]";
    } else if (**type == "refusal") {
      auto text = opt_string(p, "refusal", pp + ".refusal");
      if (!text) return std::move(text).take_error();
      piece = text->value_or("");
    }
    if (piece.empty()) continue;
    if (!out.empty()) out += "\n\n";
    out += piece;
  }
  return out;
}

}  // namespace

Result<ChatRequest> parse_openai_chat(const json& body, const ParseOptions& o) {
  ChatRequest r;
  auto model = opt_string(body, "model", "model");
  if (!model) return std::move(model).take_error();
  if (!*model) return errorf("model: field required");
  r.model = **model;

  auto messages = messages_array(body);
  if (!messages) return std::move(messages).take_error();
  std::vector<ChatMessage> turns;
  for (size_t i = 0; i < (*messages)->size(); ++i) {
    const json& m = (**messages)[i];
    std::string path = "messages." + std::to_string(i);
    auto role = message_role(m, path);
    if (!role) return std::move(role).take_error();
    std::string rl = std::move(*role);
    if (rl != "system" && rl != "developer" && rl != "user" && rl != "assistant" && rl != "tool")
      return errorf("%s.role: \"%s\" is not one of \"system\", \"developer\", \"user\", \"assistant\", \"tool\"",
                    path.c_str(), rl.c_str());
    auto it = m.find("content");
    if (it == m.end() && rl != "assistant") return errorf("%s.content: field required", path.c_str());
    auto text = content_text(it == m.end() ? json() : *it, path + ".content");
    if (!text) return std::move(text).take_error();
    std::string content = std::move(*text);
    if (rl == "system" || rl == "developer") {
      rl = "system";
      if (o.strip_billing_header) content = strip_billing_header(content);
    } else if (rl == "tool") {
      rl = "user";
      content = "[tool_result] " + content;
    } else if (rl == "assistant") {
      if (const json* calls = field(m, "tool_calls")) {
        if (!calls->is_array()) return type_error(path + ".tool_calls", "an array", *calls);
        for (const json& c : *calls) {
          const json* fn = c.is_object() ? field(c, "function") : nullptr;
          if (!fn || !fn->is_object()) continue;
          const json* nm = field(*fn, "name");
          std::string name = nm && nm->is_string() ? nm->get<std::string>() : "";
          const json* args = field(*fn, "arguments");
          std::string a = args ? (args->is_string() ? args->get<std::string>() : dump(ojson(*args))) : "{}";
          if (!content.empty()) content += "\n\n";
          content += "[tool_use " + name + "] " + a;
        }
      }
    }
    turns.push_back({rl, std::move(content), std::nullopt});
  }
  r.messages = std::move(turns);

  // max_completion_tokens replaces max_tokens in the current API; either is accepted.
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    auto mt = opt_int(body, key, key);
    if (!mt) return std::move(mt).take_error();
    if (!*mt) continue;
    if (**mt < 1) return errorf("%s: %lld is out of range, expected >= 1", key, (long long)**mt);
    r.max_tokens = **mt;
  }
  {
    auto n = opt_int(body, "n", "n");
    if (!n) return std::move(n).take_error();
    if (*n && **n != 1) return errorf("n: %lld is not supported, only one choice (n = 1)", (long long)**n);
  }

  SamplingParams& sp = r.sampling;
  PENSIEVE_FIELD(opt_number, body, "temperature", "temperature", sp.temperature);
  PENSIEVE_FIELD(opt_number, body, "top_p", "top_p", sp.top_p);
  PENSIEVE_FIELD(opt_number, body, "presence_penalty", "presence_penalty", sp.presence_penalty);
  PENSIEVE_FIELD(opt_number, body, "frequency_penalty", "frequency_penalty", sp.frequency_penalty);
  {
    auto seed = opt_int(body, "seed", "seed");
    if (!seed) return std::move(seed).take_error();
    if (*seed) sp.seed = uint64_t(**seed), sp.has_seed = true;
  }
  Status st = check_sampling(sp);
  if (!st) return Error{st.error()};

  if (const json* stop = field(body, "stop")) {
    if (stop->is_string()) {
      if (!stop->get_ref<const std::string&>().empty()) r.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (size_t i = 0; i < stop->size(); ++i) {
        const json& s = (*stop)[i];
        if (!s.is_string()) return type_error("stop." + std::to_string(i), "a string", s);
        if (!s.get_ref<const std::string&>().empty()) r.stop.push_back(s.get<std::string>());
      }
    } else {
      return type_error("stop", "a string or an array of strings", *stop);
    }
  }
  PENSIEVE_FIELD(opt_bool, body, "stream", "stream", r.stream);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) return type_error("stream_options", "an object", *so);
    PENSIEVE_FIELD(opt_bool, *so, "include_usage", "stream_options.include_usage", r.include_usage);
  }
  return r;
}

}  // namespace pensieve::server
