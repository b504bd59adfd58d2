// The model store without a network: repo ids, the environment, the HF cache layout as
// huggingface_hub writes it (list, rm, reuse), model directories, --model resolution, progress.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include "models/store/hash.h"
#include "models/store/hf_cache.h"
#include "models/store/model_dir.h"
#include "models/store/progress.h"
#include "models/store/resolve.h"
#include "store_test_util.h"

namespace pensieve {
namespace {

namespace fs = std::filesystem;
using testing::kData;
using testing::read_file;
using testing::TempDir;
using testing::write_file;

const std::string kCommit = "fedcba9876543210fedcba9876543210fedcba98";

TEST(RepoRef, ParsesAndValidates) {
  auto r = parse_repo_ref("mlx-community/Phi-3-mini-4k-instruct-4bit");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->repo, "mlx-community/Phi-3-mini-4k-instruct-4bit");
  EXPECT_EQ(r->revision, "main");
  auto pr = parse_repo_ref("org/name@refs/pr/1");
  ASSERT_TRUE(pr.ok()) << pr.error();
  EXPECT_EQ(pr->revision, "refs/pr/1");
  EXPECT_EQ(pr->str(), "org/name@refs/pr/1");
  EXPECT_TRUE(parse_repo_ref("gpt2").ok());
  EXPECT_TRUE(parse_repo_ref("org/name@" + kCommit).ok());
  for (const char* bad : {"", "/name", "org/", "a/b/c", "org/na--me", "org/../x", "org/.hidden", "org/name-",
                          "org/na me", "org/name@", "org/name@../../x", "org/name@/abs", "org/name@a b"})
    EXPECT_FALSE(parse_repo_ref(bad).ok()) << bad;
  EXPECT_TRUE(is_commit_hash(kCommit));
  EXPECT_FALSE(is_commit_hash("main"));
  EXPECT_FALSE(is_commit_hash("FEDCBA9876543210FEDCBA9876543210FEDCBA98"));
  EXPECT_EQ(repo_folder_name("org/name"), "models--org--name");
  EXPECT_EQ(repo_folder_name("gpt2"), "models--gpt2");
}

// Sets environment variables for one test and restores them after.
class ScopedEnv {
 public:
  void set(const char* name, const char* value) {
    if (!saved_.count(name)) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    for (auto& [name, value] : saved_) {
      if (value) setenv(name.c_str(), value->c_str(), 1);
      else unsetenv(name.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

TEST(HubConfig, ReadsTheHuggingFaceEnvironment) {
  TempDir home;
  ScopedEnv env;
  for (const char* v : {"HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE",
                        "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE"})
    env.set(v, nullptr);
  env.set("HOME", home.path().c_str());
  HubConfig c = HubConfig::from_env();
  EXPECT_EQ(c.endpoint, "https://huggingface.co");
  EXPECT_EQ(c.cache_dir, home.path() + "/.cache/huggingface/hub");
  EXPECT_EQ(c.token, "");
  EXPECT_FALSE(c.offline);

  env.set("XDG_CACHE_HOME", (home.path() + "/xdg").c_str());
  EXPECT_EQ(HubConfig::from_env().cache_dir, home.path() + "/xdg/huggingface/hub");
  env.set("HF_HOME", "~/hf");
  write_file(home.path() + "/hf/token", "hf_from_file\n");  // what `huggingface-cli login` writes
  c = HubConfig::from_env();
  EXPECT_EQ(c.cache_dir, home.path() + "/hf/hub");
  EXPECT_EQ(c.token, "hf_from_file");
  env.set("HF_HUB_CACHE", "/somewhere/else");
  env.set("HF_TOKEN", "hf_env");
  env.set("HF_ENDPOINT", "https://hf-mirror.example/");
  env.set("HF_HUB_OFFLINE", "1");
  c = HubConfig::from_env();
  EXPECT_EQ(c.cache_dir, "/somewhere/else");
  EXPECT_EQ(c.token, "hf_env");
  EXPECT_EQ(c.endpoint, "https://hf-mirror.example");
  EXPECT_TRUE(c.offline);
}

// Writes a repo into `cache` the way huggingface_hub does: blobs named by sha256 / git sha1,
// relative snapshot symlinks, refs/main.
void write_hf_cache_repo(const std::string& cache, const std::string& repo, const std::string& src_dir,
                         const std::vector<std::string>& files) {
  const std::string root = cache + "/" + repo_folder_name(repo);
  for (const std::string& f : files) {
    std::string data = read_file(src_dir + "/" + f);
    std::string etag = f.size() > 12 && f.substr(f.size() - 12) == ".safetensors" ? sha256_hex(data) : git_blob_sha1_hex(data);
    write_file(root + "/blobs/" + etag, data);
    fs::create_directories(root + "/snapshots/" + kCommit);
    fs::create_symlink("../../blobs/" + etag, root + "/snapshots/" + kCommit + "/" + f);
  }
  write_file(root + "/refs/main", kCommit);
}

TEST(Cache, ListAndRemove) {
  TempDir cache;
  write_hf_cache_repo(cache.path(), "mlx-community/tiny-4bit", kData + "/models/phi3-tiny", {"config.json", "model.safetensors"});
  write_hf_cache_repo(cache.path(), "org/tiny-f16", kData + "/models/phi3-tiny-f16-v1024", {"config.json", "model.safetensors"});
  write_hf_cache_repo(cache.path(), "org/partial", kData + "/models/phi3-tiny", {"config.json"});
  fs::create_directories(cache / "datasets--org--data/blobs");  // not a model: skipped

  auto repos = scan_cache(cache.path());
  ASSERT_TRUE(repos.ok()) << repos.error();
  ASSERT_EQ(repos->size(), 3u);
  const CachedRepo& q = (*repos)[0];
  EXPECT_EQ(q.repo, "mlx-community/tiny-4bit");
  EXPECT_EQ(q.format, "MLX 4-bit (group 64)");
  EXPECT_TRUE(q.complete);
  EXPECT_EQ(q.size_bytes, fs::file_size(kData + "/models/phi3-tiny/model.safetensors") +
                              fs::file_size(kData + "/models/phi3-tiny/config.json"));
  ASSERT_EQ(q.refs.size(), 1u);
  EXPECT_EQ(q.refs[0], std::make_pair(std::string("main"), kCommit));
  EXPECT_EQ(q.snapshots, std::vector<std::string>{kCommit});
  EXPECT_EQ((*repos)[1].repo, "org/partial");
  EXPECT_FALSE((*repos)[1].complete);
  EXPECT_EQ((*repos)[2].format, "f16 safetensors");

  auto freed = remove_cached_repo(cache.path(), "org/tiny-f16");
  ASSERT_TRUE(freed.ok()) << freed.error();
  EXPECT_GT(*freed, 1000000u);
  EXPECT_FALSE(fs::exists(cache / "models--org--tiny-f16"));
  auto again = remove_cached_repo(cache.path(), "org/tiny-f16");
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().find("not in the cache"), std::string::npos) << again.error();
  EXPECT_FALSE(remove_cached_repo(cache.path(), "../escape").ok());

  auto none = scan_cache(cache / "does-not-exist");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(Cache, RefsAndSnapshots) {
  TempDir cache;
  RepoRef main{"org/m", "main"};
  EXPECT_FALSE(cached_commit(cache.path(), main).ok());
  ASSERT_TRUE(write_ref(cache.path(), main, kCommit).ok());
  EXPECT_EQ(read_file(cache / "models--org--m/refs/main"), kCommit);
  ASSERT_TRUE(write_ref(cache.path(), {"org/m", "refs/pr/3"}, kCommit).ok());
  EXPECT_EQ(read_file(cache / "models--org--m/refs/refs/pr/3"), kCommit);
  auto c = cached_commit(cache.path(), main);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(*c, kCommit);
  EXPECT_FALSE(cached_snapshot(cache.path(), main).ok());  // the ref exists, the snapshot not
  write_file(cache / "models--org--m/refs/main", "garbage");
  EXPECT_FALSE(cached_commit(cache.path(), main).ok());
}

TEST(ModelDir, ChecksWeightsAndIndex) {
  TempDir d;
  EXPECT_FALSE(check_model_dir(d.path()).ok());  // no config
  write_file(d / "config.json", "{\"model_type\": \"phi3\"}");
  Status st = check_model_dir(d.path());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().find("no *.safetensors"), std::string::npos) << st.error();
  write_file(d / "model.safetensors.index.json", "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\"}}");
  st = check_model_dir(d.path());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().find("model-00001-of-00002.safetensors is missing"), std::string::npos) << st.error();
  write_file(d / "model.safetensors.index.json", "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}");
  EXPECT_FALSE(check_model_dir(d.path()).ok());
  write_file(d / "model.safetensors.index.json", "{\"weight_map\": ");
  st = check_model_dir(d.path());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().find("not valid JSON"), std::string::npos) << st.error();
  EXPECT_TRUE(check_model_dir(kData + "/models/phi3-tiny").ok());
  EXPECT_EQ(describe_model_format(kData + "/models/phi3-tiny"), "MLX 4-bit (group 64)");
  EXPECT_EQ(describe_model_format(kData + "/models/phi3-tiny-f16-v1024"), "f16 safetensors");
}

TEST(Resolve, DirectoryDemoAndCachedRepo) {
  TempDir cache;
  ResolveOptions ro;
  ro.pull.hub.cache_dir = cache.path();
  ro.pull.hub.endpoint = "http://127.0.0.1:1";  // never reached in this test
  ro.pull.hub.offline = false;

  const std::string dir = kData + "/models/phi3-tiny";
  auto r = resolve_model(dir, ro);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(*r, dir);

  EXPECT_FALSE(resolve_model("demo", ro).ok());  // no demo directory configured
  ro.demo_dir = dir;
  auto demo = resolve_model("demo", ro);
  ASSERT_TRUE(demo.ok()) << demo.error();
  EXPECT_EQ(*demo, dir);

  // Fetched earlier by huggingface_hub: used as is, nothing asked of the network.
  write_hf_cache_repo(cache.path(), "mlx-community/tiny-4bit", dir, {"config.json", "model.safetensors"});
  auto cached = resolve_model("mlx-community/tiny-4bit", ro);
  ASSERT_TRUE(cached.ok()) << cached.error();
  EXPECT_EQ(*cached, cache / "models--mlx-community--tiny-4bit/snapshots/" + kCommit);
  auto by_commit = resolve_model("mlx-community/tiny-4bit@" + kCommit, ro);
  ASSERT_TRUE(by_commit.ok()) << by_commit.error();

  ro.allow_download = false;
  auto missing = resolve_model("org/missing", ro);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("pensieve pull org/missing"), std::string::npos) << missing.error();
  ro.allow_download = true;
  ro.pull.hub.offline = true;
  missing = resolve_model("org/missing", ro);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("HF_HUB_OFFLINE"), std::string::npos) << missing.error();

  auto no_dir = resolve_model("./no/such/dir", ro);
  ASSERT_FALSE(no_dir.ok());
  EXPECT_NE(no_dir.error().find("no such directory"), std::string::npos) << no_dir.error();
  auto junk = resolve_model("not a model", ro);
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.error().find("ORG/NAME"), std::string::npos) << junk.error();
  EXPECT_FALSE(resolve_model("phi3", ro).ok());  // neither a directory nor ORG/NAME
  EXPECT_FALSE(resolve_model(kData + "/tokenizers/phi3", ro).ok());  // a directory, but no model
}

TEST(Progress, TerminalRendering) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* mem = open_memstream(&buf, &len);
  {
    TerminalProgress p(mem, /*tty=*/true);
    p.begin("pull org/x", 3000, 2, 0);
    p.begin_item("a.safetensors", 1000, 0);
    p.item_progress(500);
    p.item_progress(1000);
    p.end_item(true);
    p.begin_item("b.safetensors", 2000, 500);
    p.item_progress(2000);
    p.end_item(true);
    p.end(true);
  }
  std::fclose(mem);
  std::string out(buf, len);
  std::free(buf);
  EXPECT_NE(out.find("\r\x1b[2K"), std::string::npos);
  EXPECT_NE(out.find("[1/2] a.safetensors"), std::string::npos) << out;
  EXPECT_NE(out.find("total"), std::string::npos) << out;
  EXPECT_NE(out.find("resuming at 500 B"), std::string::npos) << out;
  EXPECT_NE(out.find("pull org/x: b.safetensors 2.00 kB"), std::string::npos) << out;

  mem = open_memstream(&buf, &len);
  {
    TerminalProgress p(mem, /*tty=*/false, /*plain_interval_s=*/0.0);
    p.begin("quantize", 100, 1, 0);
    p.begin_item("model.safetensors", 100, 0);
    p.item_progress(50);
    p.end_item(true);
  }
  std::fclose(mem);
  out.assign(buf, len);
  std::free(buf);
  EXPECT_EQ(out.find('\r'), std::string::npos) << "no carriage returns in logs";
  EXPECT_NE(out.find("quantize: model.safetensors  50%"), std::string::npos) << out;
  EXPECT_EQ(format_bytes(4806456), "4.81 MB");
  EXPECT_EQ(format_duration(75), "1m15s");
}

}  // namespace
}  // namespace pensieve
