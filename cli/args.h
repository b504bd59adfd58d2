// A small declarative command-line parser for the pensieve commands:
//   Args a("run", kUsage);  a.option("--model", &dir);  a.flag("--chat", &chat);
//   if (int rc; !a.parse(argc, argv, &rc)) return rc;
// "--help"/"-h" print the usage (exit 0); unknown options, missing or malformed values print one
// line naming the option and exit 2. Options may repeat where the target is a vector.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace pensieve::cli {

class Args {
 public:
  Args(const char* command, const char* usage) : command_(command), usage_(usage) {}

  void flag(const char* name, bool* out, const char* alias = nullptr);
  void option(const char* name, std::string* out, const char* alias = nullptr);
  void option(const char* name, std::vector<std::string>* out, const char* alias = nullptr);
  void option(const char* name, int64_t* out, const char* alias = nullptr);
  void option(const char* name, int* out, const char* alias = nullptr);
  void option(const char* name, float* out, const char* alias = nullptr);
  // Records whether an option was given (after parse).
  bool given(const char* name) const;

  // False when the command should exit now with *exit_code.
  bool parse(int argc, char** argv, int* exit_code);
  const char* command() const { return command_; }

 private:
  struct Spec {
    std::string name, alias;
    bool takes_value;
    std::function<bool(const char*)> set;  // false: malformed value
    bool seen = false;
  };
  void add(const char* name, const char* alias, bool takes_value, std::function<bool(const char*)> set);

  const char* command_;
  const char* usage_;
  std::vector<Spec> specs_;
};

}  // namespace pensieve::cli
