// Loading models: sharded files give the same model as one file, and every kind of bad model
// directory is a clear error (naming the file, tensor or config field), never a crash.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/model.h"
#include "models/rope.h"
#include "tensor/safetensors.h"

namespace pensieve {
namespace {

const std::string kTiny = std::string(PENSIEVE_TEST_DATA) + "/models/phi3-tiny";

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void put(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

// A fresh copy of phi3-tiny (config + weights) that a test may break.
std::string fresh_dir(const std::string& name) {
  std::string d = ::testing::TempDir() + "/load-" + name + "-" + std::to_string(getpid());
  mkdir(d.c_str(), 0755);
  put(d + "/config.json", slurp(kTiny + "/config.json"));
  put(d + "/model.safetensors", slurp(kTiny + "/model.safetensors"));
  return d;
}

std::string load_error(const std::string& dir) {
  ModelOptions o;
  o.threads = 1;
  o.ctx_tokens = 64;
  auto m = Model::load(dir, o);
  return m.ok() ? std::string() : m.error();
}

// Rewrites the safetensors header of dir/model.safetensors through `edit`, keeping the data.
void edit_header(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  std::string bytes = slurp(dir + "/model.safetensors");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  auto h = nlohmann::json::parse(bytes.substr(8, n));
  edit(h);
  std::string hs = h.dump();
  while ((8 + hs.size()) % 8) hs += ' ';
  uint64_t len = hs.size();
  std::string out(reinterpret_cast<const char*>(&len), 8);
  put(dir + "/model.safetensors", out + hs + bytes.substr(8 + n));
}

TEST(ModelLoad, ShardedEqualsSingleFile) {
  std::string d = fresh_dir("sharded");
  auto single = SafetensorsFile::open(kTiny + "/model.safetensors");
  ASSERT_TRUE(single.ok());
  std::vector<SafetensorsWriteEntry> a, b;
  nlohmann::json map;
  for (const auto& e : single->entries()) {
    bool first = e.name.find("layers.1.") == std::string::npos;
    (first ? a : b).push_back({e.name, e.dtype_name, e.shape, single->data(e), e.nbytes});
    map[e.name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  unlink((d + "/model.safetensors").c_str());
  ASSERT_TRUE(write_safetensors(d + "/model-00001-of-00002.safetensors", a, {{"format", "mlx"}}).ok());
  ASSERT_TRUE(write_safetensors(d + "/model-00002-of-00002.safetensors", b, {{"format", "mlx"}}).ok());
  put(d + "/model.safetensors.index.json", nlohmann::json({{"metadata", {}}, {"weight_map", map}}).dump());

  auto run = [](const std::string& dir) {
    ModelOptions o;
    o.precision = Precision::exact;
    o.threads = 1;
    o.ctx_tokens = 64;
    auto m = Model::load(dir, o);
    EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error());
    std::vector<int32_t> ids = {32010, 15043, 29892};
    SeqKv seq;
    seq.start((*m)->cache(), ids, false, false);
    EXPECT_TRUE(seq.reserve((*m)->cache(), 3));
    SeqChunk ch;
    ch.tokens = ids.data();
    ch.n = 3;
    ch.block_table = seq.blocks().data();
    std::vector<float> logits(size_t((*m)->config().vocab));
    EXPECT_TRUE((*m)->forward().run({ch}, logits.data()).ok());
    return logits;
  };
  EXPECT_EQ(run(d), run(kTiny));

  // The index names a shard that is missing, or one outside the directory.
  map["lm_head.weight"] = "model-00003-of-00002.safetensors";
  put(d + "/model.safetensors.index.json", nlohmann::json({{"weight_map", map}}).dump());
  EXPECT_NE(load_error(d).find("model-00003-of-00002.safetensors"), std::string::npos) << load_error(d);
  map["lm_head.weight"] = "../model.safetensors";
  put(d + "/model.safetensors.index.json", nlohmann::json({{"weight_map", map}}).dump());
  EXPECT_NE(load_error(d).find("plain file name"), std::string::npos) << load_error(d);
  put(d + "/model.safetensors.index.json", "{not json");
  EXPECT_NE(load_error(d).find("index.json"), std::string::npos) << load_error(d);
}

TEST(ModelLoad, MissingFiles) {
  EXPECT_NE(load_error("/nonexistent/model").find("no config.json"), std::string::npos);
  std::string d = fresh_dir("nofile");
  unlink((d + "/model.safetensors").c_str());
  EXPECT_NE(load_error(d).find("model.safetensors"), std::string::npos) << load_error(d);
}

TEST(ModelLoad, TruncatedWeights) {
  std::string d = fresh_dir("trunc");
  std::string bytes = slurp(d + "/model.safetensors");
  for (size_t keep : {size_t(0), size_t(5), size_t(200), bytes.size() / 2, bytes.size() - 1}) {
    put(d + "/model.safetensors", bytes.substr(0, keep));
    std::string err = load_error(d);
    EXPECT_FALSE(err.empty()) << "kept " << keep;
    EXPECT_NE(err.find("model.safetensors"), std::string::npos) << err;
  }
}

TEST(ModelLoad, LyingHeaders) {
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
    const char* expect;
  };
  const std::string t = "model.layers.0.self_attn.o_proj.weight";
  std::vector<Case> cases = {
      {"offsets past the end", [&](auto& h) { h[t]["data_offsets"] = {0, 1ull << 40}; }, "truncated"},
      {"overlap", [&](auto& h) { h[t]["data_offsets"] = h["lm_head.weight"]["data_offsets"]; h[t]["shape"] = h["lm_head.weight"]["shape"]; }, "overlap"},
      {"wrong dtype", [&](auto& h) { h[t]["dtype"] = "F32"; }, "U32"},
      {"wrong shape", [&](auto& h) { h[t]["shape"] = {64, 32}; }, "shape"},
      {"missing tensor", [&](auto& h) { h.erase("model.layers.1.mlp.down_proj.scales"); h.erase("model.layers.1.mlp.down_proj.weight"); }, "model.layers.1.mlp.down_proj.weight"},
      {"scales without biases", [&](auto& h) { h.erase("model.layers.0.mlp.down_proj.biases"); }, "biases"},
      {"unknown dtype", [&](auto& h) { h[t]["dtype"] = "C64"; }, "dtype"},
  };
  for (const Case& c : cases) {
    std::string d = fresh_dir("lying");
    edit_header(d, c.edit);
    std::string err = load_error(d);
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.what << ": " << err;
  }
}

TEST(ModelLoad, BadConfigsNameTheField) {
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    const char* expect;
  };
  std::vector<Case> cases = {
      {[](auto& c) { c["architectures"] = {"MambaForCausalLM"}; c["model_type"] = "mamba"; }, "MambaForCausalLM"},
      {[](auto& c) { c.erase("hidden_size"); }, "hidden_size"},
      {[](auto& c) { c["num_key_value_heads"] = 3; }, "num_key_value_heads"},
      {[](auto& c) { c["hidden_size"] = "big"; }, "hidden_size"},
      {[](auto& c) { c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4}}; }, "yarn"},
      {[](auto& c) { c["rope_scaling"] = {{"type", "longrope"}, {"short_factor", {1, 2}}, {"long_factor", {1, 2}}}; }, "short_factor"},
      {[](auto& c) { c["quantization"] = {{"bits", 3}, {"group_size", 64}}; c.erase("quantization_config"); }, "bits"},
      {[](auto& c) { c["hidden_act"] = "gelu"; }, "hidden_act"},
      {[](auto& c) { c["vocab_size"] = -5; }, "vocab_size"},
      {[](auto& c) { c["vocab_size"] = 40000; }, "shape"},  // disagrees with the weights
  };
  for (const Case& k : cases) {
    std::string d = fresh_dir("config");
    auto c = nlohmann::json::parse(slurp(d + "/config.json"));
    k.edit(c);
    put(d + "/config.json", c.dump());
    std::string err = load_error(d);
    EXPECT_NE(err.find(k.expect), std::string::npos) << k.expect << ": " << err;
  }
  std::string d = fresh_dir("notjson");
  put(d + "/config.json", "{\"hidden_size\": 12");
  EXPECT_NE(load_error(d).find("config.json"), std::string::npos);
}

// RoPE's cos/sin come from tables grown on demand below RopeTables::kCached: whatever the order
// positions are asked in, and past the tables, the values are those of the formula (rope.h).
TEST(RopeTables, CachedValuesAreTheFormulas) {
  RopeConfig r;
  r.theta = 10000.0;
  r.rot_dim = 24;
  r.longrope = true;
  for (int i = 0; i < 12; ++i) {
    r.short_factor.push_back(1.0 + 0.1 * i);
    r.long_factor.push_back(2.0 + 0.5 * i);
  }
  r.attention_factor = 1.19;
  r.linear_factor = 1.5;
  RopeTables t(r);
  const int64_t positions[] = {700, 0, 1, 255, 256, 257, 40000, 5000, 699, RopeTables::kCached - 1, RopeTables::kCached};
  for (bool lg : {false, true})
    for (int64_t pos : positions) {
      float c[12], s[12];
      t.fill(pos, lg, c, s);
      for (int i = 0; i < 12; ++i) {
        const double inv = 1.0 / ((lg ? r.long_factor : r.short_factor)[size_t(i)] * std::pow(r.theta, 2.0 * i / 24));
        const double a = double(pos) / r.linear_factor * inv;
        EXPECT_EQ(c[i], float(std::cos(a) * r.attention_factor)) << pos << " " << i;
        EXPECT_EQ(s[i], float(std::sin(a) * r.attention_factor)) << pos << " " << i;
      }
    }
}

}  // namespace
}  // namespace pensieve
