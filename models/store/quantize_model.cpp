#include "models/store/quantize_model.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/store/model_dir.h"
#include "quant/quantize.h"
#include "tensor/safetensors.h"
#include "tensor/thread_pool.h"

namespace pensieve {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return errorf("cannot read %s", path.c_str());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Status write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  if (!f.flush()) return errorf("cannot write %s", path.c_str());
  return Status::Ok();
}

// Files copied next to the weights: tokenizer, generation and chat-template files.
bool is_aux_file(const std::string& name) {
  if (name == "config.json" || name == "model.safetensors.index.json") return false;
  return ends_with(name, ".json") || ends_with(name, ".tiktoken") || ends_with(name, ".txt") ||
         ends_with(name, ".jinja") || name == "tokenizer.model" || name == "tiktoken.model";
}

struct Source {
  const SafetensorsFile* file;
  const SafetensorsEntry* entry;
};

// One output tensor group: a quantized module (weight, scales, biases) or a copied tensor.
struct Planned {
  Source src{};
  bool quantize = false;
  std::string module;                              // quantized: name without ".weight"
  std::vector<SafetensorsWriter::Entry> outputs;   // in write order
  uint64_t out_bytes() const {
    uint64_t n = 0;
    for (const auto& o : outputs) n += o.nbytes;
    return n;
  }
};

struct Shard {
  std::string name;
  std::vector<size_t> items;  // indices into the plan
  uint64_t bytes = 0, src_bytes = 0;
};

// Removes a half-built output directory unless released.
struct TmpDir {
  std::string path;
  ~TmpDir() {
    if (!path.empty()) {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  }
};

Status write_quantized(const Planned& p, const QuantizeOptions& opt, ThreadPool& pool, SafetensorsWriter& w) {
  const SafetensorsEntry& e = *p.src.entry;
  const int64_t rows = e.shape[0], cols = e.shape[1];
  Buffer packed(size_t(p.outputs[0].nbytes)), scales(size_t(p.outputs[1].nbytes)), biases(size_t(p.outputs[2].nbytes));
  const void* src = p.src.file->data(e);
  // Rows are independent: each chunk writes its own rows of the three planes, so the bytes do not
  // depend on the thread count. ~64K values per chunk keeps chunks coarse but balanced.
  int64_t grain = std::max<int64_t>(1, 65536 / cols);
  pool.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    quantize_rows(src, e.dtype, cols, opt.bits, opt.group_size, e.dtype, r0, r1, packed.as<uint32_t>(), scales.data(),
                  biases.data());
  });
  PENSIEVE_TRY(w.write(packed.data(), packed.size()));
  PENSIEVE_TRY(w.write(scales.data(), scales.size()));
  return w.write(biases.data(), biases.size());
}

}  // namespace

bool should_quantize(const std::string& name, const std::vector<int64_t>& shape, std::string_view dtype, int group_size) {
  return ends_with(name, ".weight") && shape.size() == 2 && (dtype == "F16" || dtype == "BF16" || dtype == "F32") &&
         shape[0] > 0 && shape[1] > 0 && group_size > 0 && shape[1] % group_size == 0;
}

Result<std::string> quantized_config_json(const std::string& config_text, int bits, int group_size) {
  ojson config = ojson::parse(config_text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) return errorf("config.json is not a JSON object");
  config.erase("_name_or_path");
  ojson q = ojson::object();
  q["group_size"] = group_size;  // mlx-lm's insertion order, kept in the nested dict
  q["bits"] = bits;
  config["quantization"] = q;
  config["quantization_config"] = q;
  // save_config sorts the top-level keys only: dict(sorted(config.items())).
  std::vector<std::string> keys;
  for (auto it = config.begin(); it != config.end(); ++it) keys.push_back(it.key());
  std::sort(keys.begin(), keys.end());
  ojson sorted = ojson::object();
  for (const std::string& k : keys) sorted[k] = config[k];
  // json.dump(indent=4) with ensure_ascii: non-ASCII as \uXXXX, no trailing newline.
  return sorted.dump(4, ' ', /*ensure_ascii=*/true);
}

Result<QuantizeReport> quantize_model(const std::string& src_dir, const std::string& out_dir, const QuantizeOptions& opt) {
  if (opt.bits != 4 && opt.bits != 8) return errorf("quantize: --bits %d is not supported (4 or 8)", opt.bits);
  if (opt.group_size != 32 && opt.group_size != 64 && opt.group_size != 128)
    return errorf("quantize: --group-size %d is not supported (32, 64 or 128)", opt.group_size);
  std::error_code ec;
  if (!fs::is_directory(src_dir, ec)) return errorf("quantize: %s is not a directory", src_dir.c_str());
  if (fs::exists(out_dir, ec))
    return errorf("quantize: %s already exists; delete it or choose another --out", out_dir.c_str());

  // The config: a model that is not quantized yet.
  auto config_text = read_text(src_dir + "/config.json");
  if (!config_text) return errorf("quantize: %s has no config.json", src_dir.c_str());
  auto config = nlohmann::json::parse(*config_text, nullptr, false);
  if (config.is_discarded() || !config.is_object()) return errorf("quantize: %s/config.json is not a JSON object", src_dir.c_str());
  for (const char* key : {"quantization", "quantization_config"})
    if (config.contains(key))
      return errorf("quantize: %s is already quantized (config.json has \"%s\": %s)", src_dir.c_str(), key,
                    config[key].dump().c_str());
  const bool tied = config.value("tie_word_embeddings", false);
  auto out_config = quantized_config_json(*config_text, opt.bits, opt.group_size);
  if (!out_config) return errorf("quantize: %s/config.json: %s", src_dir.c_str(), out_config.error().c_str());

  // The source tensors, in file order then data order (sequential reads of each map).
  auto index = model_weight_files(src_dir);
  if (!index) return errorf("quantize: %s", index.error().c_str());
  std::vector<SafetensorsFile> files;
  for (const std::string& name : index->files) {
    if (!fs::is_regular_file(src_dir + "/" + name, ec))
      return errorf("quantize: %s/model.safetensors.index.json names %s, which is missing", src_dir.c_str(), name.c_str());
    auto f = SafetensorsFile::open(src_dir + "/" + name);
    if (!f) return errorf("quantize: %s", f.error().c_str());
    files.push_back(std::move(*f));
  }
  std::vector<Source> sources;
  std::map<std::string, std::string> seen;  // tensor -> file
  for (size_t i = 0; i < files.size(); ++i) {
    std::vector<const SafetensorsEntry*> entries;
    for (const auto& e : files[i].entries()) entries.push_back(&e);
    std::sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (const SafetensorsEntry* e : entries) {
      if (index->has_index) {
        auto it = index->weight_map.find(e->name);
        if (it == index->weight_map.end() || it->second != index->files[i]) continue;  // the index decides
      }
      if (auto dup = seen.find(e->name); dup != seen.end())
        return errorf("quantize: tensor \"%s\" is in both %s and %s", e->name.c_str(), dup->second.c_str(),
                      index->files[i].c_str());
      seen[e->name] = index->files[i];
      sources.push_back({&files[i], e});
    }
  }
  for (const auto& [tensor, file] : index->weight_map)
    if (!seen.count(tensor))
      return errorf("quantize: model.safetensors.index.json puts \"%s\" in %s, which has no such tensor", tensor.c_str(),
                    file.c_str());

  // The plan: what each tensor becomes.
  QuantizeReport report;
  std::vector<Planned> plan;
  for (const Source& s : sources) {
    const SafetensorsEntry& e = *s.entry;
    if (ends_with(e.name, "rotary_emb.inv_freq") || (tied && e.name == "lm_head.weight")) {
      ++report.dropped;
      continue;
    }
    Planned p;
    p.src = s;
    if (should_quantize(e.name, e.shape, e.dtype_name, opt.group_size)) {
      p.quantize = true;
      p.module = e.name.substr(0, e.name.size() - 7);
      const int64_t rows = e.shape[0], cols = e.shape[1];
      const uint64_t planes = uint64_t(rows) * uint64_t(cols / opt.group_size) * uint64_t(safetensors_dtype_size(e.dtype_name));
      p.outputs.push_back({p.module + ".weight", "U32", {rows, cols * opt.bits / 32}, uint64_t(rows) * uint64_t(cols) * uint64_t(opt.bits) / 8});
      p.outputs.push_back({p.module + ".scales", e.dtype_name, {rows, cols / opt.group_size}, planes});
      p.outputs.push_back({p.module + ".biases", e.dtype_name, {rows, cols / opt.group_size}, planes});
      ++report.quantized;
    } else {
      p.outputs.push_back({e.name, e.dtype_name, e.shape, e.nbytes});
      ++report.copied;
    }
    report.bytes_in += e.nbytes;
    report.bytes_out += p.out_bytes();
    plan.push_back(std::move(p));
  }
  if (plan.empty()) return errorf("quantize: %s has no tensors to convert", src_dir.c_str());
  if (report.quantized == 0)
    return errorf("quantize: no tensor of %s can be quantized (2-D f16/bf16/f32 *.weight with a last dimension "
                  "divisible by %d)", src_dir.c_str(), opt.group_size);

  // Shards of at most max_shard_bytes (a module's three tensors stay together), as mlx-lm's make_shards.
  std::vector<Shard> shards(1);
  for (size_t i = 0; i < plan.size(); ++i) {
    const uint64_t n = plan[i].out_bytes();
    if (!shards.back().items.empty() && shards.back().bytes + n > opt.max_shard_bytes) shards.emplace_back();
    shards.back().items.push_back(i);
    shards.back().bytes += n;
    shards.back().src_bytes += plan[i].src.entry->nbytes;
  }
  for (size_t k = 0; k < shards.size(); ++k) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, shards.size());
    shards[k].name = shards.size() == 1 ? "model.safetensors" : name;
  }

  // Build in a sibling temporary directory, renamed into place at the end.
  fs::path out_path = fs::absolute(out_dir, ec);
  if (out_path.has_parent_path()) fs::create_directories(out_path.parent_path(), ec);
  TmpDir tmp{out_path.string() + ".tmp-" + std::to_string(getpid())};
  fs::remove_all(tmp.path, ec);
  if (!fs::create_directory(tmp.path, ec)) return errorf("quantize: cannot create %s: %s", tmp.path.c_str(), ec.message().c_str());

  ThreadPool pool(opt.threads > 0 ? opt.threads : ThreadPool::default_threads());
  if (opt.progress) opt.progress->begin("quantize", report.bytes_in, int(shards.size()), 0);
  for (const Shard& shard : shards) {
    std::vector<SafetensorsWriter::Entry> entries;
    for (size_t i : shard.items)
      for (const auto& o : plan[i].outputs) entries.push_back(o);
    auto w = SafetensorsWriter::create(tmp.path + "/" + shard.name, std::move(entries), {{"format", "mlx"}});
    if (!w) return errorf("quantize: %s", w.error().c_str());
    if (opt.progress) opt.progress->begin_item(shard.name, shard.src_bytes, 0);
    uint64_t done = 0;
    for (size_t i : shard.items) {
      const Planned& p = plan[i];
      if (p.quantize) {
        PENSIEVE_TRY_CTX(write_quantized(p, opt, pool, *w), "quantize %s", p.module.c_str());
        done += p.src.entry->nbytes;
        if (opt.progress) opt.progress->item_progress(done);
      } else {
        // Copied in 64 MiB pieces, so that progress moves through large tensors.
        const uint8_t* data = p.src.file->data(*p.src.entry);
        for (uint64_t off = 0; off < p.src.entry->nbytes;) {
          uint64_t n = std::min<uint64_t>(64ull << 20, p.src.entry->nbytes - off);
          PENSIEVE_TRY_CTX(w->write(data + off, n), "quantize");
          off += n;
          done += n;
          if (opt.progress) opt.progress->item_progress(done);
        }
      }
    }
    PENSIEVE_TRY_CTX(w->finish(), "quantize");
    if (opt.progress) opt.progress->end_item(true);
    report.files.push_back(shard.name);
  }

  if (shards.size() > 1) {
    // mlx-lm's index: {"metadata": {"total_size": N}, "weight_map": sorted}, json.dump(indent=4).
    ojson wm = ojson::object();
    std::vector<std::pair<std::string, std::string>> names;
    for (const Shard& shard : shards)
      for (size_t i : shard.items)
        for (const auto& o : plan[i].outputs) names.emplace_back(o.name, shard.name);
    std::sort(names.begin(), names.end());
    for (const auto& [t, f] : names) wm[t] = f;
    ojson idx = ojson::object();
    idx["metadata"] = ojson{{"total_size", report.bytes_out}};
    idx["weight_map"] = wm;
    PENSIEVE_TRY_CTX(write_text(tmp.path + "/model.safetensors.index.json", idx.dump(4)), "quantize");
  }
  PENSIEVE_TRY_CTX(write_text(tmp.path + "/config.json", *out_config), "quantize");
  for (auto it = fs::directory_iterator(src_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!is_aux_file(name) || !fs::is_regular_file(it->path(), ec)) continue;  // follows cache symlinks
    fs::copy_file(it->path(), tmp.path + "/" + name, ec);
    if (ec) return errorf("quantize: copying %s: %s", it->path().c_str(), ec.message().c_str());
  }
  fs::rename(tmp.path, out_path, ec);
  if (ec) return errorf("quantize: renaming %s to %s: %s", tmp.path.c_str(), out_path.c_str(), ec.message().c_str());
  tmp.path.clear();
  if (opt.progress) opt.progress->end(true);
  return report;
}

}  // namespace pensieve
