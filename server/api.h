// What the two HTTP APIs have in common once parsed: a chat request in our own terms, and errors
// that each API writes in its own JSON shape and status.
//
//   body --parse_anthropic_messages / parse_openai_chat--> ChatRequest --render_prompt--> token ids
//
// Parsing is lenient where real clients need it (unknown fields, any model name, role "system"
// inside messages, tool definitions and tool blocks) and strict about what we would otherwise
// have to guess (missing or wrongly typed fields, values out of range): those are 400s.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/sampler.h"
#include "models/tokenizer/chat_template.h"
#include "tensor/result.h"

namespace pensieve::server {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;  // responses: fields in the order the APIs document

// What went wrong, in our terms; each API maps it to its own status and error type.
enum class ErrorKind {
  invalid_request,  // 400: malformed JSON, missing/mistyped field, value out of range, prompt too long
  authentication,   // 401: missing or wrong API key
  not_found,        // 404: unknown path
  too_large,        // 413: body over --max-body
  overloaded,       // OpenAI 429 / Anthropic 529: the engine queue is full
  unavailable,      // 503: model still loading, or the server is shutting down
  internal,         // 500: the engine failed
};

struct ApiError {
  ErrorKind kind = ErrorKind::invalid_request;
  std::string message;
};

// Anthropic: {"type":"error","error":{"type":"invalid_request_error","message":...}}
int anthropic_status(ErrorKind k);
const char* anthropic_error_type(ErrorKind k);
ojson anthropic_error_json(const ApiError& e);
// OpenAI: {"error":{"message":...,"type":"invalid_request_error","param":null,"code":null}}
int openai_status(ErrorKind k);
ojson openai_error_json(const ApiError& e);

struct ParseOptions {
  // Drop Claude Code's per-request "x-anthropic-billing-header: ...; cch=<hash>;" line from
  // system text, so the prompt (and its prefix-cache blocks) is the same from turn to turn.
  bool strip_billing_header = true;
};

// A parsed chat request, API-neutral.
struct ChatRequest {
  std::string model;                  // as the client sent it (we answer with our own id)
  std::vector<ChatMessage> messages;  // system first if any; roles system/user/assistant
  // A final assistant message is continued rather than answered (Anthropic "prefill"): the
  // prompt is the conversation before it, the generation prompt, then this text.
  std::optional<std::string> assistant_prefix;
  int64_t max_tokens = 0;             // 0: not given (OpenAI): as many as the context allows
  SamplingParams sampling;
  std::vector<std::string> stop;      // stop strings (never empty strings)
  bool stream = false;
  bool include_usage = false;         // OpenAI stream_options.include_usage
};

// Parse JSON text (with a nesting limit: deep input is an error, never deep recursion).
Result<json> parse_json_body(std::string_view body);

// POST /v1/messages. `for_count_tokens`: /v1/messages/count_tokens (max_tokens not required).
Result<ChatRequest> parse_anthropic_messages(const json& body, const ParseOptions& o,
                                             bool for_count_tokens = false);
// POST /v1/chat/completions.
Result<ChatRequest> parse_openai_chat(const json& body, const ParseOptions& o);

// Removes every line that starts with "x-anthropic-billing-header:" (Claude Code's per-request
// hash) from system text. Returns the text unchanged if it has none.
std::string strip_billing_header(std::string_view text);

// The conversation rendered by the chat template (plus the assistant prefix), as the text the
// tokenizer encodes with add_special_tokens = tmpl.add_special_tokens().
Result<std::string> render_prompt(const ChatRequest& r, const ChatTemplate& tmpl);

// Random ids: "msg_" / "chatcmpl-" followed by 24 base62 characters.
std::string random_id(std::string_view prefix);

// JSON text of a value; invalid UTF-8 (never expected: our text comes from the decoder) is
// replaced rather than thrown on.
std::string dump(const ojson& j);

}  // namespace pensieve::server
