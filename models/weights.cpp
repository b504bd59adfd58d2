#include "models/weights.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <sys/mman.h>

namespace pensieve {

int64_t Projection::rows() const {
  int64_t r = 0;
  for (const auto& p : parts) r += p.rows;
  return r;
}

// Finds tensors across shards and builds validated views.
class WeightLoader {
 public:
  WeightLoader(Weights& w, const ModelConfig& c, const LoadOptions& o, ThreadPool& pool)
      : w_(w), c_(c), o_(o), pool_(pool) {}

  Status open_files(const std::string& dir) {
    std::ifstream index(dir + "/model.safetensors.index.json");
    std::vector<std::string> names;
    if (index) {
      std::stringstream ss;
      ss << index.rdbuf();
      auto j = nlohmann::json::parse(ss.str(), nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        return errorf("%s/model.safetensors.index.json: expected an object with a \"weight_map\"", dir.c_str());
      std::set<std::string> unique;
      for (auto& [tensor, file] : j["weight_map"].items()) {
        if (!file.is_string()) return errorf("model.safetensors.index.json: weight_map[\"%s\"] is not a file name", tensor.c_str());
        std::string f = file.get<std::string>();
        if (f.find('/') != std::string::npos || f == "..")
          return errorf("model.safetensors.index.json: shard name \"%s\" must be a plain file name", f.c_str());
        unique.insert(f);
      }
      names.assign(unique.begin(), unique.end());
      if (names.empty()) return errorf("%s/model.safetensors.index.json: weight_map is empty", dir.c_str());
    } else {
      names.push_back("model.safetensors");
    }
    for (const std::string& n : names) {
      auto f = SafetensorsFile::open(dir + "/" + n);
      if (!f) return errorf("load_model: %s", f.error().c_str());
      for (const auto& e : f->entries()) where_[e.name] = w_.files_.size();
      w_.files_.push_back(std::move(*f));
    }
    return Status::Ok();
  }

  const SafetensorsEntry* find(const std::string& name, const SafetensorsFile** file) const {
    auto it = where_.find(name);
    if (it == where_.end()) return nullptr;
    *file = &w_.files_[it->second];
    return (*file)->find(name);
  }

  // A float vector of `n` values (norm weights), converted to f32.
  Status vec(const std::string& name, int64_t n, std::vector<float>* out) {
    const SafetensorsFile* f;
    const SafetensorsEntry* e = find(name, &f);
    if (!e) return errorf("load_model: missing tensor \"%s\"", name.c_str());
    if (e->shape.size() != 1 || e->shape[0] != n)
      return errorf("load_model: tensor \"%s\" has shape %s, expected [%lld]", name.c_str(),
                    shape_to_string(e->shape.data(), int(e->shape.size())).c_str(), (long long)n);
    if (!e->known_dtype || (e->dtype != DType::f32 && e->dtype != DType::f16 && e->dtype != DType::bf16))
      return errorf("load_model: tensor \"%s\" has dtype %s, expected F32, F16 or BF16", name.c_str(), e->dtype_name.c_str());
    out->resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) (*out)[size_t(i)] = load_as_f32(f->data(*e), e->dtype, i);
    return Status::Ok();
  }

  // The matrix of module `m` with shape [rows, cols]: MLX quantized (m.weight/.scales/.biases)
  // or dense (m.weight), quantized at load when asked.
  Status matrix(const std::string& m, int64_t rows, int64_t cols, WeightMatrix* out) {
    const SafetensorsFile *fw, *fs, *fb;
    const SafetensorsEntry* w = find(m + ".weight", &fw);
    if (!w) return errorf("load_model: missing tensor \"%s.weight\"", m.c_str());
    const SafetensorsEntry* s = find(m + ".scales", &fs);
    std::string got = shape_to_string(w->shape.data(), int(w->shape.size()));
    if (s) {
      const SafetensorsEntry* b = find(m + ".biases", &fb);
      if (!b) return errorf("load_model: \"%s.scales\" has no matching \"%s.biases\"", m.c_str(), m.c_str());
      if (w->dtype_name != "U32")
        return errorf("load_model: quantized tensor \"%s.weight\" has dtype %s, expected U32", m.c_str(), w->dtype_name.c_str());
      if (w->shape.size() != 2 || w->shape[0] != rows || (w->shape[1] * 32) % cols != 0)
        return errorf("load_model: tensor \"%s.weight\" has shape %s, expected [%lld, %lld * bits / 32]", m.c_str(),
                      got.c_str(), (long long)rows, (long long)cols);
      int bits = int(w->shape[1] * 32 / cols);
      if (s->shape.size() != 2 || s->shape[0] != rows || s->shape[1] <= 0 || cols % s->shape[1] != 0)
        return errorf("load_model: tensor \"%s.scales\" has shape %s, expected [%lld, %lld / group_size]", m.c_str(),
                      shape_to_string(s->shape.data(), int(s->shape.size())).c_str(), (long long)rows, (long long)cols);
      int group = int(cols / s->shape[1]);
      if (!s->known_dtype || s->dtype_name != b->dtype_name)
        return errorf("load_model: \"%s\" scales (%s) and biases (%s) must share one float dtype", m.c_str(),
                      s->dtype_name.c_str(), b->dtype_name.c_str());
      auto q = make_quant_matrix(bits, group, rows, cols, fw->data(*w), int64_t(w->nbytes), fs->data(*s),
                                 int64_t(s->nbytes), fb->data(*b), int64_t(b->nbytes), s->dtype);
      if (!q) return errorf("load_model: \"%s\": %s", m.c_str(), q.error().c_str());
      *out = *q;
      return Status::Ok();
    }
    if (w->shape.size() != 2 || w->shape[0] != rows || w->shape[1] != cols)
      return errorf("load_model: tensor \"%s.weight\" has shape %s, expected [%lld, %lld]", m.c_str(), got.c_str(),
                    (long long)rows, (long long)cols);
    if (!w->known_dtype || (w->dtype != DType::f32 && w->dtype != DType::f16 && w->dtype != DType::bf16))
      return errorf("load_model: tensor \"%s.weight\" has dtype %s, expected F32, F16 or BF16 (or MLX U32 with scales)",
                    m.c_str(), w->dtype_name.c_str());
    WeightMatrix d;
    d.dtype = w->dtype;
    d.rows = rows;
    d.cols = cols;
    d.data = fw->data(*w);
    if (!quantize_dense_ || cols % o_.quant_group != 0) {
      *out = d;
      return Status::Ok();
    }
    // Quantize in parallel by rows, then let the kernel drop the dense pages we no longer need.
    auto q = std::make_unique<QuantizedMatrix>();
    int64_t plane = rows * (cols / o_.quant_group) * int64_t(dtype_size(DType::f16));
    q->packed = Buffer(size_t(rows * cols * o_.quant_bits / 8));
    q->scales = Buffer(size_t(plane));
    q->biases = Buffer(size_t(plane));
    pool_.parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
      quantize_rows(d.data, d.dtype, cols, o_.quant_bits, o_.quant_group, DType::f16, r0, r1, q->packed.as<uint32_t>(),
                    q->scales.data(), q->biases.data());
    });
    auto view = make_quant_matrix(o_.quant_bits, o_.quant_group, rows, cols, q->packed.data(), int64_t(q->packed.size()),
                                  q->scales.data(), plane, q->biases.data(), plane, DType::f16);
    if (!view) return errorf("load_model: \"%s\": %s", m.c_str(), view.error().c_str());
    q->matrix = *view;
    *out = q->matrix;
    madvise(const_cast<void*>(static_cast<const void*>(reinterpret_cast<const uint8_t*>(d.data) -
                                                       (reinterpret_cast<uintptr_t>(d.data) & 4095))),
            size_t(w->nbytes) + (reinterpret_cast<uintptr_t>(d.data) & 4095), MADV_DONTNEED);
    w_.owned_.push_back(std::move(q));
    w_.quantized_at_load = true;
    return Status::Ok();
  }

  // Decides LoadOptions::Quantize::automatic from the dense weight bytes in the files.
  void decide_quantize() {
    if (o_.quantize != LoadOptions::Quantize::automatic) {
      quantize_dense_ = o_.quantize == LoadOptions::Quantize::yes;
      return;
    }
    uint64_t dense = 0;
    for (const auto& f : w_.files_)
      for (const auto& e : f.entries())
        if (e.shape.size() == 2 && (e.dtype_name == "F32" || e.dtype_name == "F16" || e.dtype_name == "BF16"))
          dense += e.nbytes;
    quantize_dense_ = dense > uint64_t(kAutoQuantizeBytes);
  }

  Status load() {
    decide_quantize();
    const std::string p = "model.";
    PENSIEVE_TRY(matrix(p + "embed_tokens", c_.vocab, c_.hidden, &w_.embed));
    w_.layers.resize(size_t(c_.n_layers));
    for (int l = 0; l < c_.n_layers; ++l) {
      LayerWeights& L = w_.layers[size_t(l)];
      std::string lp = p + "layers." + std::to_string(l) + ".";
      PENSIEVE_TRY(vec(lp + "input_layernorm.weight", c_.hidden, &L.attn_norm));
      PENSIEVE_TRY(vec(lp + "post_attention_layernorm.weight", c_.hidden, &L.mlp_norm));
      if (c_.arch == Arch::phi3) {
        L.qkv.parts.resize(1);
        PENSIEVE_TRY(matrix(lp + "self_attn.qkv_proj", c_.qkv_dim(), c_.hidden, &L.qkv.parts[0]));
        L.gate_up.parts.resize(1);
        PENSIEVE_TRY(matrix(lp + "mlp.gate_up_proj", 2 * c_.ffn, c_.hidden, &L.gate_up.parts[0]));
      } else {
        L.qkv.parts.resize(3);
        PENSIEVE_TRY(matrix(lp + "self_attn.q_proj", c_.q_dim(), c_.hidden, &L.qkv.parts[0]));
        PENSIEVE_TRY(matrix(lp + "self_attn.k_proj", c_.kv_dim(), c_.hidden, &L.qkv.parts[1]));
        PENSIEVE_TRY(matrix(lp + "self_attn.v_proj", c_.kv_dim(), c_.hidden, &L.qkv.parts[2]));
        L.gate_up.parts.resize(2);
        PENSIEVE_TRY(matrix(lp + "mlp.gate_proj", c_.ffn, c_.hidden, &L.gate_up.parts[0]));
        PENSIEVE_TRY(matrix(lp + "mlp.up_proj", c_.ffn, c_.hidden, &L.gate_up.parts[1]));
      }
      PENSIEVE_TRY(matrix(lp + "self_attn.o_proj", c_.hidden, c_.q_dim(), &L.o));
      PENSIEVE_TRY(matrix(lp + "mlp.down_proj", c_.hidden, c_.ffn, &L.down));
    }
    PENSIEVE_TRY(vec(p + "norm.weight", c_.hidden, &w_.final_norm));
    const SafetensorsFile* f;
    if (c_.tie_embeddings || !find("lm_head.weight", &f)) {
      if (!c_.tie_embeddings) return errorf("load_model: missing tensor \"lm_head.weight\" (and tie_word_embeddings is false)");
      w_.lm_head = w_.embed;
    } else {
      PENSIEVE_TRY(matrix("lm_head", c_.vocab, c_.hidden, &w_.lm_head));
    }
    return Status::Ok();
  }

 private:
  Weights& w_;
  const ModelConfig& c_;
  const LoadOptions& o_;
  ThreadPool& pool_;
  std::map<std::string, size_t> where_;
  bool quantize_dense_ = false;
};

Result<std::unique_ptr<Weights>> Weights::load(const std::string& dir, const ModelConfig& config,
                                               const LoadOptions& options, ThreadPool& pool) {
  auto w = std::make_unique<Weights>();
  WeightLoader loader(*w, config, options, pool);
  PENSIEVE_TRY(loader.open_files(dir));
  PENSIEVE_TRY(loader.load());
  return w;
}

int64_t Weights::nbytes() const {
  std::set<const void*> seen;
  int64_t n = 0;
  auto add = [&](const WeightMatrix& m) {
    if (seen.insert(m.data).second) n += m.nbytes();
  };
  add(embed);
  for (const auto& L : layers) {
    for (const auto& p : L.qkv.parts) add(p);
    add(L.o);
    for (const auto& p : L.gate_up.parts) add(p);
    add(L.down);
    n += int64_t(L.attn_norm.size() + L.mlp_norm.size()) * 4;
  }
  add(lm_head);
  return n + int64_t(final_norm.size()) * 4;
}

}  // namespace pensieve
