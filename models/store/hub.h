// `pensieve pull`: downloads a model repo from the Hugging Face hub into the HF cache (hf_cache.h).
//
// 1. GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true lists the files of the commit the
//    revision points at ("sha"), with each file's size, git blob id and, for LFS files, its sha256.
// 2. The model's files are chosen (wanted_file()): config and tokenizer JSON, *.safetensors, ...;
//    never *.bin / *.pt / *.gguf / ONNX. If the listing lacks blob ids (some mirrors), a HEAD of
//    each file gives them the way huggingface_hub reads them: X-Repo-Commit, X-Linked-Etag or
//    ETag, X-Linked-Size or Content-Length, on the hub's own (unfollowed) response.
// 3. Files already in snapshots/<commit>/ are skipped; a blob already present (another revision)
//    is only linked. Free space is checked (statvfs) for the rest before anything downloads.
// 4. Each file streams from {endpoint}/{repo}/resolve/{commit}/{file} (redirects to the CDN are
//    followed, without the token) into blobs/<etag>.incomplete, resuming with Range when one is
//    there; a dropped connection is retried from where it stopped. The size and the digest
//    (sha256 for LFS files, git blob sha1 otherwise) are checked before the blob is renamed into
//    place and linked from the snapshot, so a file that looks complete is complete.
// 5. refs/<revision> is written last, once every file is in place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/store/hf_cache.h"
#include "models/store/progress.h"
#include "tensor/result.h"

namespace pensieve {

struct PullOptions {
  HubConfig hub = HubConfig::from_env();
  ProgressReporter* progress = nullptr;  // null: silent
  int connect_timeout_s = 5;   // an unreachable hub fails within this
  int low_speed_time_s = 30;   // a transfer under 1 kB/s for this long is dropped (and retried)
  int api_timeout_s = 30;      // whole-request limit for API calls and HEADs
  int max_retries = 5;         // per file, after a dropped connection or a 5xx
  int retry_wait_ms = 1000;    // first wait; doubles each retry, at most 8 s
};

struct PullResult {
  std::string snapshot_dir;  // <cache>/models--org--name/snapshots/<commit>
  std::string commit;
  int files_total = 0;
  int files_downloaded = 0;        // transferred (fully or resumed)
  uint64_t bytes_downloaded = 0;   // bytes transferred
  bool from_cache_only = false;    // offline mode: nothing was asked of the network
};

// The files `pull` fetches from a repo listing: top-level config/tokenizer/generation JSON,
// *.safetensors (only model*.safetensors when the repo has those, as mlx-lm does, so that e.g.
// consolidated.safetensors duplicates are skipped), tokenizer.model, *.tiktoken, *.txt, *.jinja.
std::vector<std::string> select_model_files(const std::vector<std::string>& repo_files);

Result<PullResult> pull_model(const RepoRef& ref, const PullOptions& options);

// Fails when `dir`'s file system has less than `needed` bytes free (statvfs f_bavail).
Status check_free_space(const std::string& dir, uint64_t needed);

}  // namespace pensieve
