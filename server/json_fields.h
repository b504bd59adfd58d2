// Typed reads of optional request fields. JSON null counts as absent (OpenAI clients send nulls
// for unset fields). Errors name the field path: "messages.1.content: expected a string or an
// array, got number".
#pragma once

#include <cmath>
#include <optional>
#include <string>

#include "server/api.h"

namespace pensieve::server {

inline Error type_error(const std::string& path, const char* expected, const json& v) {
  return errorf("%s: expected %s, got %s", path.c_str(), expected, v.type_name());
}

inline const json* field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

inline Result<std::optional<std::string>> opt_string(const json& obj, const char* key,
                                                     const std::string& path) {
  const json* v = field(obj, key);
  if (!v) return std::optional<std::string>();
  if (!v->is_string()) return type_error(path, "a string", *v);
  return std::optional<std::string>(v->get<std::string>());
}

// Integers; a float with an integral value (100.0) is accepted as JSON does not distinguish them.
inline Result<std::optional<int64_t>> opt_int(const json& obj, const char* key, const std::string& path) {
  const json* v = field(obj, key);
  if (!v) return std::optional<int64_t>();
  if (v->is_number_integer()) return std::optional<int64_t>(v->get<int64_t>());
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > uint64_t(INT64_MAX)) return errorf("%s: %llu is too large", path.c_str(), (unsigned long long)u);
    return std::optional<int64_t>(int64_t(u));
  }
  if (v->is_number_float()) {
    double d = v->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return std::optional<int64_t>(int64_t(d));
    return errorf("%s: expected an integer, got %g", path.c_str(), d);
  }
  return type_error(path, "an integer", *v);
}

inline Result<std::optional<double>> opt_number(const json& obj, const char* key, const std::string& path) {
  const json* v = field(obj, key);
  if (!v) return std::optional<double>();
  if (!v->is_number()) return type_error(path, "a number", *v);
  return std::optional<double>(v->get<double>());
}

inline Result<std::optional<bool>> opt_bool(const json& obj, const char* key, const std::string& path) {
  const json* v = field(obj, key);
  if (!v) return std::optional<bool>();
  if (!v->is_boolean()) return type_error(path, "a boolean", *v);
  return std::optional<bool>(v->get<bool>());
}

// body.messages, which both APIs require to be a non-empty array.
inline Result<const json*> messages_array(const json& body) {
  const json* messages = field(body, "messages");
  if (!messages) return errorf("messages: field required");
  if (!messages->is_array()) return type_error("messages", "an array", *messages);
  if (messages->empty()) return errorf("messages: at least one message is required");
  return messages;
}

// The role of message `path` (messages.i): the message must be an object with a string role; the
// caller checks which roles its API accepts.
inline Result<std::string> message_role(const json& m, const std::string& path) {
  if (!m.is_object()) return type_error(path, "a message object", m);
  auto role = opt_string(m, "role", path + ".role");
  if (!role) return std::move(role).take_error();
  if (!*role) return errorf("%s.role: field required", path.c_str());
  return **role;
}

// Assigns an optional field to `out` when present; returns the error otherwise.
#define PENSIEVE_FIELD(reader, obj, key, path, out)        \
  do {                                                     \
    auto r_ = reader(obj, key, path);                      \
    if (!r_) return std::move(r_).take_error();            \
    if (*r_) out = static_cast<decltype(out)>(**r_);       \
  } while (0)

// Sampling fields both APIs share, checked against the ranges the engine accepts.
inline Status check_sampling(const SamplingParams& s) {
  if (!(s.temperature >= 0 && s.temperature <= 2))
    return errorf("temperature: %g is out of range, expected 0 to 2", s.temperature);
  if (!(s.top_p > 0 && s.top_p <= 1)) return errorf("top_p: %g is out of range, expected (0, 1]", s.top_p);
  if (s.top_k < 0) return errorf("top_k: %d is out of range, expected >= 0", s.top_k);
  if (!(s.presence_penalty >= -2 && s.presence_penalty <= 2))
    return errorf("presence_penalty: %g is out of range, expected -2 to 2", s.presence_penalty);
  if (!(s.frequency_penalty >= -2 && s.frequency_penalty <= 2))
    return errorf("frequency_penalty: %g is out of range, expected -2 to 2", s.frequency_penalty);
  return validate(s);
}

}  // namespace pensieve::server
