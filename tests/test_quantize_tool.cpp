// `pensieve quantize`: the converter reproduces the MLX fixture byte for byte, writes config.json
// as mlx-lm does, shards and reads shards, handles the options and refuses bad input clearly.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "models/store/model_dir.h"
#include "models/store/quantize_model.h"
#include "quant/quantize.h"
#include "store_test_util.h"
#include "tensor/safetensors.h"
#include "tensor/thread_pool.h"

namespace pensieve {
namespace {

namespace fs = std::filesystem;
using testing::kData;
using testing::read_file;
using testing::TempDir;
using testing::write_file;

const std::string kF16 = kData + "/models/phi3-tiny-f16-v1024";
const std::string kMlx = kData + "/models/phi3-tiny";

SafetensorsFile open_st(const std::string& path) {
  auto f = SafetensorsFile::open(path);
  EXPECT_TRUE(f.ok()) << (f.ok() ? "" : f.error());
  return std::move(f).value();
}

Result<QuantizeReport> quantize_quiet(const std::string& src, const std::string& out, int bits = 4, int group = 64,
                                      uint64_t max_shard = 5ull << 30) {
  QuantizeOptions opt;
  opt.bits = bits;
  opt.group_size = group;
  opt.max_shard_bytes = max_shard;
  opt.threads = 3;  // an odd split of rows: results must not depend on it
  return quantize_model(src, out, opt);
}

// Every tensor of all weight files of a model dir: name -> (file, entry).
struct Tensors {
  std::vector<SafetensorsFile> files;
  std::map<std::string, std::pair<const SafetensorsFile*, const SafetensorsEntry*>> by_name;
};
Tensors load_all(const std::string& dir) {
  Tensors t;
  auto w = model_weight_files(dir);
  EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.error());
  for (const std::string& f : w->files) t.files.push_back(open_st(dir + "/" + f));
  for (const auto& f : t.files)
    for (const auto& e : f.entries()) t.by_name[e.name] = {&f, &e};
  return t;
}

TEST(QuantizeTool, ReproducesTheMlxFixtureExactly) {
  TempDir tmp;
  const std::string out = tmp / "phi3-tiny-q4";
  auto report = quantize_quiet(kF16, out);
  ASSERT_TRUE(report.ok()) << report.error();
  EXPECT_EQ(report->quantized, 10);  // embed, lm_head, 4 matrices x 2 layers
  EXPECT_EQ(report->copied, 5);      // 2 norms x 2 layers + final norm
  EXPECT_EQ(report->files, std::vector<std::string>{"model.safetensors"});

  SafetensorsFile got = open_st(out + "/model.safetensors");
  SafetensorsFile ref = open_st(kMlx + "/model.safetensors");
  EXPECT_EQ(got.metadata().at("format"), "mlx");
  ASSERT_EQ(got.entries().size(), ref.entries().size());
  for (const SafetensorsEntry& e : ref.entries()) {
    const SafetensorsEntry* g = got.find(e.name);
    ASSERT_NE(g, nullptr) << e.name;
    EXPECT_EQ(g->dtype_name, e.dtype_name) << e.name;
    ASSERT_EQ(g->shape.size(), e.shape.size()) << e.name;
    // embed_tokens / lm_head: the f16 file holds the first 1024 of the 32064 rows.
    const bool vocab = e.name.rfind("model.embed_tokens.", 0) == 0 || e.name.rfind("lm_head.", 0) == 0;
    EXPECT_EQ(g->shape[0], vocab ? 1024 : e.shape[0]) << e.name;
    if (e.shape.size() == 2) {
      EXPECT_EQ(g->shape[1], e.shape[1]) << e.name;
    }
    ASSERT_LE(g->nbytes, e.nbytes);
    EXPECT_EQ(0, std::memcmp(got.data(*g), ref.data(e), g->nbytes)) << e.name << " differs";
  }
  // config.json: the source config plus the quantization, formatted as the MLX fixture was
  // (mlx_lm.utils.save_config): only eos/pad/vocab differ between the two models.
  std::string expected = read_file(kMlx + "/config.json");
  auto replace = [&](const std::string& a, const std::string& b) {
    size_t at = expected.find(a);
    ASSERT_NE(at, std::string::npos) << a;
    expected.replace(at, a.size(), b);
  };
  replace("\"eos_token_id\": 32000,", "\"eos_token_id\": 2,");
  replace("    \"pad_token_id\": 32000,\n", "");
  replace("\"vocab_size\": 32064", "\"vocab_size\": 1024");
  EXPECT_EQ(read_file(out + "/config.json"), expected);
  EXPECT_EQ(describe_model_format(out), "MLX 4-bit (group 64)");
  EXPECT_TRUE(check_model_dir(out).ok());
}

TEST(QuantizeTool, ConfigJsonAsMlxLmWritesIt) {
  auto c = quantized_config_json(
      "{\"z\": 1, \"_name_or_path\": \"x\", \"a\": {\"y\": 1.0, \"b\": [1e-05, 10000.0]}, \"name\": \"caf\\u00e9\"}", 8, 32);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(*c,
            "{\n"
            "    \"a\": {\n"
            "        \"y\": 1.0,\n"
            "        \"b\": [\n"
            "            1e-05,\n"
            "            10000.0\n"
            "        ]\n"
            "    },\n"
            "    \"name\": \"caf\\u00e9\",\n"
            "    \"quantization\": {\n"
            "        \"group_size\": 32,\n"
            "        \"bits\": 8\n"
            "    },\n"
            "    \"quantization_config\": {\n"
            "        \"group_size\": 32,\n"
            "        \"bits\": 8\n"
            "    },\n"
            "    \"z\": 1\n"
            "}");
  EXPECT_FALSE(quantized_config_json("[1, 2]", 4, 64).ok());
}

TEST(QuantizeTool, CopiesTokenizerFilesThroughSymlinks) {
  TempDir tmp;
  // A source laid out like an HF cache snapshot: every file a symlink.
  const std::string src = tmp / "src";
  fs::create_directories(src);
  for (const char* f : {"config.json", "model.safetensors"}) fs::create_symlink(kF16 + "/" + f, src + "/" + f);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::create_symlink(kData + "/tokenizers/phi3/" + f, src + "/" + f);
  write_file(src + "/README.md", "not copied");
  auto report = quantize_quiet(src, tmp / "out");
  ASSERT_TRUE(report.ok()) << report.error();
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_FALSE(fs::is_symlink(tmp / "out/" + f)) << f;
    EXPECT_TRUE(read_file(tmp / "out/" + f) == read_file(kData + "/tokenizers/phi3/" + f)) << f;
  }
  EXPECT_FALSE(fs::exists(tmp / "out/README.md"));
}

// Other bit widths and group sizes agree with the in-memory reference quantizer.
TEST(QuantizeTool, BitsAndGroupSizesMatchTheReferenceQuantizer) {
  SafetensorsFile src = open_st(kF16 + "/model.safetensors");
  for (auto [bits, group] : {std::pair{8, 32}, std::pair{4, 128}, std::pair{8, 64}}) {
    TempDir tmp;
    auto report = quantize_quiet(kF16, tmp / "out", bits, group);
    ASSERT_TRUE(report.ok()) << report.error();
    SafetensorsFile got = open_st(tmp / "out/model.safetensors");
    int checked = 0;
    for (const SafetensorsEntry& e : src.entries()) {
      if (e.shape.size() != 2) continue;
      const std::string m = e.name.substr(0, e.name.size() - 7);
      const int64_t rows = e.shape[0], cols = e.shape[1];
      auto q = quantize(src.data(e), DType::f16, rows, cols, bits, group, DType::f16);
      ASSERT_TRUE(q.ok()) << q.error();
      const SafetensorsEntry* w = got.find(m + ".weight");
      const SafetensorsEntry* s = got.find(m + ".scales");
      const SafetensorsEntry* b = got.find(m + ".biases");
      ASSERT_TRUE(w && s && b) << m;
      EXPECT_EQ(w->shape, (std::vector<int64_t>{rows, cols * bits / 32})) << m;
      EXPECT_EQ(s->shape, (std::vector<int64_t>{rows, cols / group})) << m;
      EXPECT_EQ(w->dtype_name, "U32");
      EXPECT_EQ(s->dtype_name, "F16");
      ASSERT_EQ(w->nbytes, q->packed.size());
      EXPECT_EQ(0, std::memcmp(got.data(*w), q->packed.data(), w->nbytes)) << m;
      EXPECT_EQ(0, std::memcmp(got.data(*s), q->scales.data(), s->nbytes)) << m;
      EXPECT_EQ(0, std::memcmp(got.data(*b), q->biases.data(), b->nbytes)) << m;
      ++checked;
    }
    EXPECT_EQ(checked, 10) << "bits " << bits << " group " << group;
    auto cfg = nlohmann::json::parse(read_file(tmp / "out/config.json"));
    EXPECT_EQ(cfg["quantization"]["bits"], bits);
    EXPECT_EQ(cfg["quantization_config"]["group_size"], group);
  }
}

// Writes `dir` as a copy of the f16 fixture converted to `dtype` ("F32" or "BF16"), optionally
// split into two shards with an index.
void write_f16_fixture_as(const std::string& dir, const std::string& dtype, bool sharded) {
  SafetensorsFile src = open_st(kF16 + "/model.safetensors");
  fs::create_directories(dir);
  fs::copy_file(kF16 + "/config.json", dir + "/config.json");
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<SafetensorsWriteEntry> a, b;
  nlohmann::json wm = nlohmann::json::object();
  for (const SafetensorsEntry& e : src.entries()) {
    const int64_t n = int64_t(e.nbytes / 2);
    std::vector<uint8_t> buf;
    if (dtype == "F16") {
      buf.assign(src.data(e), src.data(e) + e.nbytes);
    } else {
      buf.resize(size_t(n) * (dtype == "F32" ? 4 : 2));
      for (int64_t i = 0; i < n; ++i) {
        float v = load_as_f32(src.data(e), DType::f16, i);
        if (dtype == "F32") std::memcpy(buf.data() + 4 * i, &v, 4);
        else reinterpret_cast<uint16_t*>(buf.data())[i] = f32_to_bf16(v);
      }
    }
    bufs.push_back(std::move(buf));
    const bool second = sharded && e.name.find("layers.1.") != std::string::npos;
    (second ? b : a).push_back({e.name, dtype, e.shape, bufs.back().data(), bufs.back().size()});
    wm[e.name] = sharded ? (second ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors")
                         : "model.safetensors";
  }
  if (!sharded) {
    ASSERT_TRUE(write_safetensors(dir + "/model.safetensors", a, {{"format", "pt"}}).ok());
    return;
  }
  ASSERT_TRUE(write_safetensors(dir + "/model-00001-of-00002.safetensors", a, {{"format", "pt"}}).ok());
  ASSERT_TRUE(write_safetensors(dir + "/model-00002-of-00002.safetensors", b, {{"format", "pt"}}).ok());
  write_file(dir + "/model.safetensors.index.json", nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", wm}}.dump());
}

TEST(QuantizeTool, ShardedInputGivesTheSameTensors) {
  TempDir tmp;
  write_f16_fixture_as(tmp / "sharded", "F16", true);
  ASSERT_TRUE(quantize_quiet(tmp / "sharded", tmp / "a").ok());
  ASSERT_TRUE(quantize_quiet(kF16, tmp / "b").ok());
  Tensors a = load_all(tmp / "a"), b = load_all(tmp / "b");
  ASSERT_EQ(a.by_name.size(), b.by_name.size());
  for (const auto& [name, fe] : b.by_name) {
    auto it = a.by_name.find(name);
    ASSERT_NE(it, a.by_name.end()) << name;
    ASSERT_EQ(it->second.second->nbytes, fe.second->nbytes) << name;
    EXPECT_EQ(0, std::memcmp(it->second.first->data(*it->second.second), fe.first->data(*fe.second), fe.second->nbytes)) << name;
  }
}

TEST(QuantizeTool, ShardsLargeOutputsWithAnIndex) {
  TempDir tmp;
  auto report = quantize_quiet(kF16, tmp / "out", 4, 64, /*max_shard=*/100000);
  ASSERT_TRUE(report.ok()) << report.error();
  ASSERT_GT(report->files.size(), 2u);
  EXPECT_EQ(report->files[0], "model-00001-of-0000" + std::to_string(report->files.size()) + ".safetensors");
  EXPECT_FALSE(fs::exists(tmp / "out/model.safetensors"));
  auto index = nlohmann::json::parse(read_file(tmp / "out/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], report->bytes_out);
  EXPECT_EQ(index["weight_map"].size(), 10u * 3 + 5);
  EXPECT_EQ(index["weight_map"]["model.layers.1.mlp.down_proj.scales"],
            index["weight_map"]["model.layers.1.mlp.down_proj.weight"]);  // a module stays in one shard
  EXPECT_TRUE(check_model_dir(tmp / "out").ok());
  // Same tensors as the single-file output.
  ASSERT_TRUE(quantize_quiet(kF16, tmp / "single").ok());
  Tensors a = load_all(tmp / "out"), b = load_all(tmp / "single");
  ASSERT_EQ(a.by_name.size(), b.by_name.size());
  for (const auto& [name, fe] : b.by_name)
    EXPECT_EQ(0, std::memcmp(a.by_name.at(name).first->data(*a.by_name.at(name).second), fe.first->data(*fe.second),
                             fe.second->nbytes)) << name;
}

TEST(QuantizeTool, F32AndBf16InputsKeepTheirDtypeForScales) {
  TempDir tmp;
  write_f16_fixture_as(tmp / "f32", "F32", false);
  write_f16_fixture_as(tmp / "bf16", "BF16", false);
  ASSERT_TRUE(quantize_quiet(tmp / "f32", tmp / "q32").ok());
  ASSERT_TRUE(quantize_quiet(tmp / "bf16", tmp / "qbf").ok());
  SafetensorsFile q32 = open_st(tmp / "q32/model.safetensors");
  SafetensorsFile qbf = open_st(tmp / "qbf/model.safetensors");
  SafetensorsFile ref = open_st(kMlx + "/model.safetensors");
  const std::string m = "model.layers.0.self_attn.qkv_proj";
  EXPECT_EQ(q32.find(m + ".scales")->dtype_name, "F32");
  EXPECT_EQ(q32.find("model.norm.weight")->dtype_name, "F32");
  EXPECT_EQ(qbf.find(m + ".biases")->dtype_name, "BF16");
  // f16 -> f32 is exact, so the f32 model's q values are the fixture's.
  const SafetensorsEntry* w = q32.find(m + ".weight");
  EXPECT_EQ(0, std::memcmp(q32.data(*w), ref.data(*ref.find(m + ".weight")), w->nbytes));
}

TEST(QuantizeTool, DropsBuffersAndTiedHead) {
  TempDir tmp;
  const std::string src = tmp / "src";
  std::vector<float> emb(128 * 64, 0.25f), head(128 * 64, 0.5f), odd(8 * 96, 1.0f), inv(16, 1.0f), norm(64, 1.0f);
  for (size_t i = 0; i < emb.size(); ++i) emb[i] = float(i % 17) * 0.1f;
  fs::create_directories(src);
  ASSERT_TRUE(write_safetensors(src + "/model.safetensors",
                                {{"model.embed_tokens.weight", "F32", {128, 64}, emb.data(), emb.size() * 4},
                                 {"lm_head.weight", "F32", {128, 64}, head.data(), head.size() * 4},
                                 {"model.layers.0.odd.weight", "F32", {8, 96}, odd.data(), odd.size() * 4},
                                 {"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {16}, inv.data(), inv.size() * 4},
                                 {"model.norm.weight", "F32", {64}, norm.data(), norm.size() * 4}},
                                {}).ok());
  write_file(src + "/config.json", "{\"tie_word_embeddings\": true, \"_name_or_path\": \"x\"}");
  auto report = quantize_quiet(src, tmp / "out");
  ASSERT_TRUE(report.ok()) << report.error();
  EXPECT_EQ(report->quantized, 1);
  EXPECT_EQ(report->copied, 2);   // the 96-column matrix (96 % 64 != 0) and the norm
  EXPECT_EQ(report->dropped, 2);  // lm_head (tied) and inv_freq
  SafetensorsFile got = open_st(tmp / "out/model.safetensors");
  EXPECT_EQ(got.find("lm_head.weight"), nullptr);
  EXPECT_EQ(got.find("model.layers.0.self_attn.rotary_emb.inv_freq"), nullptr);
  EXPECT_EQ(got.find("model.layers.0.odd.weight")->dtype_name, "F32");
  EXPECT_NE(got.find("model.embed_tokens.scales"), nullptr);
  EXPECT_EQ(read_file(tmp / "out/config.json").find("_name_or_path"), std::string::npos);
}

// A failed conversion says why and leaves no output (nor a temporary directory) behind.
TEST(QuantizeTool, BadInputIsAClearError) {
  TempDir tmp;
  auto expect_error = [&](const std::string& src, const std::string& needle, int bits = 4, int group = 64) {
    const std::string out = tmp / "out";
    auto r = quantize_quiet(src, out, bits, group);
    ASSERT_FALSE(r.ok()) << src;
    EXPECT_NE(r.error().find(needle), std::string::npos) << r.error();
    EXPECT_FALSE(fs::exists(out)) << r.error();
    for (const auto& e : fs::directory_iterator(tmp.path()))
      EXPECT_EQ(e.path().filename().string().find("out.tmp"), std::string::npos) << "left " << e.path();
  };
  expect_error(tmp / "missing", "is not a directory");
  expect_error(kF16, "--bits 3", 3);
  expect_error(kF16, "--group-size 48", 4, 48);
  expect_error(kMlx, "already quantized");
  expect_error(kData + "/tokenizers/phi3", "no config.json");

  const std::string bad = tmp / "bad";
  fs::create_directories(bad);
  write_file(bad + "/config.json", "{not json");
  expect_error(bad, "not a JSON object");
  write_file(bad + "/config.json", "{}");
  expect_error(bad, "no *.safetensors");
  write_file(bad + "/model.safetensors.index.json", "{\"weight_map\": {\"x.weight\": \"model-00001-of-00002.safetensors\"}}");
  expect_error(bad, "model-00001-of-00002.safetensors, which is missing");
  fs::create_symlink(kF16 + "/model.safetensors", bad + "/model-00001-of-00002.safetensors");
  expect_error(bad, "puts \"x.weight\" in model-00001-of-00002.safetensors, which has no such tensor");
  write_file(bad + "/model.safetensors.index.json", "{\"weight_map\": 5}");
  expect_error(bad, "weight_map");
  write_file(bad + "/model.safetensors.index.json", "{\"weight_map\": {\"x\": \"model-0000");
  expect_error(bad, "not valid JSON");
  fs::remove(bad + "/model.safetensors.index.json");
  fs::remove(bad + "/model-00001-of-00002.safetensors");
  write_file(bad + "/model.safetensors", "garbage that is not safetensors");
  expect_error(bad, "safetensors");

  // An existing output is never overwritten.
  fs::create_directories(tmp / "exists");
  auto r = quantize_quiet(kF16, tmp / "exists");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("already exists"), std::string::npos) << r.error();
}

TEST(QuantizeTool, Cli) {
  TempDir tmp;
  const std::string bin = PENSIEVE_BIN;
  auto ok = testing::run_command(bin + " quantize --model " + kF16 + " --out " + (tmp / "q") + " --bits 8 --group-size 32");
  ASSERT_EQ(ok.status, 0) << ok.out;
  EXPECT_NE(ok.out.find("10 modules to 8-bit (group 32)"), std::string::npos) << ok.out;
  EXPECT_EQ(describe_model_format(tmp / "q"), "MLX 8-bit (group 32)");
  auto bad_bits = testing::run_command(bin + " quantize --model " + kF16 + " --out " + (tmp / "r") + " --bits 3");
  EXPECT_EQ(bad_bits.status, 1);
  EXPECT_NE(bad_bits.out.find("--bits 3 is not supported"), std::string::npos) << bad_bits.out;
  auto usage = testing::run_command(bin + " quantize --model " + kF16);
  EXPECT_EQ(usage.status, 2) << usage.out;
  auto offline = testing::run_command("env HF_HUB_OFFLINE=1 HF_HUB_CACHE=" + (tmp / "cache") + " " + bin +
                                      " quantize --model org/not-cached --out " + (tmp / "s"));
  EXPECT_EQ(offline.status, 1);
  EXPECT_NE(offline.out.find("HF_HUB_OFFLINE"), std::string::npos) << offline.out;
}

// Regression: a pool used right after construction, before its workers got scheduled, deadlocked.
TEST(ThreadPoolRegression, JobRightAfterConstructionRuns) {
  for (int i = 0; i < 200; ++i) {
    ThreadPool pool(3);
    std::atomic<int64_t> sum{0};
    pool.parallel_for(64, 1, [&](int64_t b, int64_t e) { sum += e - b; });
    ASSERT_EQ(sum, 64);
  }
}

}  // namespace
}  // namespace pensieve
