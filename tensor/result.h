// Result<T> and Status: how every function that can fail on input reports it.
//
// Library code never aborts or exits on bad input: it returns an Error whose message names the
// operation and gives actual versus expected values, e.g.
//   load_phi: tensor "model.layers.3.mlp.down_proj.weight" has shape [3072, 8192], expected [8192, 3072]
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace pensieve {

struct Error {
  std::string message;
};

// printf-style constructor for errors.
Error errorf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const std::string& error() const { assert(!ok()); return std::get<1>(v_).message; }
  Error take_error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error.message)), failed_(true) {}
  static Status Ok() { return Status(); }

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const std::string& error() const { return error_; }
  Error take_error() && { return Error{std::move(error_)}; }

 private:
  std::string error_;
  bool failed_ = false;
};

}  // namespace pensieve

// Propagate a failed Status/Result out of the enclosing function (which returns Status or Result).
#define PENSIEVE_TRY(expr)                                              \
  do {                                                                  \
    auto _pensieve_st = (expr);                                         \
    if (!_pensieve_st.ok()) return std::move(_pensieve_st).take_error(); \
  } while (0)

// Prefix an error message with context and propagate it.
#define PENSIEVE_TRY_CTX(expr, ...)                                          \
  do {                                                                       \
    auto _pensieve_st = (expr);                                              \
    if (!_pensieve_st.ok())                                                  \
      return ::pensieve::errorf("%s: %s", ::pensieve::format_str(__VA_ARGS__).c_str(), \
                                _pensieve_st.error().c_str());               \
  } while (0)

namespace pensieve {
std::string format_str(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
}
