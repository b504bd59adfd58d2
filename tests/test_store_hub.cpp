// `pensieve pull` against a fake hub on 127.0.0.1 (tests/fake_hub.h): the HF cache layout,
// resume after a dropped connection, digest checks, hub errors, offline behaviour, cache reuse,
// and the pull / list / rm commands end to end.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "fake_hub.h"
#include "models/store/hash.h"
#include "models/store/hub.h"
#include "models/store/model_dir.h"
#include "models/store/resolve.h"
#include "store_test_util.h"

namespace pensieve {
namespace {

namespace fs = std::filesystem;
using testing::FakeFile;
using testing::FakeHub;
using testing::FakeRepo;
using testing::read_file;
using testing::TempDir;

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";
const std::string kData = PENSIEVE_TEST_DATA;

// Counts what pull reports, to check the progress protocol.
struct RecordingProgress : ProgressReporter {
  int begins = 0, items = 0, items_ok = 0, ends = 0;
  uint64_t last_done = 0;
  void begin(const std::string&, uint64_t, int, uint64_t) override { ++begins; }
  void begin_item(const std::string&, uint64_t, uint64_t) override { ++items; }
  void item_progress(uint64_t done) override { last_done = done; }
  void end_item(bool ok) override { items_ok += ok; }
  void end(bool) override { ++ends; }
};

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Loopback must never go through a proxy from the environment.
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    tiny_.id = "org/tiny";
    tiny_.commit = kCommit;
    tiny_.tags = {"v1.0"};
    tiny_.files = {
        {"config.json", read_file(kData + "/models/phi3-tiny/config.json")},
        {"model.safetensors", read_file(kData + "/models/phi3-tiny/model.safetensors"), /*lfs=*/true},
        {"tokenizer.json", read_file(kData + "/tokenizers/phi3/tokenizer.json")},
        {"tokenizer_config.json", read_file(kData + "/tokenizers/phi3/tokenizer_config.json")},
        {"README.md", "# tiny\n"},
        {"pytorch_model.bin", "not a checkpoint", true},
        {"onnx/config.json", "{}"},
    };
    hub_.add_repo(tiny_);
    opt_.hub.endpoint = hub_.endpoint();
    opt_.hub.cache_dir = cache_.path();
    opt_.hub.token = "";
    opt_.hub.offline = false;
    opt_.retry_wait_ms = 10;
  }

  std::string repo_dir() const { return cache_ / "models--org--tiny"; }
  std::string snapshot() const { return repo_dir() + "/snapshots/" + kCommit; }
  const FakeFile& file(const std::string& name) const {
    for (const FakeFile& f : tiny_.files)
      if (f.name == name) return f;
    throw std::runtime_error("no fixture file " + name);
  }
  std::string etag(const FakeFile& f) const { return f.lfs ? sha256_hex(f.data) : git_blob_sha1_hex(f.data); }

  FakeHub hub_;
  TempDir cache_;
  FakeRepo tiny_;
  PullOptions opt_;
};

const char* kWanted[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};

TEST_F(HubTest, PullWritesTheHfCacheLayout) {
  opt_.hub.token = "hf_secret";  // sent to the hub, never to the CDN
  RecordingProgress progress;
  opt_.progress = &progress;
  auto res = pull_model({"org/tiny", "main"}, opt_);
  ASSERT_TRUE(res.ok()) << res.error();
  EXPECT_EQ(res->commit, kCommit);
  EXPECT_EQ(res->snapshot_dir, snapshot());
  EXPECT_EQ(res->files_total, 4);
  EXPECT_EQ(res->files_downloaded, 4);
  EXPECT_EQ(read_file(repo_dir() + "/refs/main"), kCommit);  // no newline, as huggingface_hub writes it

  for (const char* name : kWanted) {
    const FakeFile& f = file(name);
    const std::string link = snapshot() + "/" + name;
    ASSERT_TRUE(fs::is_symlink(link)) << link;
    EXPECT_EQ(fs::read_symlink(link).string(), "../../blobs/" + etag(f)) << name;
    EXPECT_TRUE(read_file(link) == f.data) << name;
    EXPECT_TRUE(fs::is_regular_file(repo_dir() + "/blobs/" + etag(f))) << name;
  }
  for (const char* skipped : {"README.md", "pytorch_model.bin", "onnx"})
    EXPECT_FALSE(fs::exists(snapshot() + "/" + skipped)) << skipped;
  int blobs = 0;
  for (const auto& e : fs::directory_iterator(repo_dir() + "/blobs")) {
    EXPECT_NE(e.path().extension(), ".incomplete");
    ++blobs;
  }
  EXPECT_EQ(blobs, 4);
  EXPECT_EQ(hub_.cdn_auth_headers, 0) << "the token leaked to the CDN";
  EXPECT_TRUE(check_model_dir(snapshot()).ok());
  EXPECT_EQ(progress.begins, 1);
  EXPECT_EQ(progress.items, 4);
  EXPECT_EQ(progress.items_ok, 4);
  EXPECT_EQ(progress.ends, 1);
}

TEST_F(HubTest, SecondPullDownloadsNothing) {
  ASSERT_TRUE(pull_model({"org/tiny", "main"}, opt_).ok());
  const int gets = hub_.file_gets;
  auto again = pull_model({"org/tiny", "main"}, opt_);
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(again->files_downloaded, 0);
  EXPECT_EQ(again->bytes_downloaded, 0u);
  // The same commit by hash or by tag: still nothing to download; the tag gets its ref.
  auto by_hash = pull_model({"org/tiny", kCommit}, opt_);
  ASSERT_TRUE(by_hash.ok()) << by_hash.error();
  auto by_tag = pull_model({"org/tiny", "v1.0"}, opt_);
  ASSERT_TRUE(by_tag.ok()) << by_tag.error();
  EXPECT_EQ(hub_.file_gets, gets);
  EXPECT_FALSE(fs::exists(repo_dir() + "/refs/" + kCommit));
  EXPECT_EQ(read_file(repo_dir() + "/refs/v1.0"), kCommit);
}

TEST_F(HubTest, ReusesBlobsAlreadyInTheCache) {
  // A blob present (e.g. from another revision) is linked, not downloaded again.
  ASSERT_TRUE(pull_model({"org/tiny", "main"}, opt_).ok());
  fs::remove_all(snapshot());
  fs::remove(repo_dir() + "/refs/main");
  const int gets = hub_.file_gets;
  auto res = pull_model({"org/tiny", "main"}, opt_);
  ASSERT_TRUE(res.ok()) << res.error();
  EXPECT_EQ(hub_.file_gets, gets);
  EXPECT_TRUE(check_model_dir(snapshot()).ok());
}

TEST_F(HubTest, ResumesAfterADroppedConnection) {
  hub_.cut_after = 1000000;  // model.safetensors is 4.8 MB: cut once at 1 MB
  hub_.cut_times = 1;
  auto res = pull_model({"org/tiny", "main"}, opt_);
  ASSERT_TRUE(res.ok()) << res.error();
  auto ranges = hub_.ranges();
  EXPECT_NE(std::find(ranges.begin(), ranges.end(), "bytes=1000000-"), ranges.end()) << "no resumed request";
  EXPECT_TRUE(read_file(snapshot() + "/model.safetensors") == file("model.safetensors").data);
}

TEST_F(HubTest, InterruptedPullLeavesOnlyAnIncompleteFileAndResumesLater) {
  hub_.cut_after = 1000000;
  hub_.cut_times = 1000;  // every attempt drops
  opt_.max_retries = 1;
  auto res = pull_model({"org/tiny", "main"}, opt_);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().find("model.safetensors"), std::string::npos) << res.error();
  EXPECT_NE(res.error().find("run pull again"), std::string::npos) << res.error();
  const std::string blob = repo_dir() + "/blobs/" + etag(file("model.safetensors"));
  EXPECT_FALSE(fs::exists(blob));
  ASSERT_TRUE(fs::exists(blob + ".incomplete"));
  EXPECT_EQ(fs::file_size(blob + ".incomplete"), 2000000u);  // two attempts of 1 MB
  EXPECT_FALSE(fs::exists(snapshot() + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(repo_dir() + "/refs/main"));

  hub_.cut_times = 0;
  auto again = pull_model({"org/tiny", "main"}, opt_);
  ASSERT_TRUE(again.ok()) << again.error();
  auto ranges = hub_.ranges();
  EXPECT_NE(std::find(ranges.begin(), ranges.end(), "bytes=2000000-"), ranges.end()) << "did not resume";
  EXPECT_FALSE(fs::exists(blob + ".incomplete"));
  EXPECT_TRUE(read_file(snapshot() + "/model.safetensors") == file("model.safetensors").data);
}

TEST_F(HubTest, Sha256MismatchIsAnErrorAndLeavesNoFile) {
  hub_.corrupt_lfs = true;
  auto res = pull_model({"org/tiny", "main"}, opt_);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().find("sha256 mismatch"), std::string::npos) << res.error();
  EXPECT_NE(res.error().find("model.safetensors"), std::string::npos) << res.error();
  const std::string blob = repo_dir() + "/blobs/" + etag(file("model.safetensors"));
  EXPECT_FALSE(fs::exists(blob));
  EXPECT_FALSE(fs::exists(blob + ".incomplete"));
  EXPECT_FALSE(fs::exists(snapshot() + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(repo_dir() + "/refs/main"));
}

TEST_F(HubTest, GitBlobSha1MismatchIsAnError) {
  hub_.corrupt_plain = true;
  auto res = pull_model({"org/tiny", "main"}, opt_);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().find("git blob sha1 mismatch"), std::string::npos) << res.error();
  EXPECT_FALSE(fs::exists(snapshot() + "/config.json"));
}

TEST_F(HubTest, WorksWithoutBlobIdsInTheListing) {
  // Some mirrors ignore ?blobs=true: the ids then come from HEAD requests, as huggingface_hub reads them.
  hub_.blob_info = false;
  auto res = pull_model({"org/tiny", "main"}, opt_);
  ASSERT_TRUE(res.ok()) << res.error();
  for (const char* name : kWanted)
    EXPECT_EQ(fs::read_symlink(snapshot() + "/" + name).string(), "../../blobs/" + etag(file(name))) << name;
}

TEST_F(HubTest, UnknownRepoIs404) {
  auto res = pull_model({"org/nope", "main"}, opt_);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().find("org/nope"), std::string::npos) << res.error();
  EXPECT_NE(res.error().find("not found"), std::string::npos) << res.error();
  EXPECT_FALSE(fs::exists(cache_ / "models--org--nope/snapshots"));
}

TEST_F(HubTest, UnknownRevisionIs404) {
  auto res = pull_model({"org/tiny", "nope"}, opt_);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().find("revision \"nope\" not found"), std::string::npos) << res.error();
}

TEST_F(HubTest, MissingFileIs404NamingTheFile) {
  FakeRepo r = tiny_;
  r.id = "org/broken";
  r.files.push_back({"generation_config.json", "{}", false, /*missing=*/true});
  hub_.add_repo(r);
  auto res = pull_model({"org/broken", "main"}, opt_);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().find("generation_config.json"), std::string::npos) << res.error();
  EXPECT_NE(res.error().find("404"), std::string::npos) << res.error();
}

TEST_F(HubTest, PrivateRepoNeedsTheToken) {
  FakeRepo r = tiny_;
  r.id = "org/private";
  r.token = "hf_right";
  hub_.add_repo(r);
  auto no_token = pull_model({"org/private", "main"}, opt_);
  ASSERT_FALSE(no_token.ok());
  EXPECT_NE(no_token.error().find("401"), std::string::npos) << no_token.error();
  EXPECT_NE(no_token.error().find("HF_TOKEN"), std::string::npos) << no_token.error();
  EXPECT_NE(no_token.error().find("org/private"), std::string::npos) << no_token.error();

  opt_.hub.token = "hf_wrong";
  auto wrong = pull_model({"org/private", "main"}, opt_);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().find("refused the token"), std::string::npos) << wrong.error();

  opt_.hub.token = "hf_right";
  auto right = pull_model({"org/private", "main"}, opt_);
  ASSERT_TRUE(right.ok()) << right.error();
  EXPECT_EQ(hub_.cdn_auth_headers, 0);
}

TEST_F(HubTest, GatedRepoExplainsHowToGetAccess) {
  FakeRepo r = tiny_;
  r.id = "org/gated";
  r.token = "hf_ok";
  r.gated = true;
  hub_.add_repo(r);
  auto res = pull_model({"org/gated", "main"}, opt_);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().find("gated model"), std::string::npos) << res.error();
  EXPECT_NE(res.error().find(hub_.endpoint() + "/org/gated"), std::string::npos) << res.error();
  EXPECT_NE(res.error().find("HF_TOKEN"), std::string::npos) << res.error();
  opt_.hub.token = "hf_ok";
  EXPECT_TRUE(pull_model({"org/gated", "main"}, opt_).ok());
}

TEST_F(HubTest, RepoWithoutSafetensorsIsRefused) {
  FakeRepo r;
  r.id = "org/bin-only";
  r.commit = kCommit;
  r.files = {{"config.json", "{}"}, {"pytorch_model.bin", "x", true}};
  hub_.add_repo(r);
  auto res = pull_model({"org/bin-only", "main"}, opt_);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().find("no safetensors"), std::string::npos) << res.error();
}

TEST_F(HubTest, UnreachableHubFailsFastAndPointsToTheDemo) {
  opt_.hub.endpoint = "http://127.0.0.1:" + std::to_string(testing::closed_port());
  auto t0 = std::chrono::steady_clock::now();
  auto res = pull_model({"org/tiny", "main"}, opt_);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(res.ok());
  EXPECT_LT(secs, 2.0);
  EXPECT_NE(res.error().find("cannot reach"), std::string::npos) << res.error();
  EXPECT_NE(res.error().find("--model demo"), std::string::npos) << res.error();
}

TEST_F(HubTest, SilentHubTimesOut) {
  hub_.api_delay_ms = 3000;
  opt_.api_timeout_s = 1;
  auto t0 = std::chrono::steady_clock::now();
  auto res = pull_model({"org/tiny", "main"}, opt_);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(res.ok());
  EXPECT_LT(secs, 2.5);
  EXPECT_NE(res.error().find("stopped answering"), std::string::npos) << res.error();
}

TEST_F(HubTest, OfflineModeUsesTheCacheOnly) {
  opt_.hub.offline = true;
  auto missing = pull_model({"org/tiny", "main"}, opt_);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("HF_HUB_OFFLINE"), std::string::npos) << missing.error();
  EXPECT_EQ(hub_.api_gets, 0);

  opt_.hub.offline = false;
  ASSERT_TRUE(pull_model({"org/tiny", "main"}, opt_).ok());
  const int api_gets = hub_.api_gets;
  opt_.hub.offline = true;
  auto cached = pull_model({"org/tiny", "main"}, opt_);
  ASSERT_TRUE(cached.ok()) << cached.error();
  EXPECT_TRUE(cached->from_cache_only);
  EXPECT_EQ(cached->snapshot_dir, snapshot());
  EXPECT_EQ(hub_.api_gets, api_gets);
}

TEST_F(HubTest, ResolveModelPullsOnceThenUsesTheCache) {
  ResolveOptions ro;
  ro.pull = opt_;
  auto dir = resolve_model("org/tiny", ro);
  ASSERT_TRUE(dir.ok()) << dir.error();
  EXPECT_EQ(*dir, snapshot());
  // Cached: no network needed any more.
  ro.pull.hub.endpoint = "http://127.0.0.1:" + std::to_string(testing::closed_port());
  auto again = resolve_model("org/tiny", ro);
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(*again, snapshot());
  // Not cached and no network: a clear error that mentions the demo model.
  auto other = resolve_model("org/other", ro);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.error().find("--model demo"), std::string::npos) << other.error();
}

TEST(FreeSpace, ChecksAvailableBytes) {
  TempDir d;
  EXPECT_TRUE(check_free_space(d.path(), 1).ok());
  Status st = check_free_space(d.path(), 1ull << 62);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().find("not enough disk space"), std::string::npos) << st.error();
}

TEST(SelectFiles, ModelFilesOnly) {
  std::vector<std::string> files = {"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                    "model.safetensors.index.json", "consolidated.safetensors", "tokenizer.model",
                                    "tokenizer.json", "README.md", "pytorch_model.bin", "model.gguf", "onnx/model.onnx",
                                    "original/params.json", "chat_template.jinja", "merges.txt"};
  std::vector<std::string> want = {"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                   "model.safetensors.index.json", "tokenizer.model", "tokenizer.json",
                                   "chat_template.jinja", "merges.txt"};
  EXPECT_EQ(select_model_files(files), want);
  // Without model*.safetensors, any top-level safetensors file is the model.
  EXPECT_EQ(select_model_files({"weights.safetensors", "config.json"}),
            (std::vector<std::string>{"weights.safetensors", "config.json"}));
}

// The CLI end to end: pull, list, rm against the fake hub, in a child process.
testing::CommandResult run_cli(const std::string& env, const std::string& args) {
  return testing::run_command(env + " " + PENSIEVE_BIN + " " + args);
}

TEST_F(HubTest, CliPullListRm) {
  TempDir home;
  const std::string env = "env -u HF_TOKEN -u HUGGING_FACE_HUB_TOKEN -u HF_HUB_OFFLINE HF_HOME=" + home.path() +
                          " HF_HUB_CACHE=" + cache_.path() + " HF_ENDPOINT=" + hub_.endpoint() +
                          " no_proxy=127.0.0.1 NO_PROXY=127.0.0.1";
  auto pull = run_cli(env, "pull org/tiny");
  ASSERT_EQ(pull.status, 0) << pull.out;
  EXPECT_NE(pull.out.find(snapshot() + "\n"), std::string::npos) << pull.out;
  EXPECT_NE(pull.out.find("4 of 4 files downloaded"), std::string::npos) << pull.out;

  auto list = run_cli(env, "list");
  ASSERT_EQ(list.status, 0) << list.out;
  EXPECT_NE(list.out.find("org/tiny"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("main"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("MLX 4-bit (group 64)"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("MB"), std::string::npos) << list.out;

  auto rm = run_cli(env, "rm org/tiny");
  ASSERT_EQ(rm.status, 0) << rm.out;
  EXPECT_NE(rm.out.find("removed org/tiny"), std::string::npos) << rm.out;
  EXPECT_FALSE(fs::exists(repo_dir()));
  auto rm_again = run_cli(env, "rm org/tiny");
  EXPECT_EQ(rm_again.status, 1);
  EXPECT_NE(rm_again.out.find("not in the cache"), std::string::npos) << rm_again.out;

  auto bad = run_cli(env, "pull not/a/repo");
  EXPECT_EQ(bad.status, 2) << bad.out;
  auto offline = run_cli(env + " HF_HUB_OFFLINE=1", "pull org/tiny");
  EXPECT_EQ(offline.status, 1);
  EXPECT_NE(offline.out.find("HF_HUB_OFFLINE"), std::string::npos) << offline.out;
}

}  // namespace
}  // namespace pensieve
