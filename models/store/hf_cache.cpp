#include "models/store/hf_cache.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "models/store/model_dir.h"

namespace pensieve {

namespace fs = std::filesystem;

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

std::string home_dir() {
  if (const char* h = env("HOME")) return h;
  if (const passwd* pw = getpwuid(getuid())) return pw->pw_dir;
  return "/";
}

// "~/x" -> "$HOME/x", as Python's os.path.expanduser does for these variables.
std::string expand_user(std::string p) {
  if (p == "~" || p.rfind("~/", 0) == 0) p = home_dir() + p.substr(1);
  return p;
}

std::string trim(std::string s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && ws(s.back())) s.pop_back();
  size_t i = 0;
  while (i < s.size() && ws(s[i])) ++i;
  return s.substr(i);
}

bool truthy(const char* v) {
  if (!v) return false;
  std::string s(v);
  for (char& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s == "1" || s == "ON" || s == "YES" || s == "TRUE";
}

bool word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

Status validate_repo_part(std::string_view part, std::string_view repo) {
  if (part.empty() || part.size() > 96)
    return errorf("repo id \"%.*s\": each part must be 1 to 96 characters", int(repo.size()), repo.data());
  for (char c : part)
    if (!word_char(c) && c != '-' && c != '.')
      return errorf("repo id \"%.*s\": '%c' is not allowed (letters, digits, '-', '_', '.')", int(repo.size()),
                    repo.data(), c);
  if (!word_char(part.front()) || !word_char(part.back()))
    return errorf("repo id \"%.*s\": parts must start and end with a letter, digit or '_'", int(repo.size()),
                  repo.data());
  return Status::Ok();
}

Result<std::string> read_small_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return errorf("cannot read %s", path.c_str());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

uint64_t dir_size(const fs::path& dir, uint64_t* incomplete) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    uint64_t size = it->file_size(ec);
    if (ec) continue;
    if (it->path().extension() == ".incomplete") {
      if (incomplete) *incomplete += size;
    } else {
      total += size;
    }
  }
  return total;
}

}  // namespace

bool is_commit_hash(std::string_view s) {
  return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Status validate_repo_id(std::string_view repo) {
  if (repo.find("--") != std::string_view::npos || repo.find("..") != std::string_view::npos)
    return errorf("repo id \"%.*s\": \"--\" and \"..\" are not allowed", int(repo.size()), repo.data());
  size_t slash = repo.find('/');
  if (slash == std::string_view::npos) return validate_repo_part(repo, repo);
  if (repo.find('/', slash + 1) != std::string_view::npos)
    return errorf("repo id \"%.*s\": expected ORG/NAME (one '/')", int(repo.size()), repo.data());
  PENSIEVE_TRY(validate_repo_part(repo.substr(0, slash), repo));
  return validate_repo_part(repo.substr(slash + 1), repo);
}

Status validate_revision(std::string_view rev) {
  if (rev.empty() || rev.size() > 255) return errorf("revision \"%.*s\": must be 1 to 255 characters", int(rev.size()), rev.data());
  if (rev.front() == '/' || rev.back() == '/' || rev.find("..") != std::string_view::npos ||
      rev.find("//") != std::string_view::npos)
    return errorf("revision \"%.*s\": not a valid branch, tag or commit", int(rev.size()), rev.data());
  for (char c : rev)
    if (!word_char(c) && c != '-' && c != '.' && c != '/')
      return errorf("revision \"%.*s\": '%c' is not allowed", int(rev.size()), rev.data(), c);
  return Status::Ok();
}

Result<RepoRef> parse_repo_ref(std::string_view spec) {
  RepoRef ref;
  size_t at = spec.find('@');
  ref.repo = std::string(spec.substr(0, at));
  if (at != std::string_view::npos) ref.revision = std::string(spec.substr(at + 1));
  PENSIEVE_TRY(validate_repo_id(ref.repo));
  PENSIEVE_TRY(validate_revision(ref.revision));
  return ref;
}

HubConfig HubConfig::from_env() {
  HubConfig c;
  if (const char* e = env("HF_ENDPOINT")) c.endpoint = e;
  while (!c.endpoint.empty() && c.endpoint.back() == '/') c.endpoint.pop_back();

  std::string hf_home;
  if (const char* h = env("HF_HOME")) hf_home = expand_user(h);
  else if (const char* x = env("XDG_CACHE_HOME")) hf_home = expand_user(x) + "/huggingface";
  else hf_home = home_dir() + "/.cache/huggingface";

  if (const char* d = env("HF_HUB_CACHE")) c.cache_dir = expand_user(d);
  else if (const char* d2 = env("HUGGINGFACE_HUB_CACHE")) c.cache_dir = expand_user(d2);  // older name
  else c.cache_dir = hf_home + "/hub";

  if (const char* t = env("HF_TOKEN")) c.token = trim(t);
  else if (const char* t2 = env("HUGGING_FACE_HUB_TOKEN")) c.token = trim(t2);  // older name
  else {
    // The file `huggingface-cli login` writes.
    std::string path = env("HF_TOKEN_PATH") ? expand_user(env("HF_TOKEN_PATH")) : hf_home + "/token";
    if (auto text = read_small_file(path)) c.token = trim(*text);
  }
  c.offline = truthy(env("HF_HUB_OFFLINE"));
  return c;
}

std::string repo_folder_name(std::string_view repo) {
  std::string name = "models--";
  for (char ch : repo) {
    if (ch == '/') name += "--";
    else name += ch;
  }
  return name;
}

std::string repo_cache_path(const std::string& cache_dir, std::string_view repo) {
  return cache_dir + "/" + repo_folder_name(repo);
}

Result<std::string> cached_commit(const std::string& cache_dir, const RepoRef& ref) {
  if (is_commit_hash(ref.revision)) return ref.revision;
  std::string path = repo_cache_path(cache_dir, ref.repo) + "/refs/" + ref.revision;
  auto text = read_small_file(path);
  if (!text) return errorf("%s is not in the cache (no %s)", ref.str().c_str(), path.c_str());
  std::string commit = trim(*text);
  if (!is_commit_hash(commit))
    return errorf("%s: %s holds \"%s\", not a commit hash", ref.str().c_str(), path.c_str(), commit.c_str());
  return commit;
}

Status write_ref(const std::string& cache_dir, const RepoRef& ref, const std::string& commit) {
  if (ref.revision == commit) return Status::Ok();
  fs::path path = fs::path(repo_cache_path(cache_dir, ref.repo)) / "refs" / ref.revision;
  if (auto old = read_small_file(path.string()); old && *old == commit) return Status::Ok();
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return errorf("write_ref: mkdir %s: %s", path.parent_path().c_str(), ec.message().c_str());
  std::string tmp = path.string() + ".tmp" + std::to_string(getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << commit;  // no newline, as huggingface_hub writes it
    if (!f.flush()) return errorf("write_ref: cannot write %s", tmp.c_str());
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return errorf("write_ref: rename to %s failed", path.c_str());
  }
  return Status::Ok();
}

Result<std::string> cached_snapshot(const std::string& cache_dir, const RepoRef& ref) {
  auto commit = cached_commit(cache_dir, ref);
  if (!commit) return std::move(commit).take_error();
  std::string dir = repo_cache_path(cache_dir, ref.repo) + "/snapshots/" + *commit;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return errorf("%s is not in the cache (no %s)", ref.str().c_str(), dir.c_str());
  return dir;
}

Result<std::vector<CachedRepo>> scan_cache(const std::string& cache_dir) {
  std::vector<CachedRepo> repos;
  std::error_code ec;
  if (!fs::exists(cache_dir, ec)) return repos;
  if (!fs::is_directory(cache_dir, ec)) return errorf("scan_cache: %s is not a directory", cache_dir.c_str());
  for (auto it = fs::directory_iterator(cache_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string folder = it->path().filename().string();
    if (folder.rfind("models--", 0) != 0 || !it->is_directory()) continue;
    CachedRepo r;
    r.path = it->path().string();
    // models--org--name -> org/name (repo ids never contain "--").
    std::string rest = folder.substr(8);
    size_t sep = rest.find("--");
    r.repo = sep == std::string::npos ? rest : rest.substr(0, sep) + "/" + rest.substr(sep + 2);

    fs::path refs = it->path() / "refs";
    std::error_code ec2;
    for (auto rit = fs::recursive_directory_iterator(refs, ec2); !ec2 && rit != fs::recursive_directory_iterator();
         rit.increment(ec2)) {
      if (!rit->is_regular_file()) continue;
      auto text = read_small_file(rit->path().string());
      if (text) r.refs.emplace_back(fs::relative(rit->path(), refs).string(), trim(*text));
    }
    std::sort(r.refs.begin(), r.refs.end());
    fs::path snaps = it->path() / "snapshots";
    fs::file_time_type newest_time{};
    std::string newest;
    for (auto sit = fs::directory_iterator(snaps, ec2); !ec2 && sit != fs::directory_iterator(); sit.increment(ec2)) {
      if (!sit->is_directory()) continue;
      std::string commit = sit->path().filename().string();
      r.snapshots.push_back(commit);
      auto t = sit->last_write_time(ec2);
      if (newest.empty() || t > newest_time) {
        newest_time = t;
        newest = commit;
      }
    }
    std::sort(r.snapshots.begin(), r.snapshots.end());
    r.size_bytes = dir_size(it->path() / "blobs", &r.incomplete_bytes);

    // Describe the snapshot "main" points at, else the newest one.
    std::string shown = newest;
    for (const auto& [rev, commit] : r.refs)
      if (rev == "main" && std::find(r.snapshots.begin(), r.snapshots.end(), commit) != r.snapshots.end()) shown = commit;
    if (!shown.empty()) {
      std::string dir = (snaps / shown).string();
      r.format = describe_model_format(dir);
      r.complete = check_model_dir(dir).ok();
    } else {
      r.format = "no snapshot";
    }
    repos.push_back(std::move(r));
  }
  if (ec) return errorf("scan_cache: reading %s: %s", cache_dir.c_str(), ec.message().c_str());
  std::sort(repos.begin(), repos.end(), [](const CachedRepo& a, const CachedRepo& b) { return a.repo < b.repo; });
  return repos;
}

Result<uint64_t> remove_cached_repo(const std::string& cache_dir, std::string_view repo) {
  PENSIEVE_TRY(validate_repo_id(repo));
  fs::path path = repo_cache_path(cache_dir, repo);
  std::error_code ec;
  if (!fs::is_directory(path, ec))
    return errorf("rm: %.*s is not in the cache (%s); `pensieve list` shows the cached models", int(repo.size()),
                  repo.data(), cache_dir.c_str());
  uint64_t size = dir_size(path / "blobs", nullptr);
  fs::remove_all(path, ec);
  if (ec) return errorf("rm: removing %s: %s", path.c_str(), ec.message().c_str());
  fs::remove_all(fs::path(cache_dir) / ".locks" / repo_folder_name(repo), ec);  // best effort
  return size;
}

}  // namespace pensieve
