// Response bodies and server-sent events, in the shapes the official SDKs parse.
//
// Anthropic stream (each event "event: NAME\ndata: JSON\n\n"):
//   message_start, content_block_start (index 0, empty text), ping,
//   content_block_delta (text_delta) ..., content_block_stop, message_delta (stop_reason,
//   stop_sequence, usage), message_stop.       On failure mid-stream: an "error" event, then end.
// OpenAI stream (each chunk "data: JSON\n\n"):
//   a first chunk with delta {role, content ""}, content chunks, a chunk with finish_reason,
//   (stream_options.include_usage: a chunk with "choices": [] and usage; "usage": null in the
//   others), then "data: [DONE]".                On failure mid-stream: data: {"error": ...}, then end.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "server/api.h"
#include "server/generation.h"

namespace pensieve::server {

// What a response says about one generation.
struct Completion {
  std::string id;     // msg_... / chatcmpl-...
  std::string model;  // our model id
  int64_t created = 0;  // unix seconds (OpenAI)
  std::string text;
  StopReason stop_reason = StopReason::end_turn;
  std::string stop_sequence;  // the matched one, if stop_reason == stop_sequence
  int64_t prompt_tokens = 0, cached_tokens = 0, output_tokens = 0;
};

// Anthropic usage: input_tokens counts the prompt tokens that were not read from the cache, as
// the Anthropic API does (input_tokens + cache_read_input_tokens = the whole prompt).
ojson anthropic_usage(const Completion& c);
ojson anthropic_message(const Completion& c);
const char* anthropic_stop_reason(StopReason r);

std::string sse_event(std::string_view name, const ojson& data);
// message_start + content_block_start + ping (known at admission: prompt and cached tokens).
std::string anthropic_stream_start(const Completion& c);
std::string anthropic_stream_delta(std::string_view text);
// content_block_stop + message_delta + message_stop.
std::string anthropic_stream_end(const Completion& c);
std::string anthropic_stream_error(const ApiError& e);

ojson openai_usage(const Completion& c);
ojson openai_completion(const Completion& c);
const char* openai_finish_reason(StopReason r);
// One chat.completion.chunk. `delta` is the delta object; `finish` null for none.
std::string openai_chunk(const Completion& c, const ojson& delta, const char* finish, bool include_usage);
std::string openai_stream_usage(const Completion& c);
std::string openai_stream_error(const ApiError& e);
inline constexpr std::string_view kOpenAiDone = "data: [DONE]\n\n";

}  // namespace pensieve::server
