#include "models/store/hub.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "models/store/hash.h"
#include "models/store/http.h"
#include "models/store/model_dir.h"

namespace pensieve {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// One file of the repo at the pulled commit.
struct RemoteFile {
  std::string name;  // path in the repo ("rfilename")
  std::string etag;  // its blob name in the cache: sha256 for LFS files, git blob sha1 otherwise
  uint64_t size = 0;
  bool size_known = false;
};

bool is_hex(std::string_view s, size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// A blob name must be a single harmless path component (it comes from the server).
bool valid_etag(std::string_view e) {
  return !e.empty() && e.size() <= 128 && e != "." && e != ".." &&
         std::all_of(e.begin(), e.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'; });
}

// Repo file names come from the server too: relative, no "..", no empty parts.
bool valid_repo_path(std::string_view p) {
  if (p.empty() || p.front() == '/' || p.back() == '/' || p.find('\\') != std::string_view::npos || p.size() > 1024) return false;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

// huggingface_hub's _normalize_etag: drop a weak "W/" prefix and the quotes.
std::string normalize_etag(std::string e) {
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

bool glob_suffix(const std::string& s, const char* suffix) {
  size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

struct Ctx {
  const PullOptions& opt;
  const RepoRef& ref;
  std::string repo_dir;

  std::vector<std::string> auth() const {
    std::vector<std::string> h;
    if (!opt.hub.token.empty()) h.push_back("Authorization: Bearer " + opt.hub.token);
    return h;
  }
  void note(const std::string& s) const {
    if (opt.progress) opt.progress->note(s);
  }
  std::string resolve_url(const std::string& revision, const std::string& file) const {
    return opt.hub.endpoint + "/" + ref.repo + "/resolve/" + url_escape(revision, false) + "/" + url_escape(file, true);
  }
};

// The hub explains errors in X-Error-Message or a JSON {"error": ...} body.
std::string hub_detail(const HttpResponse& r) {
  std::string msg = r.headers.get("x-error-message");
  if (msg.empty()) {
    json j = json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_string()) msg = j["error"].get<std::string>();
  }
  return msg.empty() ? "" : " (hub: \"" + msg + "\")";
}

// A clear message for a failed request about `what` ("ORG/NAME" or "ORG/NAME: file F").
Error request_error(const Ctx& c, const HttpResponse& r, const std::string& what) {
  const std::string& ep = c.opt.hub.endpoint;
  switch (r.failure) {
    case HttpFailure::connect:
      return errorf(
          "pull %s: cannot reach the Hugging Face hub at %s (%s).\n"
          "Check the network connection and proxy settings (https_proxy), or set HF_ENDPOINT to a mirror.\n"
          "Without a network: run the built-in demo model with `--model demo`, or a model already in the "
          "cache (`pensieve list`).",
          what.c_str(), ep.c_str(), r.error.c_str());
    case HttpFailure::timeout:
      return errorf("pull %s: the hub at %s stopped answering (%s); try again", what.c_str(), ep.c_str(), r.error.c_str());
    case HttpFailure::interrupted:
      return errorf("pull %s: the connection to %s dropped (%s); run pull again to resume", what.c_str(), ep.c_str(),
                    r.error.c_str());
    case HttpFailure::aborted:
    case HttpFailure::other:
      return errorf("pull %s: request to %s failed: %s", what.c_str(), r.url.c_str(), r.error.c_str());
    case HttpFailure::none:
      break;
  }
  const std::string detail = hub_detail(r);
  const std::string code = r.headers.get("x-error-code");
  const bool has_token = !c.opt.hub.token.empty();
  if ((r.status == 401 || r.status == 403) && code == "GatedRepo")
    return errorf("pull %s: %s is a gated model%s. Accept its terms at %s/%s while logged in, then set HF_TOKEN to an "
                  "access token of that account (%s/settings/tokens).",
                  what.c_str(), c.ref.repo.c_str(), detail.c_str(), ep.c_str(), c.ref.repo.c_str(), ep.c_str());
  switch (r.status) {
    case 401:
      if (has_token)
        return errorf("pull %s: the hub refused the token (401 Unauthorized)%s. Check that HF_TOKEN is valid and has "
                      "read access to %s.", what.c_str(), detail.c_str(), c.ref.repo.c_str());
      return errorf("pull %s: 401 Unauthorized%s: the repo is private or gated, or does not exist. If you have "
                    "access, set HF_TOKEN to an access token (%s/settings/tokens).",
                    what.c_str(), detail.c_str(), ep.c_str());
    case 403:
      return errorf("pull %s: 403 Forbidden%s: access to %s is restricted (a gated model?). Accept its terms at "
                    "%s/%s and set HF_TOKEN to a token of that account.",
                    what.c_str(), detail.c_str(), c.ref.repo.c_str(), ep.c_str(), c.ref.repo.c_str());
    case 404:
      if (code == "RevisionNotFound")
        return errorf("pull %s: revision \"%s\" not found%s", what.c_str(), c.ref.revision.c_str(), detail.c_str());
      if (code == "EntryNotFound" || what.find(": file ") != std::string::npos)
        return errorf("pull %s: 404 Not Found at %s%s", what.c_str(), r.url.c_str(), detail.c_str());
      return errorf("pull %s: repository not found at %s (404)%s. Check the name; for a private repo set HF_TOKEN.",
                    what.c_str(), ep.c_str(), detail.c_str());
    case 429:
      return errorf("pull %s: rate limited by the hub (429)%s; try again later", what.c_str(), detail.c_str());
    default:
      return errorf("pull %s: HTTP %ld from %s%s", what.c_str(), r.status, r.url.c_str(), detail.c_str());
  }
}

bool retryable(const HttpResponse& r) {
  if (r.failure == HttpFailure::interrupted || r.failure == HttpFailure::timeout || r.failure == HttpFailure::connect)
    return true;
  return r.failure == HttpFailure::none && (r.status == 429 || r.status == 500 || r.status == 502 || r.status == 503 || r.status == 504);
}

struct RepoListing {
  std::string commit;  // may be empty if the server did not say
  std::vector<RemoteFile> files;
  bool blob_info = true;  // every file came with an etag
};

Result<RepoListing> list_repo(const Ctx& c) {
  HttpRequest req;
  req.url = c.opt.hub.endpoint + "/api/models/" + c.ref.repo + "/revision/" + url_escape(c.ref.revision, false) + "?blobs=true";
  req.headers = c.auth();
  req.connect_timeout_s = c.opt.connect_timeout_s;
  req.low_speed_time_s = c.opt.low_speed_time_s;
  req.total_timeout_s = c.opt.api_timeout_s;
  req.headers.push_back("Accept: application/json");
  HttpResponse r = http_request(req);
  if (!r.ok()) return request_error(c, r, c.ref.str());

  json j = json::parse(r.body, nullptr, false);
  if (!j.is_object()) return errorf("pull %s: the hub's answer from %s is not a JSON object", c.ref.str().c_str(), req.url.c_str());
  RepoListing out;
  if (auto sha = j.find("sha"); sha != j.end() && sha->is_string()) {
    out.commit = sha->get<std::string>();
    if (!is_commit_hash(out.commit))
      return errorf("pull %s: the hub gave commit \"%s\", not a 40-hex commit hash", c.ref.str().c_str(), out.commit.c_str());
  }
  auto siblings = j.find("siblings");
  if (siblings == j.end() || !siblings->is_array())
    return errorf("pull %s: the hub's answer has no \"siblings\" file list", c.ref.str().c_str());
  for (const json& s : *siblings) {
    if (!s.is_object() || !s.contains("rfilename") || !s["rfilename"].is_string())
      return errorf("pull %s: a \"siblings\" entry has no rfilename", c.ref.str().c_str());
    RemoteFile f;
    f.name = s["rfilename"].get<std::string>();
    if (!valid_repo_path(f.name)) return errorf("pull %s: refusing the file name \"%s\"", c.ref.str().c_str(), f.name.c_str());
    if (s.contains("size") && s["size"].is_number_unsigned()) {
      f.size = s["size"].get<uint64_t>();
      f.size_known = true;
    }
    if (s.contains("blobId") && s["blobId"].is_string()) f.etag = s["blobId"].get<std::string>();
    if (s.contains("lfs") && s["lfs"].is_object()) {
      const json& lfs = s["lfs"];
      for (const char* key : {"sha256", "oid"})
        if (lfs.contains(key) && lfs[key].is_string()) f.etag = lfs[key].get<std::string>();
      if (lfs.contains("size") && lfs["size"].is_number_unsigned()) {
        f.size = lfs["size"].get<uint64_t>();
        f.size_known = true;
      }
    }
    if (f.etag.empty()) out.blob_info = false;
    else if (!valid_etag(f.etag)) return errorf("pull %s: refusing the blob id \"%s\"", c.ref.str().c_str(), f.etag.c_str());
    out.files.push_back(std::move(f));
  }
  return out;
}

// HEAD {endpoint}/{repo}/resolve/{rev}/{file} without following redirects to other hosts, as
// huggingface_hub's get_hf_file_metadata does: the hub's own response carries the commit and,
// for LFS files (a 302 to the CDN), X-Linked-Etag / X-Linked-Size.
Status head_file(const Ctx& c, const std::string& revision, RemoteFile* f, std::string* commit) {
  std::string url = c.resolve_url(revision, f->name);
  for (int hop = 0; hop < 5; ++hop) {
    HttpRequest req;
    req.method = "HEAD";
    req.url = url;
    req.headers = c.auth();
    req.follow_redirects = false;
    req.connect_timeout_s = c.opt.connect_timeout_s;
    req.total_timeout_s = c.opt.api_timeout_s;
    HttpResponse r = http_request(req);
    if (r.failure != HttpFailure::none) return request_error(c, r, c.ref.str() + ": file " + f->name);
    std::string location = r.headers.get("location");
    if (r.status >= 300 && r.status < 400 && !location.empty() && location.front() == '/' &&
        !r.headers.has("x-linked-etag")) {
      // A relative redirect (renamed repo): follow it on the same host.
      size_t host_end = c.opt.hub.endpoint.find('/', c.opt.hub.endpoint.find("//") + 2);
      url = c.opt.hub.endpoint.substr(0, host_end) + location;
      continue;
    }
    if (r.status >= 400) return request_error(c, r, c.ref.str() + ": file " + f->name);
    std::string etag = normalize_etag(r.headers.has("x-linked-etag") ? r.headers.get("x-linked-etag") : r.headers.get("etag"));
    if (etag.empty()) return errorf("pull %s: the hub sent no ETag for %s", c.ref.str().c_str(), f->name.c_str());
    if (!valid_etag(etag)) return errorf("pull %s: refusing the ETag \"%s\" of %s", c.ref.str().c_str(), etag.c_str(), f->name.c_str());
    f->etag = etag;
    std::string size = r.headers.has("x-linked-size") ? r.headers.get("x-linked-size") : r.headers.get("content-length");
    if (!size.empty() && std::all_of(size.begin(), size.end(), ::isdigit)) {
      f->size = std::stoull(size);
      f->size_known = true;
    }
    std::string c_hdr = r.headers.get("x-repo-commit");
    if (commit && commit->empty() && is_commit_hash(c_hdr)) *commit = c_hdr;
    return Status::Ok();
  }
  return errorf("pull %s: too many redirects for %s", c.ref.str().c_str(), f->name.c_str());
}

// An exclusive lock shared with huggingface_hub (filelock uses flock on the same path).
class BlobLock {
 public:
  ~BlobLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the flock
  }
  Status lock(const Ctx& c, const std::string& path, const std::string& file) {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return errorf("pull: cannot create the lock %s: %s", path.c_str(), std::strerror(errno));
    if (flock(fd_, LOCK_EX | LOCK_NB) == 0) return Status::Ok();
    c.note("waiting for another download of " + file + " (lock " + path + ")");
    if (flock(fd_, LOCK_EX) != 0) return errorf("pull: flock %s: %s", path.c_str(), std::strerror(errno));
    return Status::Ok();
  }

 private:
  int fd_ = -1;
};

Status write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errorf("%s", std::strerror(errno));
    }
    p += w;
    n -= size_t(w);
  }
  return Status::Ok();
}

// Parses "bytes START-END/TOTAL"; returns START or -1.
int64_t content_range_start(const std::string& v) {
  if (v.rfind("bytes ", 0) != 0) return -1;
  char* end = nullptr;
  long long start = std::strtoll(v.c_str() + 6, &end, 10);
  return end && *end == '-' ? start : -1;
}

// Downloads `f` into blobs/<etag> (see the header: .incomplete, Range, retries, digest, rename).
Status download_blob(const Ctx& c, const std::string& commit, const RemoteFile& f, uint64_t* transferred) {
  const std::string blob = c.repo_dir + "/blobs/" + f.etag;
  const std::string incomplete = blob + ".incomplete";
  const std::string what = c.ref.str() + ": file " + f.name;
  BlobLock lock;
  PENSIEVE_TRY(lock.lock(c, fs::path(c.opt.hub.cache_dir) / ".locks" / repo_folder_name(c.ref.repo) / (f.etag + ".lock"), f.name));
  std::error_code ec;
  if (fs::is_regular_file(blob, ec)) return Status::Ok();  // another process just finished it

  int fd = ::open(incomplete.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return errorf("pull %s: cannot create %s: %s", what.c_str(), incomplete.c_str(), std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (fstat(fd, &st) != 0) return errorf("pull %s: stat %s: %s", what.c_str(), incomplete.c_str(), std::strerror(errno));
  uint64_t offset = uint64_t(st.st_size);
  const bool sha256_id = is_hex(f.etag, 64);
  Sha256 hasher;
  auto restart = [&]() -> Status {
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
      return errorf("pull %s: truncating %s: %s", what.c_str(), incomplete.c_str(), std::strerror(errno));
    offset = 0;
    hasher.reset();
    return Status::Ok();
  };
  if (f.size_known && offset > f.size) PENSIEVE_TRY(restart());
  if (offset > 0 && sha256_id) {  // the digest covers the part downloaded before
    std::vector<char> buf(1 << 20);
    uint64_t pos = 0;
    while (pos < offset) {
      ssize_t n = ::pread(fd, buf.data(), std::min<uint64_t>(buf.size(), offset - pos), off_t(pos));
      if (n <= 0) return errorf("pull %s: reading %s failed", what.c_str(), incomplete.c_str());
      hasher.update(buf.data(), size_t(n));
      pos += uint64_t(n);
    }
  }
  if (lseek(fd, off_t(offset), SEEK_SET) < 0) return errorf("pull %s: seek failed", what.c_str());
  if (c.opt.progress) c.opt.progress->begin_item(f.name, f.size, offset);

  Status sink_error;
  bool done = false;
  int wait_ms = c.opt.retry_wait_ms;
  for (int attempt = 0; !done; ++attempt) {
    if (f.size_known && offset == f.size && f.size > 0) break;  // all there: only verify
    HttpRequest req;
    req.url = c.resolve_url(commit, f.name);
    req.headers = c.auth();
    const uint64_t asked = offset;
    if (asked > 0) req.headers.push_back("Range: bytes=" + std::to_string(asked) + "-");
    req.connect_timeout_s = c.opt.connect_timeout_s;
    req.low_speed_time_s = c.opt.low_speed_time_s;
    req.on_response = [&](long status, const HttpHeaders& h) {
      if (status == 200 && asked > 0) {  // the server ignored the Range: start over
        sink_error = restart();
        if (c.opt.progress) c.opt.progress->item_progress(0);
        return sink_error.ok();
      }
      if (status == 206 && content_range_start(h.get("content-range")) != int64_t(asked)) {
        sink_error = errorf("pull %s: asked for bytes from %llu, the server sent \"%s\"", what.c_str(),
                            (unsigned long long)asked, h.get("content-range").c_str());
        return false;
      }
      return true;
    };
    req.sink = [&](const char* data, size_t n) {
      Status st = write_all(fd, data, n);
      if (!st.ok()) {
        sink_error = errorf("pull %s: writing %s: %s", what.c_str(), incomplete.c_str(), st.error().c_str());
        return false;
      }
      if (sha256_id) hasher.update(data, n);
      offset += n;
      *transferred += n;
      if (c.opt.progress) c.opt.progress->item_progress(offset);
      return true;
    };
    HttpResponse r = http_request(req);
    if (!sink_error.ok()) return std::move(sink_error).take_error();
    if (r.ok()) {
      done = true;
      break;
    }
    if (r.status == 416) {  // our partial file is not a prefix of this blob: start over
      PENSIEVE_TRY(restart());
      if (attempt < c.opt.max_retries) continue;
    }
    if (!retryable(r) || attempt >= c.opt.max_retries) {
      if (c.opt.progress) c.opt.progress->end_item(false);
      Error e = request_error(c, r, what);
      if (retryable(r)) e.message += " (after " + std::to_string(attempt + 1) + " attempts; run pull again to resume)";
      return e;
    }
    c.note(f.name + ": " + (r.failure != HttpFailure::none ? "connection lost (" + r.error + ")" : "HTTP " + std::to_string(r.status)) +
           " at " + format_bytes(offset) + "; retrying in " + format_duration(wait_ms / 1000.0));
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    wait_ms = std::min(wait_ms * 2, 8000);
  }

  // Verify before the blob takes its final name: a corrupt file is deleted, never linked.
  auto fail = [&](Error e) -> Status {
    ::unlink(incomplete.c_str());
    if (c.opt.progress) c.opt.progress->end_item(false);
    return e;
  };
  if (f.size_known && offset != f.size)
    return fail(errorf("pull %s: got %llu bytes, expected %llu; the partial file was deleted, run pull again",
                       what.c_str(), (unsigned long long)offset, (unsigned long long)f.size));
  if (fdatasync(fd) != 0) return errorf("pull %s: fsync %s: %s", what.c_str(), incomplete.c_str(), std::strerror(errno));
  std::string actual, algo;
  if (sha256_id) {
    algo = "sha256";
    actual = hasher.hex_digest();
  } else if (is_hex(f.etag, 40)) {
    algo = "git blob sha1";
    auto h = git_blob_sha1_file(incomplete);
    if (!h) return fail(std::move(h).take_error());
    actual = *h;
  }
  if (!algo.empty() && actual != f.etag)
    return fail(errorf("pull %s: %s mismatch: expected %s, got %s. The download was corrupted (or the file changed "
                       "on the hub) and was deleted; run pull again",
                       what.c_str(), algo.c_str(), f.etag.c_str(), actual.c_str()));
  if (algo.empty()) c.note(f.name + ": the hub gave no digest (ETag " + f.etag + "); only the size was checked");
  if (::rename(incomplete.c_str(), blob.c_str()) != 0)
    return fail(errorf("pull %s: rename to %s: %s", what.c_str(), blob.c_str(), std::strerror(errno)));
  if (c.opt.progress) c.opt.progress->end_item(true);
  return Status::Ok();
}

// snapshots/<commit>/<file> -> ../../blobs/<etag> (one more "../" per directory in the file name).
Status link_snapshot_file(const Ctx& c, const std::string& commit, const RemoteFile& f) {
  fs::path link = fs::path(c.repo_dir) / "snapshots" / commit / f.name;
  std::string target = "../../blobs/" + f.etag;
  for (char ch : f.name)
    if (ch == '/') target = "../" + target;
  std::error_code ec;
  fs::create_directories(link.parent_path(), ec);
  if (ec) return errorf("pull: mkdir %s: %s", link.parent_path().c_str(), ec.message().c_str());
  if (fs::is_symlink(link, ec) && fs::read_symlink(link, ec) == target) return Status::Ok();
  std::string tmp = link.string() + ".tmp-link" + std::to_string(getpid());
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0 || ::rename(tmp.c_str(), link.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return errorf("pull: linking %s -> %s: %s", link.c_str(), target.c_str(), std::strerror(e));
  }
  return Status::Ok();
}

}  // namespace

std::vector<std::string> select_model_files(const std::vector<std::string>& repo_files) {
  bool has_model_st = false;
  for (const std::string& f : repo_files)
    if (f.find('/') == std::string::npos && f.rfind("model", 0) == 0 && glob_suffix(f, ".safetensors")) has_model_st = true;
  std::vector<std::string> out;
  for (const std::string& f : repo_files) {
    if (f.find('/') != std::string::npos) continue;  // top level only (skips onnx/, original/, ...)
    bool want = glob_suffix(f, ".json") || glob_suffix(f, ".tiktoken") || glob_suffix(f, ".txt") ||
                glob_suffix(f, ".jinja") || f == "tokenizer.model" || f == "tiktoken.model" ||
                (glob_suffix(f, ".safetensors") && (!has_model_st || f.rfind("model", 0) == 0));
    if (want) out.push_back(f);
  }
  return out;
}

Status check_free_space(const std::string& dir, uint64_t needed) {
  struct statvfs sv;
  if (statvfs(dir.c_str(), &sv) != 0) return errorf("statvfs %s: %s", dir.c_str(), std::strerror(errno));
  uint64_t avail = uint64_t(sv.f_bavail) * uint64_t(sv.f_frsize);
  if (needed > avail)
    return errorf("not enough disk space in %s: the download needs %s, %s are free", dir.c_str(),
                  format_bytes(needed).c_str(), format_bytes(avail).c_str());
  return Status::Ok();
}

Result<PullResult> pull_model(const RepoRef& ref, const PullOptions& opt) {
  PENSIEVE_TRY(validate_repo_id(ref.repo));
  PENSIEVE_TRY(validate_revision(ref.revision));
  Ctx c{opt, ref, repo_cache_path(opt.hub.cache_dir, ref.repo)};
  PullResult res;

  if (opt.hub.offline) {
    auto snap = cached_snapshot(opt.hub.cache_dir, ref);
    if (!snap)
      return errorf("pull %s: HF_HUB_OFFLINE is set and the model is not in the cache %s (%s)", ref.str().c_str(),
                    opt.hub.cache_dir.c_str(), snap.error().c_str());
    Status st = check_model_dir(*snap);
    if (!st.ok())
      return errorf("pull %s: HF_HUB_OFFLINE is set and the cached copy is incomplete: %s", ref.str().c_str(), st.error().c_str());
    res.snapshot_dir = *snap;
    res.commit = fs::path(*snap).filename().string();
    res.from_cache_only = true;
    return res;
  }

  auto listing = list_repo(c);
  if (!listing) return std::move(listing).take_error();
  std::vector<std::string> names;
  for (const RemoteFile& f : listing->files) names.push_back(f.name);
  std::vector<std::string> wanted = select_model_files(names);
  bool has_safetensors = false;
  std::vector<std::string> other_weights;
  for (const std::string& n : names) {
    if (glob_suffix(n, ".safetensors")) has_safetensors = true;
    if (glob_suffix(n, ".bin") || glob_suffix(n, ".gguf") || glob_suffix(n, ".pt") || glob_suffix(n, ".pth") ||
        glob_suffix(n, ".onnx"))
      other_weights.push_back(n);
  }
  if (!has_safetensors && !other_weights.empty())
    return errorf("pull %s: the repo has no safetensors weights (it has %s%s); pensieve reads safetensors: look for "
                  "an MLX or safetensors version of this model",
                  ref.str().c_str(), other_weights.front().c_str(), other_weights.size() > 1 ? ", ..." : "");
  if (wanted.empty()) return errorf("pull %s: the repo has no model files (config.json, *.safetensors)", ref.str().c_str());

  std::string commit = listing->commit;
  std::vector<RemoteFile> files;
  for (const RemoteFile& f : listing->files)
    if (std::find(wanted.begin(), wanted.end(), f.name) != wanted.end()) files.push_back(f);
  for (RemoteFile& f : files)  // listing without blob ids: ask for each file's metadata
    if (f.etag.empty()) PENSIEVE_TRY(head_file(c, commit.empty() ? ref.revision : commit, &f, &commit));
  if (commit.empty()) return errorf("pull %s: the hub did not say which commit %s is", ref.str().c_str(), ref.revision.c_str());
  res.commit = commit;
  res.files_total = int(files.size());
  res.snapshot_dir = c.repo_dir + "/snapshots/" + commit;

  // What is already there, and what is left to fetch.
  std::error_code ec;
  fs::create_directories(c.repo_dir + "/blobs", ec);
  if (ec) return errorf("pull %s: cannot create %s/blobs: %s", ref.str().c_str(), c.repo_dir.c_str(), ec.message().c_str());
  std::vector<const RemoteFile*> to_fetch;
  uint64_t total = 0, cached = 0, needed = 0;
  for (const RemoteFile& f : files) {
    total += f.size;
    fs::path pointer = fs::path(res.snapshot_dir) / f.name;
    fs::path blob = fs::path(c.repo_dir) / "blobs" / f.etag;
    if (fs::is_regular_file(pointer, ec) || fs::is_regular_file(blob, ec)) {
      cached += f.size;
      continue;
    }
    to_fetch.push_back(&f);
    uint64_t partial = fs::is_regular_file(blob.string() + ".incomplete", ec) ? fs::file_size(blob.string() + ".incomplete", ec) : 0;
    if (ec) partial = 0;
    needed += f.size > partial ? f.size - partial : 0;
  }
  PENSIEVE_TRY_CTX(check_free_space(c.repo_dir + "/blobs", needed), "pull %s", ref.str().c_str());
  if (opt.progress) {
    opt.progress->begin("pull " + ref.str(), total, int(to_fetch.size()), cached);
    if (to_fetch.empty()) opt.progress->note("all " + std::to_string(files.size()) + " files are in the cache");
    else opt.progress->note(std::to_string(to_fetch.size()) + " of " + std::to_string(files.size()) + " files to fetch, " +
                            format_bytes(needed) + " (commit " + commit.substr(0, 12) + ")");
  }
  for (const RemoteFile* f : to_fetch) {
    uint64_t before = res.bytes_downloaded;
    Status st = download_blob(c, commit, *f, &res.bytes_downloaded);
    if (!st.ok()) {
      if (opt.progress) opt.progress->end(false);
      return std::move(st).take_error();
    }
    if (res.bytes_downloaded > before) ++res.files_downloaded;
  }
  for (const RemoteFile& f : files) PENSIEVE_TRY(link_snapshot_file(c, commit, f));
  PENSIEVE_TRY(write_ref(opt.hub.cache_dir, ref, commit));
  if (opt.progress) opt.progress->end(true);
  return res;
}

}  // namespace pensieve
