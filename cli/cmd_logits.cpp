// pensieve logits --model DIR --ids "1 2 3" --out FILE.npy: the logits of every position, as a
// float32 .npy [positions, vocab], to compare against any reference implementation.
#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/model_args.h"

namespace pensieve::cli {

static const char kUsage[] =
    "usage: pensieve logits --model DIR --ids \"1 2 3\" --out FILE.npy [model options]\n"
    "\n"
    "Runs the ids as one sequence from position 0 and writes the logits of every position as a\n"
    "float32 NumPy array [positions, vocab]. Precision defaults to exact here.\n"
    "\nmodel options:\n";

namespace {

bool parse_id_list(const std::string& s, std::vector<int32_t>* out) {
  size_t i = 0;
  while (i < s.size()) {
    if (std::isspace(static_cast<unsigned char>(s[i])) || s[i] == ',' || s[i] == '[' || s[i] == ']') {
      ++i;
      continue;
    }
    size_t j = i;
    if (s[j] == '-') ++j;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
    if (j == i || (j == i + 1 && s[i] == '-') || j - i > 10) return false;
    out->push_back(int32_t(std::stoll(s.substr(i, j - i))));
    i = j;
  }
  return !out->empty();
}

Status write_npy(const std::string& path, const float* data, int64_t rows, int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                       std::to_string(cols) + "), }";
  // Magic (6) + version (2) + length (2) + header, padded with spaces and a newline to 64 bytes.
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return errorf("cannot create %s", path.c_str());
  const char magic[] = "\x93NUMPY\x01\x00";
  uint16_t len = uint16_t(header.size());
  uint8_t len_le[2] = {uint8_t(len & 0xff), uint8_t(len >> 8)};
  bool ok = std::fwrite(magic, 1, 8, f) == 8 && std::fwrite(len_le, 1, 2, f) == 2 &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            std::fwrite(data, sizeof(float), size_t(rows * cols), f) == size_t(rows * cols);
  ok = std::fclose(f) == 0 && ok;
  if (!ok) return errorf("writing %s failed", path.c_str());
  return Status::Ok();
}

}  // namespace

int cmd_logits(int argc, char** argv) {
  ModelArgs margs;
  std::string ids_text, out;
  std::string usage = std::string(kUsage) + kModelOptionsHelp;
  Args a("logits", usage.c_str());
  margs.add_to(a);
  a.option("--ids", &ids_text);
  a.option("--out", &out, "-o");
  if (int rc; !a.parse(argc, argv, &rc)) return rc;
  std::vector<int32_t> ids;
  if (out.empty() || !parse_id_list(ids_text, &ids)) {
    std::fprintf(stderr, "pensieve logits: needs --ids (numbers separated by spaces or commas) and --out FILE.npy\n");
    return 2;
  }
  auto model = margs.load(/*default_exact=*/true);
  if (!model) {
    std::fprintf(stderr, "pensieve logits: %s\n", model.error().c_str());
    return 1;
  }
  Model& m = **model;
  const int64_t n = int64_t(ids.size()), V = m.config().vocab;
  SeqKv seq;
  seq.start(m.cache(), ids, m.config().long_rope(n), false);
  if (!seq.reserve(m.cache(), n)) {
    std::fprintf(stderr, "pensieve logits: %lld ids do not fit the KV cache (raise --ctx)\n", (long long)n);
    return 1;
  }
  SeqChunk ch;
  ch.tokens = ids.data();
  ch.n = n;
  ch.block_table = seq.blocks().data();
  ch.long_rope = seq.long_rope();
  ch.logits = SeqChunk::Logits::all;
  std::vector<float> logits(size_t(n * V));
  if (Status st = m.forward().run({ch}, logits.data()); !st.ok()) {
    std::fprintf(stderr, "pensieve logits: %s\n", st.error().c_str());
    return 1;
  }
  seq.release(m.cache());
  if (Status st = write_npy(out, logits.data(), n, V); !st.ok()) {
    std::fprintf(stderr, "pensieve logits: %s\n", st.error().c_str());
    return 1;
  }
  return 0;
}

}  // namespace pensieve::cli
