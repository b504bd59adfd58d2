#include "models/store/http.h"

#include <curl/curl.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace pensieve {

std::string HttpHeaders::get(std::string_view name) const {
  for (auto it = list.rbegin(); it != list.rend(); ++it)
    if (it->first == name) return it->second;
  return "";
}

bool HttpHeaders::has(std::string_view name) const {
  for (const auto& h : list)
    if (h.first == name) return true;
  return false;
}

std::string url_escape(std::string_view s, bool keep_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/');
    if (unreserved) {
      out += char(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

namespace {

// Bodies of error responses are kept for messages, up to this many bytes.
constexpr size_t kMaxErrorBody = 64 << 10;

struct Transfer {
  const HttpRequest* req = nullptr;
  HttpResponse* resp = nullptr;
  HttpHeaders current;
  long current_status = 0;
  int n_responses = 0;
  bool final_seen = false;
  bool body_too_large = false;
};

bool is_redirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.substr(0, 5) == "HTTP/") {  // a new response (one per redirect hop)
    t->current = HttpHeaders{};
    size_t sp = line.find(' ');
    t->current_status = sp == std::string_view::npos ? 0 : std::strtol(std::string(line.substr(sp + 1)).c_str(), nullptr, 10);
    return size * n;
  }
  if (line.empty()) {  // end of this response's headers
    if (t->current_status >= 100 && t->current_status < 200) return size * n;  // 100 Continue
    if (++t->n_responses == 1) t->resp->first = t->current;
    bool followed = t->req->follow_redirects && is_redirect(t->current_status) && t->current.has("location");
    if (!followed) {
      t->final_seen = true;
      t->resp->status = t->current_status;
      t->resp->headers = t->current;
      if (t->req->on_response && !t->req->on_response(t->current_status, t->current)) return 0;  // abort
    }
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name(line.substr(0, colon));
  for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  t->current.list.emplace_back(std::move(name), std::string(value));
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (!t->final_seen) return bytes;  // the body of a redirect
  const long s = t->resp->status;
  if (s >= 200 && s < 300 && t->req->sink) return t->req->sink(data, bytes) ? bytes : 0;
  size_t cap = t->req->sink ? kMaxErrorBody : t->req->max_body;
  if (t->resp->body.size() + bytes > cap) {
    if (!t->req->sink) {
      t->body_too_large = true;
      return 0;
    }
    t->resp->body.append(data, cap - t->resp->body.size());
    return bytes;
  }
  t->resp->body.append(data, bytes);
  return bytes;
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

}  // namespace

HttpResponse http_request(const HttpRequest& req) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });

  HttpResponse resp;
  CURL* curl = curl_easy_init();
  if (!curl) {
    resp.failure = HttpFailure::other;
    resp.error = "curl_easy_init failed";
    return resp;
  }
  Transfer t;
  t.req = &req;
  t.resp = &resp;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  for (const std::string& h : req.headers) headers = curl_slist_append(headers, h.c_str());

  curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "pensieve/0.1.0");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (req.method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, req.follow_redirects ? 1L : 0L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  // Custom Authorization headers are not sent on to another host or port (libcurl >= 7.83).
  curl_easy_setopt(curl, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, long(req.connect_timeout_s));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, long(req.low_speed_time_s));
  if (req.total_timeout_s > 0) curl_easy_setopt(curl, CURLOPT_TIMEOUT, long(req.total_timeout_s));
  // libcurl reads http_proxy / https_proxy / all_proxy / no_proxy itself, but (for CGI safety) not
  // an upper-case HTTP_PROXY; Python's requests, which huggingface_hub users rely on, reads both.
  if (req.url.rfind("http://", 0) == 0 && !env("http_proxy") && env("HTTP_PROXY")) {
    curl_easy_setopt(curl, CURLOPT_PROXY, env("HTTP_PROXY"));
    if (const char* np = env("no_proxy") ? env("no_proxy") : env("NO_PROXY")) curl_easy_setopt(curl, CURLOPT_NOPROXY, np);
  }
  // A private CA bundle, as requests and curl read it.
  if (const char* ca = env("REQUESTS_CA_BUNDLE") ? env("REQUESTS_CA_BUNDLE") : env("CURL_CA_BUNDLE"))
    curl_easy_setopt(curl, CURLOPT_CAINFO, ca);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);

  CURLcode rc = curl_easy_perform(curl);
  char* eff = nullptr;
  if (curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff) resp.url = eff;
  if (rc != CURLE_OK) {
    resp.error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    switch (rc) {
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_RESOLVE_PROXY:
      case CURLE_COULDNT_CONNECT:
        resp.failure = HttpFailure::connect;
        break;
      case CURLE_OPERATION_TIMEDOUT: {
        // Timed out before any response arrived while connecting: treat as unreachable.
        double connect_time = 0;
        curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME, &connect_time);
        resp.failure = (connect_time == 0 && t.n_responses == 0) ? HttpFailure::connect : HttpFailure::timeout;
        break;
      }
      case CURLE_PARTIAL_FILE:
      case CURLE_RECV_ERROR:
      case CURLE_SEND_ERROR:
      case CURLE_GOT_NOTHING:
      case CURLE_HTTP2:
      case CURLE_HTTP2_STREAM:
        resp.failure = HttpFailure::interrupted;
        break;
      case CURLE_WRITE_ERROR:
        resp.failure = HttpFailure::aborted;
        if (t.body_too_large) {
          resp.failure = HttpFailure::other;
          resp.error = "response body larger than " + std::to_string(req.max_body) + " bytes";
        }
        break;
      default:
        resp.failure = HttpFailure::other;
        break;
    }
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return resp;
}

}  // namespace pensieve
