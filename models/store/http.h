// A small libcurl wrapper for the hub client: one blocking request, redirects followed (libcurl does
// not forward the Authorization header when a redirect leaves the host, e.g. to the hub's CDN),
// proxies from the environment, and connect / low-speed timeouts so that nothing hangs.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pensieve {

struct HttpHeaders {
  std::vector<std::pair<std::string, std::string>> list;  // names lowercased, in arrival order
  // The value of a header ("" if absent; the last one wins).
  std::string get(std::string_view name) const;
  bool has(std::string_view name) const;
};

struct HttpRequest {
  std::string method = "GET";  // "GET" or "HEAD"
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  bool follow_redirects = true;
  int connect_timeout_s = 5;   // covers name resolution too: no network fails within this
  int low_speed_time_s = 30;   // abort a transfer slower than 1 kB/s for this long
  int total_timeout_s = 0;     // 0: no limit (downloads); API calls set one
  size_t max_body = 64 << 20;  // bytes of body kept in memory when there is no sink
  // Downloads: called when the final response's headers have arrived; false aborts the transfer.
  std::function<bool(long status, const HttpHeaders& headers)> on_response;
  // Downloads: receives the body of a final 2xx response; false aborts. Without a sink, or for a
  // non-2xx response, the body goes to HttpResponse::body (capped).
  std::function<bool(const char* data, size_t n)> sink;
};

enum class HttpFailure {
  none,
  connect,      // name resolution or connection failed: the host is unreachable
  timeout,      // connected, then too slow or silent
  interrupted,  // connection dropped mid-transfer (resumable)
  aborted,      // on_response or sink returned false
  other,        // TLS, protocol, bad URL, ...
};

struct HttpResponse {
  HttpFailure failure = HttpFailure::none;
  std::string error;    // what libcurl said, when failure != none
  long status = 0;      // of the final response
  HttpHeaders first;    // of the first response (the hub's own, before any redirect)
  HttpHeaders headers;  // of the final response
  std::string body;
  std::string url;      // the effective URL after redirects
  bool ok() const { return failure == HttpFailure::none && status >= 200 && status < 300; }
};

HttpResponse http_request(const HttpRequest& req);

// Percent-encodes everything but unreserved characters (and '/' when keep_slash), as Python's
// urllib.parse.quote does: quote(revision, safe="") and quote(filename) in huggingface_hub.
std::string url_escape(std::string_view s, bool keep_slash);

}  // namespace pensieve
