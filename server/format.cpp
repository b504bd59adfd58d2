#include "server/format.h"

namespace pensieve::server {

const char* anthropic_stop_reason(StopReason r) {
  switch (r) {
    case StopReason::end_turn: return "end_turn";
    case StopReason::max_tokens: return "max_tokens";
    case StopReason::stop_sequence: return "stop_sequence";
  }
  return "end_turn";
}

ojson anthropic_usage(const Completion& c) {
  ojson u;
  u["input_tokens"] = c.prompt_tokens - c.cached_tokens;
  u["cache_creation_input_tokens"] = 0;
  u["cache_read_input_tokens"] = c.cached_tokens;
  u["output_tokens"] = c.output_tokens;
  return u;
}

static ojson stop_sequence_json(const Completion& c) {
  return c.stop_reason == StopReason::stop_sequence ? ojson(c.stop_sequence) : ojson(nullptr);
}

ojson anthropic_message(const Completion& c) {
  ojson m;
  m["id"] = c.id;
  m["type"] = "message";
  m["role"] = "assistant";
  m["model"] = c.model;
  m["content"] = ojson::array();
  if (!c.text.empty()) m["content"].push_back({{"type", "text"}, {"text", c.text}});
  m["stop_reason"] = anthropic_stop_reason(c.stop_reason);
  m["stop_sequence"] = stop_sequence_json(c);
  m["usage"] = anthropic_usage(c);
  return m;
}

std::string sse_event(std::string_view name, const ojson& data) {
  std::string s = "event: ";
  s += name;
  s += "\ndata: ";
  s += dump(data);
  s += "\n\n";
  return s;
}

std::string anthropic_stream_start(const Completion& c) {
  ojson m;
  m["id"] = c.id;
  m["type"] = "message";
  m["role"] = "assistant";
  m["model"] = c.model;
  m["content"] = ojson::array();
  m["stop_reason"] = nullptr;
  m["stop_sequence"] = nullptr;
  Completion start = c;
  start.output_tokens = 0;
  m["usage"] = anthropic_usage(start);
  std::string s = sse_event("message_start", ojson{{"type", "message_start"}, {"message", m}});
  s += sse_event("content_block_start", ojson{{"type", "content_block_start"},
                                              {"index", 0},
                                              {"content_block", {{"type", "text"}, {"text", ""}}}});
  s += sse_event("ping", ojson{{"type", "ping"}});
  return s;
}

std::string anthropic_stream_delta(std::string_view text) {
  return sse_event("content_block_delta",
                   ojson{{"type", "content_block_delta"},
                         {"index", 0},
                         {"delta", {{"type", "text_delta"}, {"text", std::string(text)}}}});
}

std::string anthropic_stream_end(const Completion& c) {
  std::string s = sse_event("content_block_stop", ojson{{"type", "content_block_stop"}, {"index", 0}});
  ojson delta;
  delta["stop_reason"] = anthropic_stop_reason(c.stop_reason);
  delta["stop_sequence"] = stop_sequence_json(c);
  s += sse_event("message_delta", ojson{{"type", "message_delta"}, {"delta", delta}, {"usage", anthropic_usage(c)}});
  s += sse_event("message_stop", ojson{{"type", "message_stop"}});
  return s;
}

std::string anthropic_stream_error(const ApiError& e) { return sse_event("error", anthropic_error_json(e)); }

const char* openai_finish_reason(StopReason r) { return r == StopReason::max_tokens ? "length" : "stop"; }

ojson openai_usage(const Completion& c) {
  ojson u;
  u["prompt_tokens"] = c.prompt_tokens;
  u["completion_tokens"] = c.output_tokens;
  u["total_tokens"] = c.prompt_tokens + c.output_tokens;
  u["prompt_tokens_details"] = {{"cached_tokens", c.cached_tokens}};
  return u;
}

ojson openai_completion(const Completion& c) {
  ojson j;
  j["id"] = c.id;
  j["object"] = "chat.completion";
  j["created"] = c.created;
  j["model"] = c.model;
  ojson msg;
  msg["role"] = "assistant";
  msg["content"] = c.text;
  msg["refusal"] = nullptr;
  ojson choice;
  choice["index"] = 0;
  choice["message"] = std::move(msg);
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = openai_finish_reason(c.stop_reason);
  j["choices"] = ojson::array({std::move(choice)});
  j["usage"] = openai_usage(c);
  j["system_fingerprint"] = nullptr;
  return j;
}

static ojson chunk_head(const Completion& c) {
  ojson j;
  j["id"] = c.id;
  j["object"] = "chat.completion.chunk";
  j["created"] = c.created;
  j["model"] = c.model;
  j["system_fingerprint"] = nullptr;
  return j;
}

std::string openai_chunk(const Completion& c, const ojson& delta, const char* finish, bool include_usage) {
  ojson j = chunk_head(c);
  ojson choice;
  choice["index"] = 0;
  choice["delta"] = delta;
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish ? ojson(finish) : ojson(nullptr);
  j["choices"] = ojson::array({std::move(choice)});
  if (include_usage) j["usage"] = nullptr;
  return "data: " + dump(j) + "\n\n";
}

std::string openai_stream_usage(const Completion& c) {
  ojson j = chunk_head(c);
  j["choices"] = ojson::array();
  j["usage"] = openai_usage(c);
  return "data: " + dump(j) + "\n\n";
}

std::string openai_stream_error(const ApiError& e) { return "data: " + dump(openai_error_json(e)) + "\n\n"; }

}  // namespace pensieve::server
