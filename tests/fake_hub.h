// A fake Hugging Face hub for tests, on 127.0.0.1 (ephemeral ports), in the test process.
//
// It answers like huggingface.co:
//   GET  /api/models/{org}/{name}/revision/{rev}[?blobs=true]
//        {"id", "sha": commit, "siblings": [{"rfilename", "size", "blobId", "lfs": {"sha256", "size"}}]}
//   GET|HEAD /{org}/{name}/resolve/{rev}/{file}
//        plain files: 200, ETag "<git blob sha1>", X-Repo-Commit
//        LFS files:   302 to the "CDN" (a second server), X-Linked-Etag "<sha256>", X-Linked-Size
//   errors: 401 for a private repo without the right token, 404 with X-Error-Code
//   (RepoNotFound, RevisionNotFound, EntryNotFound) and a JSON {"error"} body.
// Knobs make it cut a transfer, corrupt a file, hide blob ids or never answer; counters record
// what clients asked for.
#pragma once

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "models/store/hash.h"

namespace pensieve::testing {

struct FakeFile {
  std::string name;
  std::string data;
  bool lfs = false;
  bool missing = false;  // listed by the API, but resolve answers 404
};

struct FakeRepo {
  std::string id;      // "org/name"
  std::string commit;  // 40 hex
  std::vector<std::string> tags;  // revisions besides "main" and the commit
  std::vector<FakeFile> files;
  std::string token;   // non-empty: private, needs "Authorization: Bearer <token>"
  bool gated = false;  // with a token: listing public, files need the token (401 GatedRepo)
};

class FakeHub {
 public:
  FakeHub() {
    install_routes();
    hub_port_ = start(hub_, hub_thread_);
    cdn_port_ = start(cdn_, cdn_thread_);
  }
  ~FakeHub() {
    hub_.stop();
    cdn_.stop();
    if (hub_thread_.joinable()) hub_thread_.join();
    if (cdn_thread_.joinable()) cdn_thread_.join();
  }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(hub_port_); }
  void add_repo(FakeRepo r) {
    std::lock_guard<std::mutex> g(mu_);
    repos_[r.id] = std::move(r);
  }

  // Knobs.
  std::atomic<long> cut_after{-1};        // bodies longer than this stop after this many bytes...
  std::atomic<int> cut_times{0};          // ...this many times (a dropped connection)
  std::atomic<bool> corrupt_lfs{false};   // serve LFS files with one byte flipped
  std::atomic<bool> corrupt_plain{false}; // serve plain (git) files with one byte flipped
  std::atomic<bool> blob_info{true};      // the listing carries blob ids / LFS sha256
  std::atomic<int> api_delay_ms{0};       // the API answers this late

  // Counters.
  std::atomic<int> file_gets{0};          // GETs of file bodies (hub plain files and CDN blobs)
  std::atomic<int> api_gets{0};
  std::atomic<int> cdn_auth_headers{0};   // CDN requests that carried an Authorization header
  std::vector<std::string> ranges() {     // Range headers of file GETs, in order
    std::lock_guard<std::mutex> g(mu_);
    return ranges_;
  }

 private:
  static int start(httplib::Server& s, std::thread& t) {
    int port = s.bind_to_any_port("127.0.0.1");
    t = std::thread([&s] { s.listen_after_bind(); });
    for (int i = 0; i < 500 && !s.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return port;
  }

  static void error(httplib::Response& res, int status, const std::string& code, const std::string& msg) {
    res.status = status;
    if (!code.empty()) res.set_header("X-Error-Code", code);
    res.set_content(nlohmann::json{{"error", msg}}.dump(), "application/json");
  }

  // The repo and commit for a request, or an error response (false).
  bool lookup(const httplib::Request& req, httplib::Response& res, const std::string& id, const std::string& rev,
              FakeRepo* out) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = repos_.find(id);
    if (it == repos_.end()) {
      error(res, 404, "RepoNotFound", "Repository not found");
      return false;
    }
    const FakeRepo& r = it->second;
    const bool file_request = req.path.find("/resolve/") != std::string::npos;
    if (r.gated && file_request && req.get_header_value("Authorization") != "Bearer " + r.token) {
      error(res, 401, "GatedRepo", "Access to model " + id + " is restricted.");
      return false;
    }
    if (!r.gated && !r.token.empty() && req.get_header_value("Authorization") != "Bearer " + r.token) {
      error(res, 401, "", "Invalid username or password.");
      return false;
    }
    bool known = rev == "main" || rev == r.commit;
    for (const auto& t : r.tags) known = known || rev == t;
    if (!known) {
      error(res, 404, "RevisionNotFound", "Invalid rev id: " + rev);
      return false;
    }
    *out = r;
    return true;
  }

  // Serves `data` (Range handled by httplib), cut or corrupted as the knobs say.
  void serve_body(const httplib::Request& req, httplib::Response& res, std::string data, bool lfs) {
    if (req.method != "HEAD") {
      ++file_gets;
      std::lock_guard<std::mutex> g(mu_);
      ranges_.push_back(req.get_header_value("Range"));
    }
    if ((lfs ? corrupt_lfs : corrupt_plain) && !data.empty()) data[data.size() / 2] ^= 0x5a;
    long cut = -1;
    if (req.method != "HEAD" && cut_times > 0 && cut_after >= 0 && long(data.size()) > cut_after) {
      --cut_times;
      cut = cut_after;
    }
    auto body = std::make_shared<std::string>(std::move(data));
    res.set_content_provider(body->size(), "application/octet-stream",
                             [body, cut](size_t offset, size_t length, httplib::DataSink& sink) {
                               if (cut >= 0) {  // send part of the asked range, then hang up
                                 size_t n = std::min(length, size_t(cut));
                                 if (n) sink.write(body->data() + offset, n);
                                 return false;
                               }
                               sink.write(body->data() + offset, length);
                               return true;
                             });
  }

  void install_routes() {
    hub_.Get(R"(/api/models/([^/]+)/([^/]+)/revision/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      ++api_gets;
      if (api_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(api_delay_ms.load()));
      FakeRepo r;
      if (!lookup(req, res, req.matches[1].str() + "/" + req.matches[2].str(), req.matches[3].str(), &r)) return;
      nlohmann::json siblings = nlohmann::json::array();
      for (const FakeFile& f : r.files) {
        nlohmann::json s = {{"rfilename", f.name}};
        if (blob_info && req.has_param("blobs")) {
          s["size"] = f.data.size();
          s["blobId"] = git_blob_sha1_hex(f.lfs ? "pointer of " + f.name : f.data);
          if (f.lfs) s["lfs"] = {{"sha256", sha256_hex(f.data)}, {"size", f.data.size()}, {"pointerSize", 134}};
        }
        siblings.push_back(s);
      }
      res.set_content(nlohmann::json{{"id", r.id}, {"sha", r.commit}, {"siblings", siblings}}.dump(), "application/json");
    });
    hub_.Get(R"(/([^/]+)/([^/]+)/resolve/([^/]+)/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      FakeRepo r;
      if (!lookup(req, res, req.matches[1].str() + "/" + req.matches[2].str(), req.matches[3].str(), &r)) return;
      const std::string name = req.matches[4].str();
      res.set_header("X-Repo-Commit", r.commit);
      for (const FakeFile& f : r.files) {
        if (f.name != name || f.missing) continue;
        if (f.lfs) {
          const std::string sha = sha256_hex(f.data);
          {
            std::lock_guard<std::mutex> g(mu_);
            blobs_[sha] = f.data;
          }
          res.status = 302;
          res.set_header("Location", "http://127.0.0.1:" + std::to_string(cdn_port_) + "/blobs/" + sha);
          res.set_header("X-Linked-Etag", "\"" + sha + "\"");
          res.set_header("X-Linked-Size", std::to_string(f.data.size()));
          res.set_header("ETag", "W/\"" + git_blob_sha1_hex("pointer of " + f.name) + "\"");
          return;
        }
        res.set_header("ETag", "\"" + git_blob_sha1_hex(f.data) + "\"");
        serve_body(req, res, f.data, false);
        return;
      }
      error(res, 404, "EntryNotFound", "Entry not found");
    });
    cdn_.Get(R"(/blobs/([0-9a-f]+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.has_header("Authorization")) ++cdn_auth_headers;
      std::string data;
      {
        std::lock_guard<std::mutex> g(mu_);
        auto it = blobs_.find(req.matches[1].str());
        if (it == blobs_.end()) {
          res.status = 404;
          return;
        }
        data = it->second;
      }
      res.set_header("ETag", "\"cdn-" + req.matches[1].str().substr(0, 8) + "\"");
      serve_body(req, res, data, true);
    });
  }

  httplib::Server hub_, cdn_;
  std::thread hub_thread_, cdn_thread_;
  int hub_port_ = 0, cdn_port_ = 0;
  std::mutex mu_;
  std::map<std::string, FakeRepo> repos_;
  std::map<std::string, std::string> blobs_;  // sha256 -> data, for the CDN
  std::vector<std::string> ranges_;
};

// A 127.0.0.1 port with nothing listening: bound to get a free number, closed without listen().
inline int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace pensieve::testing
