// Errors, JSON input, billing-header stripping and prompt rendering shared by both APIs.
#include <random>

#include "server/api.h"

namespace pensieve::server {

int anthropic_status(ErrorKind k) {
  switch (k) {
    case ErrorKind::invalid_request: return 400;
    case ErrorKind::authentication: return 401;
    case ErrorKind::not_found: return 404;
    case ErrorKind::too_large: return 413;
    case ErrorKind::overloaded: return 529;
    case ErrorKind::unavailable: return 503;
    case ErrorKind::internal: return 500;
  }
  return 500;
}

const char* anthropic_error_type(ErrorKind k) {
  switch (k) {
    case ErrorKind::invalid_request: return "invalid_request_error";
    case ErrorKind::authentication: return "authentication_error";
    case ErrorKind::not_found: return "not_found_error";
    case ErrorKind::too_large: return "request_too_large";
    case ErrorKind::overloaded: return "overloaded_error";
    case ErrorKind::unavailable: return "api_error";
    case ErrorKind::internal: return "api_error";
  }
  return "api_error";
}

ojson anthropic_error_json(const ApiError& e) {
  ojson j;
  j["type"] = "error";
  j["error"] = {{"type", anthropic_error_type(e.kind)}, {"message", e.message}};
  return j;
}

int openai_status(ErrorKind k) {
  switch (k) {
    case ErrorKind::overloaded: return 429;
    default: return anthropic_status(k);
  }
}

ojson openai_error_json(const ApiError& e) {
  const char* type = "invalid_request_error";
  const char* code = nullptr;
  switch (e.kind) {
    case ErrorKind::invalid_request: break;
    case ErrorKind::authentication: code = "invalid_api_key"; break;
    case ErrorKind::not_found: code = "not_found"; break;
    case ErrorKind::too_large: code = "request_too_large"; break;
    case ErrorKind::overloaded: type = "rate_limit_error"; code = "rate_limit_exceeded"; break;
    case ErrorKind::unavailable: type = "server_error"; code = "service_unavailable"; break;
    case ErrorKind::internal: type = "server_error"; break;
  }
  ojson err;
  err["message"] = e.message;
  err["type"] = type;
  err["param"] = nullptr;
  err["code"] = code ? ojson(code) : ojson(nullptr);
  ojson j;
  j["error"] = std::move(err);
  return j;
}

// Deepest nesting of arrays/objects we parse. Real requests nest < 20 deep (tool schemas); the
// limit keeps hostile input from costing deep recursion anywhere downstream.
constexpr int kMaxJsonDepth = 128;

Result<json> parse_json_body(std::string_view body) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > kMaxJsonDepth)
        return errorf("the request body nests arrays/objects deeper than %d levels", kMaxJsonDepth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    // Parse again with exceptions for the position and reason (the message names the byte).
    try {
      json unused = json::parse(body);
      (void)unused;
    } catch (const json::exception& e) {  // parse_error, or out_of_range (number overflow)
      std::string what = e.what();
      // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> after "] "
      auto p = what.find("] ");
      return errorf("the request body is not valid JSON: %s",
                    (p == std::string::npos ? what : what.substr(p + 2)).c_str());
    }
    return errorf("the request body is not valid JSON");
  }
  if (!j.is_object()) return errorf("the request body must be a JSON object, got %s", j.type_name());
  return j;
}

std::string strip_billing_header(std::string_view text) {
  static constexpr std::string_view kPrefix = "x-anthropic-billing-header:";
  if (text.find(kPrefix) == std::string_view::npos) return std::string(text);
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    size_t next = end == std::string_view::npos ? text.size() : end + 1;
    std::string_view line = text.substr(pos, next - pos);
    size_t first = line.find_first_not_of(" \t");
    bool drop = first != std::string_view::npos && line.substr(first).starts_with(kPrefix);
    if (!drop) out.append(line);
    pos = next;
  }
  return out;
}

Result<std::string> render_prompt(const ChatRequest& r, const ChatTemplate& tmpl) {
  auto text = tmpl.render(r.messages, /*add_generation_prompt=*/true);
  if (!text) return errorf("rendering the prompt: %s", text.error().c_str());
  if (r.assistant_prefix) *text += *r.assistant_prefix;
  return text;
}

std::string random_id(std::string_view prefix) {
  static constexpr char kChars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id(prefix);
  for (int i = 0; i < 24; ++i) id += kChars[rng() % 62];
  return id;
}

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

}  // namespace pensieve::server
