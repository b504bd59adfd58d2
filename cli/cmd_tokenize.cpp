// `pensieve tokenize` and `pensieve detokenize`: the tokenizer of a model directory from the
// command line. tokenize prints exactly what Tokenizer::encode(text) gives, as a JSON array.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "models/tokenizer/tokenizer.h"

namespace pensieve::cli {

namespace {

const char kTokenizeUsage[] =
    "usage: pensieve tokenize --model DIR [--text TEXT | --file PATH] [options]\n"
    "\n"
    "Prints the token ids of TEXT (or of the file, or of stdin) as a JSON array.\n"
    "DIR holds tokenizer.json (and tokenizer_config.json).\n"
    "\n"
    "  --model DIR            model directory\n"
    "  --text TEXT            the text to encode\n"
    "  --file PATH            read the text from a file ('-': stdin)\n"
    "  --no-special-tokens    do not add BOS/EOS (encode(text, add_special_tokens=False))\n"
    "  --special-as-text      special tokens written in the text are plain text\n";

const char kDetokenizeUsage[] =
    "usage: pensieve detokenize --model DIR --ids \"1 2 3\" [--skip-special]\n"
    "\n"
    "Prints the text of token ids (spaces, commas or a JSON array). A newline follows only\n"
    "when stdout is a terminal, so the output can be compared byte for byte.\n"
    "\n"
    "  --model DIR       model directory (tokenizer.json)\n"
    "  --ids IDS         the ids: \"1 2 3\", \"1,2,3\" or \"[1, 2, 3]\"\n"
    "  --skip-special    leave out special tokens\n";

// Value of option argv[i] (which needs one); nullptr with a message if missing.
const char* value_of(int argc, char** argv, int& i, const char* cmd) {
  if (i + 1 >= argc) {
    std::fprintf(stderr, "pensieve %s: %s needs a value\n", cmd, argv[i]);
    return nullptr;
  }
  return argv[++i];
}

bool read_all(const std::string& path, std::string& out) {
  if (path == "-") {
    out.assign(std::istreambuf_iterator<char>(std::cin), {});
    return true;
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  std::fclose(f);
  return true;
}

// "1 2 3", "1,2,3", "[1, 2, 3]" -> ids. False (with `bad` set) on anything else.
bool parse_ids(const std::string& s, std::vector<int32_t>& ids, std::string& bad) {
  size_t i = 0;
  auto skip = [&] {
    while (i < s.size() && (std::isspace(static_cast<unsigned char>(s[i])) || s[i] == ',')) ++i;
  };
  skip();
  const bool bracket = i < s.size() && s[i] == '[';
  if (bracket) ++i;
  for (;;) {
    skip();
    if (i >= s.size()) break;
    if (bracket && s[i] == ']') {
      ++i;
      skip();
      if (i < s.size()) {
        bad = s.substr(i);
        return false;
      }
      return true;
    }
    const char* start = s.c_str() + i;
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(start, &end, 10);
    if (end == start || errno == ERANGE || v < INT32_MIN || v > INT32_MAX ||
        (*end && !std::isspace(static_cast<unsigned char>(*end)) && *end != ',' && *end != ']')) {
      size_t e = i;
      while (e < s.size() && !std::isspace(static_cast<unsigned char>(s[e])) && s[e] != ',') ++e;
      bad = s.substr(i, e - i);
      return false;
    }
    ids.push_back(static_cast<int32_t>(v));
    i = static_cast<size_t>(end - s.c_str());
  }
  if (bracket) {
    bad = "missing ']'";
    return false;
  }
  return true;
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  std::string model, text, file;
  bool have_text = false;
  EncodeOptions opts;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = nullptr;
    if (a == "--help" || a == "-h") {
      std::fputs(kTokenizeUsage, stdout);
      return 0;
    } else if (a == "--model") {
      if (!(v = value_of(argc, argv, i, "tokenize"))) return 2;
      model = v;
    } else if (a == "--text") {
      if (!(v = value_of(argc, argv, i, "tokenize"))) return 2;
      text = v;
      have_text = true;
    } else if (a == "--file") {
      if (!(v = value_of(argc, argv, i, "tokenize"))) return 2;
      file = v;
    } else if (a == "--no-special-tokens") {
      opts.add_special_tokens = false;
    } else if (a == "--special-as-text") {
      opts.special_as_text = true;
    } else {
      std::fprintf(stderr, "pensieve tokenize: unknown option \"%s\"\n\n%s", a.c_str(),
                   kTokenizeUsage);
      return 2;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "pensieve tokenize: --model DIR is required\n\n%s", kTokenizeUsage);
    return 2;
  }
  if (have_text && !file.empty()) {
    std::fprintf(stderr, "pensieve tokenize: give --text or --file, not both\n");
    return 2;
  }
  if (!have_text) {
    const std::string path = file.empty() ? std::string(1, '-') : file;
    if (!read_all(path, text)) {
      std::fprintf(stderr, "pensieve tokenize: cannot read %s: %s\n", path.c_str(),
                   std::strerror(errno));
      return 1;
    }
  }
  auto tok = Tokenizer::load(model);
  if (!tok.ok()) {
    std::fprintf(stderr, "pensieve tokenize: %s\n", tok.error().c_str());
    return 1;
  }
  auto ids = tok->encode(text, opts);
  if (!ids.ok()) {
    std::fprintf(stderr, "pensieve tokenize: %s\n", ids.error().c_str());
    return 1;
  }
  std::string out = "[";
  for (size_t k = 0; k < ids->size(); ++k) {
    if (k) out += ", ";
    out += std::to_string((*ids)[k]);
  }
  out += "]\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

int cmd_detokenize(int argc, char** argv) {
  std::string model, ids_arg;
  bool have_ids = false, skip_special = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = nullptr;
    if (a == "--help" || a == "-h") {
      std::fputs(kDetokenizeUsage, stdout);
      return 0;
    } else if (a == "--model") {
      if (!(v = value_of(argc, argv, i, "detokenize"))) return 2;
      model = v;
    } else if (a == "--ids") {
      if (!(v = value_of(argc, argv, i, "detokenize"))) return 2;
      ids_arg = v;
      have_ids = true;
    } else if (a == "--skip-special") {
      skip_special = true;
    } else {
      std::fprintf(stderr, "pensieve detokenize: unknown option \"%s\"\n\n%s", a.c_str(),
                   kDetokenizeUsage);
      return 2;
    }
  }
  if (model.empty() || !have_ids) {
    std::fprintf(stderr, "pensieve detokenize: --model DIR and --ids IDS are required\n\n%s",
                 kDetokenizeUsage);
    return 2;
  }
  std::vector<int32_t> ids;
  std::string bad;
  if (!parse_ids(ids_arg, ids, bad)) {
    std::fprintf(stderr,
                 "pensieve detokenize: --ids: \"%s\" is not a token id (expected integers like \"1 "
                 "2 3\" or \"[1, 2, 3]\")\n",
                 bad.c_str());
    return 2;
  }
  auto tok = Tokenizer::load(model);
  if (!tok.ok()) {
    std::fprintf(stderr, "pensieve detokenize: %s\n", tok.error().c_str());
    return 1;
  }
  const std::string text = tok->decode(ids, skip_special);
  std::fwrite(text.data(), 1, text.size(), stdout);
  if (isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
  return 0;
}

}  // namespace pensieve::cli
