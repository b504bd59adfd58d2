// The `pensieve` subcommands. Each lives in its own cli/cmd_<name>.cpp and is listed once in
// cli/main.cpp. A command returns the process exit code; it prints errors to stderr itself.
#pragma once

namespace pensieve::cli {

struct Command {
  const char* name;
  const char* summary;  // one line for `pensieve help`
  int (*run)(int argc, char** argv);  // argv[0] is the command name
};

}  // namespace pensieve::cli
