// The Hugging Face hub cache, laid out exactly as huggingface_hub writes it, so that models fetched
// by huggingface-cli or MLX are reused here and ours are reused there:
//
//   <cache>/models--ORG--NAME/
//     blobs/<etag>              file contents; etag = sha256 (LFS files) or git blob sha1 (others)
//     blobs/<etag>.incomplete   a download in progress, resumed with an HTTP Range request
//     snapshots/<commit>/<file> relative symlink -> ../../blobs/<etag>
//     refs/<revision>           the 40-hex commit the revision ("main", a tag, "refs/pr/1") pointed at
//   <cache>/.locks/models--ORG--NAME/<etag>.lock   flock()ed while a blob downloads
//
// <cache> is $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tensor/result.h"

namespace pensieve {

// "org/name" or "org/name@revision" (revision: branch, tag or commit; "main" by default).
struct RepoRef {
  std::string repo;
  std::string revision = "main";
  std::string str() const { return revision == "main" ? repo : repo + "@" + revision; }
};

// Parses "org/name[@revision]" (a bare "name" is accepted too: canonical repos such as "gpt2").
Result<RepoRef> parse_repo_ref(std::string_view spec);
// huggingface_hub's rule: [namespace/]name, each 1-96 of [A-Za-z0-9_.-], starting and ending with
// a letter, digit or '_', with no "--" or "..".
Status validate_repo_id(std::string_view repo);
// Branch, tag or commit: [A-Za-z0-9_.-/], no "..", no leading '/' (it becomes a path under refs/).
Status validate_revision(std::string_view revision);
bool is_commit_hash(std::string_view s);  // 40 lowercase hex digits

// Where and how to reach the hub, from the same environment variables huggingface_hub reads.
struct HubConfig {
  std::string endpoint = "https://huggingface.co";  // HF_ENDPOINT (no trailing '/')
  std::string token;      // HF_TOKEN, HUGGING_FACE_HUB_TOKEN, or $HF_TOKEN_PATH / $HF_HOME/token
  std::string cache_dir;  // see above
  bool offline = false;   // HF_HUB_OFFLINE=1: never touch the network
  static HubConfig from_env();
};

// "models--org--name".
std::string repo_folder_name(std::string_view repo);
// <cache>/models--org--name
std::string repo_cache_path(const std::string& cache_dir, std::string_view repo);

// The commit a revision points at in the cache: the revision itself if it is a commit hash, else
// the content of refs/<revision>. Error if the cache has no such ref.
Result<std::string> cached_commit(const std::string& cache_dir, const RepoRef& ref);
// Writes refs/<revision> = commit (atomically, and only if it changed).
Status write_ref(const std::string& cache_dir, const RepoRef& ref, const std::string& commit);
// <cache>/models--org--name/snapshots/<commit of ref>; error if the ref or the folder is missing.
// The snapshot may hold only some of the repo's files (check_model_dir tells).
Result<std::string> cached_snapshot(const std::string& cache_dir, const RepoRef& ref);

struct CachedRepo {
  std::string repo;                                        // "org/name"
  std::string path;                                        // its folder in the cache
  std::vector<std::pair<std::string, std::string>> refs;   // (revision, commit), sorted
  std::vector<std::string> snapshots;                      // commits, sorted
  uint64_t size_bytes = 0;        // blobs on disk
  uint64_t incomplete_bytes = 0;  // unfinished downloads (*.incomplete)
  std::string format;             // describe_model_format() of the main (or newest) snapshot
  bool complete = false;          // that snapshot passes check_model_dir()
};

// Every model repo in the cache (datasets and spaces are skipped), sorted by repo id. A missing
// cache directory is an empty list.
Result<std::vector<CachedRepo>> scan_cache(const std::string& cache_dir);
// Deletes models--org--name (and its lock folder). Returns the bytes its blobs used.
Result<uint64_t> remove_cached_repo(const std::string& cache_dir, std::string_view repo);

}  // namespace pensieve
