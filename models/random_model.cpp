#include "models/random_model.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "models/config.h"
#include "tensor/dtype.h"
#include "tensor/safetensors.h"

namespace pensieve {

using json = nlohmann::ordered_json;

const char* random_model_presets() { return "phi3-mini, phi3-mini-128k, phi4-mini"; }

namespace {

// Longrope factor lists shaped like the published ones (short: mild, long: up to ~x10).
json factors(int n, double amp, double power) {
  json a = json::array();
  for (int i = 0; i < n; ++i) a.push_back(1.0 + amp * std::pow(double(i) / double(n - 1), power));
  return a;
}

Result<json> preset_config(const std::string& like) {
  json c = {{"architectures", {"Phi3ForCausalLM"}}, {"model_type", "phi3"}, {"attention_bias", false},
            {"attention_dropout", 0.0}, {"embd_pdrop", 0.0}, {"resid_pdrop", 0.0}, {"hidden_act", "silu"},
            {"hidden_size", 3072}, {"intermediate_size", 8192}, {"num_hidden_layers", 32},
            {"num_attention_heads", 32}, {"num_key_value_heads", 32}, {"rms_norm_eps", 1e-5},
            {"rope_theta", 10000.0}, {"original_max_position_embeddings", 4096}, {"initializer_range", 0.02},
            {"torch_dtype", "bfloat16"}, {"use_cache", true}};
  if (like == "phi3-mini") {  // Phi-3-mini-4k-instruct
    c["vocab_size"] = 32064;
    c["max_position_embeddings"] = 4096;
    c["rope_scaling"] = nullptr;
    c["sliding_window"] = 2047;
    c["bos_token_id"] = 1;
    c["eos_token_id"] = 32000;
    c["pad_token_id"] = 32000;
    c["tie_word_embeddings"] = false;
  } else if (like == "phi3-mini-128k") {  // Phi-3-mini-128k-instruct
    c["vocab_size"] = 32064;
    c["max_position_embeddings"] = 131072;
    c["rope_scaling"] = {{"type", "longrope"}, {"short_factor", factors(48, 0.2, 2)}, {"long_factor", factors(48, 9, 1.5)}};
    c["sliding_window"] = 262144;
    c["bos_token_id"] = 1;
    c["eos_token_id"] = 32000;
    c["pad_token_id"] = 32000;
    c["tie_word_embeddings"] = false;
  } else if (like == "phi4-mini") {  // Phi-4-mini-instruct
    c["vocab_size"] = 200064;
    c["num_attention_heads"] = 24;
    c["num_key_value_heads"] = 8;
    c["partial_rotary_factor"] = 0.75;
    c["max_position_embeddings"] = 131072;
    c["rope_scaling"] = {{"type", "longrope"}, {"short_factor", factors(48, 0.2, 2)}, {"long_factor", factors(48, 9, 1.5)}};
    c["sliding_window"] = 262144;
    c["bos_token_id"] = 199999;
    c["eos_token_id"] = 199999;
    c["pad_token_id"] = 199999;
    c["tie_word_embeddings"] = true;
  } else {
    return errorf("make-model: unknown model \"%s\" (known: %s)", like.c_str(), random_model_presets());
  }
  return c;
}

// xorshift64*: fast, deterministic random words.
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 2685821657736338717ull;
  }
};

Status copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) return errorf("make-model: cannot read %s", from.c_str());
  std::ofstream out(to, std::ios::binary);
  out << in.rdbuf();
  if (!out) return errorf("make-model: cannot write %s", to.c_str());
  return Status::Ok();
}

}  // namespace

Status write_random_model(const RandomModelOptions& o) {
  auto cj = preset_config(o.like);
  if (!cj) return std::move(cj).take_error();
  if (o.bits != 4 && o.bits != 8) return errorf("make-model: bits %d, expected 4 or 8", o.bits);
  if (o.group_size != 32 && o.group_size != 64 && o.group_size != 128)
    return errorf("make-model: group size %d, expected 32, 64 or 128", o.group_size);
  (*cj)["quantization"] = {{"group_size", o.group_size}, {"bits", o.bits}};
  (*cj)["quantization_config"] = (*cj)["quantization"];
  auto c = parse_model_config(cj->dump());
  if (!c) return std::move(c).take_error();

  struct stat st;
  if (stat(o.out_dir.c_str(), &st) == 0) return errorf("make-model: %s already exists", o.out_dir.c_str());
  if (mkdir(o.out_dir.c_str(), 0755) != 0) return errorf("make-model: cannot create %s", o.out_dir.c_str());

  // Every matrix as MLX writes it: .weight (uint32), .scales and .biases (f16); norms in f16.
  struct Mat { std::string name; int64_t rows, cols; };
  std::vector<Mat> mats;
  std::vector<std::string> norms;
  mats.push_back({"model.embed_tokens", c->vocab, c->hidden});
  for (int l = 0; l < c->n_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    mats.push_back({p + "self_attn.qkv_proj", c->qkv_dim(), c->hidden});
    mats.push_back({p + "self_attn.o_proj", c->hidden, c->q_dim()});
    mats.push_back({p + "mlp.gate_up_proj", 2 * c->ffn, c->hidden});
    mats.push_back({p + "mlp.down_proj", c->hidden, c->ffn});
    norms.push_back(p + "input_layernorm.weight");
    norms.push_back(p + "post_attention_layernorm.weight");
  }
  norms.push_back("model.norm.weight");
  if (!c->tie_embeddings) mats.push_back({"lm_head", c->vocab, c->hidden});

  std::vector<SafetensorsWriter::Entry> entries;
  for (const Mat& m : mats) {
    int64_t words = m.cols * o.bits / 32, groups = m.cols / o.group_size;
    entries.push_back({m.name + ".weight", "U32", {m.rows, words}, uint64_t(m.rows * words * 4)});
    entries.push_back({m.name + ".scales", "F16", {m.rows, groups}, uint64_t(m.rows * groups * 2)});
    entries.push_back({m.name + ".biases", "F16", {m.rows, groups}, uint64_t(m.rows * groups * 2)});
  }
  for (const std::string& n : norms) entries.push_back({n, "F16", {c->hidden}, uint64_t(c->hidden * 2)});
  auto w = SafetensorsWriter::create(o.out_dir + "/model.safetensors", entries, {{"format", "mlx"}});
  if (!w) return std::move(w).take_error();

  Rng rng{o.seed * 0x9e3779b97f4a7c15ull + 1};
  std::vector<uint8_t> chunk;
  const int levels = (1 << o.bits) - 1;
  for (const Mat& m : mats) {
    // Random codes; weights ~ uniform with std ≈ 0.02 (scale 0.004 over 15 levels), centred.
    int64_t words = m.rows * m.cols * o.bits / 32;
    chunk.resize(size_t(1) << 24);
    for (int64_t done = 0; done < words;) {
      int64_t n = std::min<int64_t>(words - done, int64_t(chunk.size() / 8) * 2);
      uint32_t* p = reinterpret_cast<uint32_t*>(chunk.data());
      for (int64_t i = 0; i < n; i += 2) {
        uint64_t r = rng.next();
        p[i] = uint32_t(r);
        if (i + 1 < n) p[i + 1] = uint32_t(r >> 32);
      }
      PENSIEVE_TRY(w->write(chunk.data(), uint64_t(n) * 4));
      done += n;
    }
    int64_t groups = m.rows * (m.cols / o.group_size);
    std::vector<uint16_t> scales(static_cast<size_t>(groups)), biases(static_cast<size_t>(groups));
    for (int64_t g = 0; g < groups; ++g) {
      uint64_t r = rng.next();
      float scale = (0.06f / float(levels)) * (0.75f + 0.5f * float(r & 0xffff) / 65535.0f) * ((r >> 16) & 1 ? 1.0f : -1.0f);
      scales[size_t(g)] = f32_to_f16(scale);
      biases[size_t(g)] = f32_to_f16(-scale * float(levels) / 2.0f);
    }
    PENSIEVE_TRY(w->write(scales.data(), uint64_t(groups) * 2));
    PENSIEVE_TRY(w->write(biases.data(), uint64_t(groups) * 2));
  }
  std::vector<uint16_t> ones(size_t(c->hidden), f32_to_f16(1.0f));
  for (size_t i = 0; i < norms.size(); ++i) PENSIEVE_TRY(w->write(ones.data(), uint64_t(c->hidden) * 2));
  PENSIEVE_TRY(w->finish());

  std::ofstream(o.out_dir + "/config.json") << cj->dump(4) << "\n";
  if (!o.tokenizer_dir.empty())
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      std::string from = o.tokenizer_dir + "/" + f;
      if (stat(from.c_str(), &st) == 0) PENSIEVE_TRY(copy_file(from, o.out_dir + "/" + f));
    }
  return Status::Ok();
}

}  // namespace pensieve
