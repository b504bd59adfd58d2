#include "models/config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kernels/kernels.h"

namespace pensieve {

using json = nlohmann::json;

namespace {

// Typed field access with messages that name the field.
Status get_int(const json& j, const char* key, int64_t* out, bool required, int64_t fallback = 0) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return errorf("config.json: missing required field \"%s\"", key);
    *out = fallback;
    return Status::Ok();
  }
  if (!it->is_number_integer()) return errorf("config.json: \"%s\" is %s, expected an integer", key, it->dump().c_str());
  *out = it->get<int64_t>();
  return Status::Ok();
}

Status get_double(const json& j, const char* key, double* out, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    *out = fallback;
    return Status::Ok();
  }
  if (!it->is_number()) return errorf("config.json: \"%s\" is %s, expected a number", key, it->dump().c_str());
  *out = it->get<double>();
  return Status::Ok();
}

Status get_factors(const json& rs, const char* key, int expect, std::vector<double>* out) {
  auto it = rs.find(key);
  if (it == rs.end() || !it->is_array()) return errorf("config.json: rope_scaling.%s must be a list of numbers", key);
  for (const json& v : *it) {
    if (!v.is_number()) return errorf("config.json: rope_scaling.%s holds %s, expected numbers", key, v.dump().c_str());
    double f = v.get<double>();
    if (!(f > 0) || !std::isfinite(f)) return errorf("config.json: rope_scaling.%s holds %g, expected > 0", key, f);
    out->push_back(f);
  }
  if (int(out->size()) != expect)
    return errorf("config.json: rope_scaling.%s has %zu entries, expected %d (rotary dims / 2)", key, out->size(), expect);
  return Status::Ok();
}

Status parse_ids(const json& j, const char* key, std::vector<int32_t>* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (it->is_number_integer()) {
    out->push_back(it->get<int32_t>());
  } else if (it->is_array()) {
    for (const json& v : *it) {
      if (!v.is_number_integer()) return errorf("config.json: \"%s\" holds %s, expected integers", key, v.dump().c_str());
      out->push_back(v.get<int32_t>());
    }
  } else {
    return errorf("config.json: \"%s\" is %s, expected an integer or a list", key, it->dump().c_str());
  }
  return Status::Ok();
}

}  // namespace

Result<ModelConfig> parse_model_config(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return errorf("config.json: not a valid JSON object");
  ModelConfig c;

  std::string arch;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
    arch = (*it)[0].get<std::string>();
  if (auto it = j.find("model_type"); it != j.end() && it->is_string()) c.model_type = it->get<std::string>();
  if (arch == "Phi3ForCausalLM" || (arch.empty() && c.model_type == "phi3")) {
    c.arch = Arch::phi3;
  } else if (arch == "LlamaForCausalLM" || (arch.empty() && c.model_type == "llama")) {
    c.arch = Arch::llama;
  } else {
    return errorf("config.json: architecture \"%s\" (model_type \"%s\") is not supported; pensieve runs "
                  "Phi3ForCausalLM and LlamaForCausalLM", arch.c_str(), c.model_type.c_str());
  }

  int64_t v = 0;
  PENSIEVE_TRY(get_int(j, "vocab_size", &c.vocab, true));
  PENSIEVE_TRY(get_int(j, "hidden_size", &c.hidden, true));
  PENSIEVE_TRY(get_int(j, "intermediate_size", &c.ffn, true));
  PENSIEVE_TRY(get_int(j, "num_hidden_layers", &v, true));
  c.n_layers = int(v);
  PENSIEVE_TRY(get_int(j, "num_attention_heads", &v, true));
  c.n_heads = int(v);
  PENSIEVE_TRY(get_int(j, "num_key_value_heads", &v, false, c.n_heads));
  c.n_kv_heads = int(v);
  PENSIEVE_TRY(get_double(j, "rms_norm_eps", &c.rms_eps, 1e-5));
  PENSIEVE_TRY(get_double(j, "rope_theta", &c.rope.theta, 10000.0));
  PENSIEVE_TRY(get_int(j, "max_position_embeddings", &c.max_positions, false, 4096));
  PENSIEVE_TRY(get_int(j, "original_max_position_embeddings", &c.rope.original_max, false, c.max_positions));
  PENSIEVE_TRY(get_int(j, "sliding_window", &c.sliding_window, false, 0));

  auto positive = [](const char* name, int64_t value, int64_t limit) -> Status {
    if (value <= 0 || value > limit)
      return errorf("config.json: \"%s\" is %lld, expected 1..%lld", name, (long long)value, (long long)limit);
    return Status::Ok();
  };
  PENSIEVE_TRY(positive("vocab_size", c.vocab, 1 << 22));
  PENSIEVE_TRY(positive("hidden_size", c.hidden, 1 << 16));
  PENSIEVE_TRY(positive("intermediate_size", c.ffn, 1 << 18));
  PENSIEVE_TRY(positive("num_hidden_layers", c.n_layers, 512));
  PENSIEVE_TRY(positive("num_attention_heads", c.n_heads, 1024));
  PENSIEVE_TRY(positive("num_key_value_heads", c.n_kv_heads, 1024));
  PENSIEVE_TRY(positive("max_position_embeddings", c.max_positions, int64_t(1) << 24));
  if (c.sliding_window < 0) return errorf("config.json: \"sliding_window\" is %lld, expected >= 0", (long long)c.sliding_window);
  if (c.n_heads % c.n_kv_heads != 0)
    return errorf("config.json: num_key_value_heads %d does not divide num_attention_heads %d", c.n_kv_heads, c.n_heads);
  if (c.hidden % c.n_heads != 0)
    return errorf("config.json: num_attention_heads %d does not divide hidden_size %lld", c.n_heads, (long long)c.hidden);
  c.head_dim = int(c.hidden / c.n_heads);
  if (auto it = j.find("head_dim"); it != j.end() && it->is_number_integer()) c.head_dim = it->get<int>();
  if (c.head_dim <= 0 || c.head_dim > kMaxHeadDim || c.head_dim % 2)
    return errorf("config.json: head_dim %d is not supported (even, at most %d)", c.head_dim, kMaxHeadDim);
  if (!(c.rms_eps > 0)) return errorf("config.json: rms_norm_eps %g must be > 0", c.rms_eps);
  if (!(c.rope.theta > 0)) return errorf("config.json: rope_theta %g must be > 0", c.rope.theta);

  double partial = 1.0;
  PENSIEVE_TRY(get_double(j, "partial_rotary_factor", &partial, 1.0));
  if (!(partial > 0 && partial <= 1)) return errorf("config.json: partial_rotary_factor %g must be in (0, 1]", partial);
  c.rope.rot_dim = int(c.head_dim * partial);
  if (c.rope.rot_dim % 2) return errorf("config.json: partial_rotary_factor %g gives an odd rotary dim %d", partial, c.rope.rot_dim);

  if (auto it = j.find("hidden_act"); it != j.end() && it->is_string() && *it != "silu")
    return errorf("config.json: hidden_act \"%s\" is not supported (only silu)", it->get<std::string>().c_str());
  for (const char* key : {"attention_bias", "mlp_bias", "lm_head_bias"})
    if (auto it = j.find(key); it != j.end() && it->is_boolean() && it->get<bool>())
      return errorf("config.json: %s true is not supported (biases in linear layers)", key);

  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return errorf("config.json: rope_scaling must be an object or null");
    std::string type;
    if (auto t = it->find("rope_type"); t != it->end() && t->is_string()) type = t->get<std::string>();
    if (auto t = it->find("type"); type.empty() && t != it->end() && t->is_string()) type = t->get<std::string>();
    if (type == "longrope" || type == "su") {
      c.rope.longrope = true;
      PENSIEVE_TRY(get_factors(*it, "short_factor", c.rope.rot_dim / 2, &c.rope.short_factor));
      PENSIEVE_TRY(get_factors(*it, "long_factor", c.rope.rot_dim / 2, &c.rope.long_factor));
      if (c.rope.original_max <= 0) return errorf("config.json: longrope needs original_max_position_embeddings");
      // HF: attention_factor = rope_scaling.attention_factor, else sqrt(1 + ln(s) / ln(original_max)) with
      // s = max_position_embeddings / original_max (1 when s <= 1).
      double scale = double(c.max_positions) / double(c.rope.original_max);
      if (auto f = it->find("factor"); f != it->end() && f->is_number()) scale = f->get<double>();
      c.rope.attention_factor = scale <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(scale) / std::log(double(c.rope.original_max)));
      if (auto f = it->find("attention_factor"); f != it->end() && f->is_number()) c.rope.attention_factor = f->get<double>();
    } else if (type == "linear") {
      PENSIEVE_TRY(get_double(*it, "factor", &c.rope.linear_factor, 1.0));
      if (!(c.rope.linear_factor > 0)) return errorf("config.json: rope_scaling.factor must be > 0");
    } else if (type != "default" && !type.empty()) {
      return errorf("config.json: rope_scaling type \"%s\" is not supported (supported: longrope, su, linear)", type.c_str());
    }
  }

  if (auto it = j.find("tie_word_embeddings"); it != j.end() && it->is_boolean()) c.tie_embeddings = it->get<bool>();
  PENSIEVE_TRY(parse_ids(j, "eos_token_id", &c.eos_ids));
  std::vector<int32_t> bos;
  PENSIEVE_TRY(parse_ids(j, "bos_token_id", &bos));
  if (!bos.empty()) c.bos_id = bos[0];

  for (const char* key : {"quantization", "quantization_config"}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_object() || !it->contains("bits")) continue;
    int64_t bits = 0, group = 0;
    PENSIEVE_TRY(get_int(*it, "bits", &bits, true));
    PENSIEVE_TRY(get_int(*it, "group_size", &group, false, 64));
    if (bits != 4 && bits != 8) return errorf("config.json: %s.bits is %lld, pensieve reads 4 and 8", key, (long long)bits);
    if (group != 32 && group != 64 && group != 128)
      return errorf("config.json: %s.group_size is %lld, expected 32, 64 or 128", key, (long long)group);
    if (auto m = it->find("mode"); m != it->end() && m->is_string() && *m != "affine")
      return errorf("config.json: %s.mode \"%s\" is not supported (only MLX affine)", key, m->get<std::string>().c_str());
    c.quant_bits = int(bits);
    c.quant_group = int(group);
    break;
  }
  return c;
}

Result<ModelConfig> load_model_config(const std::string& dir) {
  std::ifstream f(dir + "/config.json");
  if (!f) return errorf("%s: no config.json (is this a model directory?)", dir.c_str());
  std::stringstream ss;
  ss << f.rdbuf();
  auto c = parse_model_config(ss.str());
  if (!c) return errorf("%s/%s", dir.c_str(), c.error().c_str());
  return c;
}

}  // namespace pensieve
