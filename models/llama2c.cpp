// llama2.c checkpoint layout: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size, seq_len; a negative vocab_size means a separate classifier), then f32:
//   token_embedding [vocab, dim]; rms_att [L, dim]; wq [L, dim, dim]; wk [L, kv_dim, dim];
//   wv [L, kv_dim, dim]; wo [L, dim, dim]; rms_ffn [L, dim]; w1 [L, hidden, dim];
//   w2 [L, dim, hidden]; w3 [L, hidden, dim]; rms_final [dim];
//   freq_cis (legacy) [seq_len, head_dim/2] × 2; wcls [vocab, dim] when not shared.
// llama2.c applies RoPE to interleaved pairs (x[2i], x[2i+1]); pensieve's kernel is rotate-half
// (x[i], x[i + head_dim/2]), so the rows of wq and wk are permuted per head the way Hugging Face's
// Llama conversion does: new row i = old row 2i, new row head_dim/2 + i = old row 2i + 1.
#include "models/llama2c.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "models/tokenizer/llama2c.h"
#include "tensor/mapped_file.h"
#include "tensor/safetensors.h"

namespace pensieve {

namespace {

struct Header {
  int32_t dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len;
};

Status write_text(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return errorf("import_llama2c: cannot create %s", path.c_str());
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok) return errorf("import_llama2c: writing %s failed", path.c_str());
  return Status::Ok();
}

// Rows of a [n_heads * head_dim, cols] matrix reordered from interleaved to rotate-half pairs.
std::vector<float> permute_rope_rows(const float* w, int n_heads, int head_dim, int64_t cols) {
  std::vector<float> out(size_t(int64_t(n_heads) * head_dim * cols));
  for (int h = 0; h < n_heads; ++h)
    for (int i = 0; i < head_dim / 2; ++i)
      for (int a = 0; a < 2; ++a) {
        const float* src = w + (int64_t(h) * head_dim + 2 * i + a) * cols;
        float* dst = out.data() + (int64_t(h) * head_dim + a * (head_dim / 2) + i) * cols;
        std::memcpy(dst, src, size_t(cols) * 4);
      }
  return out;
}

}  // namespace

Status import_llama2c(const std::string& checkpoint, const std::string& tokenizer, const std::string& out) {
  auto file = MappedFile::open(checkpoint);
  if (!file) return errorf("import_llama2c: %s", file.error().c_str());
  if (file->size() < sizeof(Header))
    return errorf("import_llama2c: %s is %zu bytes, too short for the 28-byte header", checkpoint.c_str(), file->size());
  Header h;
  std::memcpy(&h, file->data(), sizeof(h));
  const bool shared = h.vocab > 0;
  const int64_t vocab = shared ? h.vocab : -int64_t(h.vocab);
  if (h.dim <= 0 || h.hidden <= 0 || h.n_layers <= 0 || h.n_heads <= 0 || h.n_kv_heads <= 0 || vocab <= 0 ||
      h.seq_len <= 0 || h.dim % h.n_heads || h.n_heads % h.n_kv_heads || (h.dim / h.n_heads) % 2 ||
      h.dim > (1 << 16) || h.hidden > (1 << 18) || h.n_layers > 1024 || vocab > (1 << 22) || h.seq_len > (1 << 24))
    return errorf("import_llama2c: %s has an invalid header (dim %d, hidden %d, layers %d, heads %d, kv heads %d, "
                  "vocab %d, seq_len %d)", checkpoint.c_str(), h.dim, h.hidden, h.n_layers, h.n_heads, h.n_kv_heads,
                  h.vocab, h.seq_len);
  const int64_t dim = h.dim, hidden = h.hidden, L = h.n_layers, head_dim = dim / h.n_heads;
  const int64_t kv_dim = dim * h.n_kv_heads / h.n_heads;

  // Offsets (in floats) of each array, in file order.
  struct Array { const char* name; int64_t count; int64_t offset = 0; };
  std::vector<Array> arrays = {
      {"token_embedding", vocab * dim}, {"rms_att", L * dim},          {"wq", L * dim * dim},
      {"wk", L * kv_dim * dim},         {"wv", L * kv_dim * dim},      {"wo", L * dim * dim},
      {"rms_ffn", L * dim},             {"w1", L * hidden * dim},      {"w2", L * dim * hidden},
      {"w3", L * hidden * dim},         {"rms_final", dim},            {"freq_cis", int64_t(h.seq_len) * head_dim},
      {"wcls", shared ? 0 : vocab * dim}};
  int64_t floats = 0;
  for (Array& a : arrays) {
    a.offset = floats;
    floats += a.count;
  }
  const int64_t want = int64_t(sizeof(Header)) + floats * 4;
  if (int64_t(file->size()) != want)
    return errorf("import_llama2c: %s is %zu bytes, but its header (dim %d, hidden %d, %d layers, vocab %lld) "
                  "implies %lld%s", checkpoint.c_str(), file->size(), h.dim, h.hidden, h.n_layers, (long long)vocab,
                  (long long)want, int64_t(file->size()) < want ? " (truncated?)" : "");
  const float* base = reinterpret_cast<const float*>(file->data() + sizeof(Header));
  auto arr = [&](const char* name) {
    for (const Array& a : arrays)
      if (!std::strcmp(a.name, name)) return base + a.offset;
    return base;
  };

  auto tok_json = tokenizer_json_from_llama2c(tokenizer, int32_t(vocab));
  if (!tok_json) return errorf("import_llama2c: %s", tok_json.error().c_str());

  struct stat st;
  if (stat(out.c_str(), &st) == 0) return errorf("import_llama2c: %s already exists", out.c_str());
  if (mkdir(out.c_str(), 0755) != 0) return errorf("import_llama2c: cannot create directory %s", out.c_str());

  // Tensors: (name, shape, data). Permuted q/k rows are kept alive in `owned`.
  std::vector<std::vector<float>> owned;
  std::vector<SafetensorsWriteEntry> tensors;
  auto add = [&](std::string name, std::vector<int64_t> shape, const float* data) {
    uint64_t n = 1;
    for (int64_t d : shape) n *= uint64_t(d);
    tensors.push_back({std::move(name), "F32", std::move(shape), data, n * 4});
  };
  add("model.embed_tokens.weight", {vocab, dim}, arr("token_embedding"));
  for (int64_t l = 0; l < L; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {dim}, arr("rms_att") + l * dim);
    owned.push_back(permute_rope_rows(arr("wq") + l * dim * dim, h.n_heads, int(head_dim), dim));
    add(p + "self_attn.q_proj.weight", {dim, dim}, owned.back().data());
    owned.push_back(permute_rope_rows(arr("wk") + l * kv_dim * dim, h.n_kv_heads, int(head_dim), dim));
    add(p + "self_attn.k_proj.weight", {kv_dim, dim}, owned.back().data());
    add(p + "self_attn.v_proj.weight", {kv_dim, dim}, arr("wv") + l * kv_dim * dim);
    add(p + "self_attn.o_proj.weight", {dim, dim}, arr("wo") + l * dim * dim);
    add(p + "post_attention_layernorm.weight", {dim}, arr("rms_ffn") + l * dim);
    add(p + "mlp.gate_proj.weight", {hidden, dim}, arr("w1") + l * hidden * dim);
    add(p + "mlp.down_proj.weight", {dim, hidden}, arr("w2") + l * dim * hidden);
    add(p + "mlp.up_proj.weight", {hidden, dim}, arr("w3") + l * hidden * dim);
  }
  add("model.norm.weight", {dim}, arr("rms_final"));
  if (!shared) add("lm_head.weight", {vocab, dim}, arr("wcls"));
  PENSIEVE_TRY(write_safetensors(out + "/model.safetensors", tensors, {{"format", "pt"}}));

  nlohmann::ordered_json config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", dim},
      {"intermediate_size", hidden},
      {"num_hidden_layers", L},
      {"num_attention_heads", h.n_heads},
      {"num_key_value_heads", h.n_kv_heads},
      {"vocab_size", vocab},
      {"max_position_embeddings", h.seq_len},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", shared},
      {"bos_token_id", 1},
      // llama2.c ends generation when the model produces BOS (1); </s> (2) ends it too.
      {"eos_token_id", {1, 2}},
      {"torch_dtype", "float32"},
      {"pensieve_source", "llama2.c checkpoint " + checkpoint.substr(checkpoint.find_last_of('/') + 1)}};
  PENSIEVE_TRY(write_text(out + "/config.json", config.dump(4) + "\n"));
  PENSIEVE_TRY(write_text(out + "/tokenizer.json", *tok_json));
  return Status::Ok();
}

}  // namespace pensieve
