// The server in-process on 127.0.0.1 (any free port) with the phi3-tiny fixture model, driven
// over real HTTP: exact SSE bytes of both APIs, every bad input we promise a 4xx for, client
// disconnects (mid-stream and during prefill) cancelling their sequence, overload, auth, body
// limit, prefix reuse across Claude Code's billing header. The official SDKs are exercised by
// the node tests in tests/server/ (run_node_tests.sh).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <thread>

#include "server/api.h"
#include "server/generation.h"
#include "server/server.h"

namespace pensieve::server {
namespace {

const std::string kModel = std::string(PENSIEVE_TEST_DATA) + "/models/phi3-tiny";

// A server on a free port, model attached, serving on its own thread.
struct TestServer {
  std::unique_ptr<Server> srv;
  std::thread thread;
  int port = 0;

  explicit TestServer(ServerOptions o = {}, int64_t kv_blocks = 512) {
    o.host = "127.0.0.1";
    o.port = 0;
    o.model_id = "phi3-tiny";
    o.poll_ms = 10;
    if (o.engine.max_seqs == 16) o.engine.max_seqs = 4;  // the default: 4 slots are plenty here
    srv = std::make_unique<Server>(o);
    auto p = srv->bind();
    EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error());
    port = p.ok() ? *p : 0;
    thread = std::thread([this] { srv->serve(); });
    ModelOptions mo;
    mo.threads = 2;
    mo.kv.n_blocks = kv_blocks;
    auto model = Model::load(kModel, mo);
    EXPECT_TRUE(model.ok()) << (model.ok() ? "" : model.error());
    auto tok = Tokenizer::load(kModel);
    EXPECT_TRUE(tok.ok());
    auto tmpl = ChatTemplate::select(*tok);
    EXPECT_TRUE(tmpl.ok());
    srv->attach(std::move(*model), std::move(*tok), std::move(*tmpl));
  }
  ~TestServer() {
    srv->stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60);
    return c;
  }
};

json post_json(const TestServer& s, const std::string& path, const std::string& body, int* status,
               httplib::Headers h = {}) {
  auto r = s.client().Post(path.c_str(), h, body, "application/json");
  EXPECT_TRUE(r) << "no response for " << path;
  if (!r) return {};
  *status = r->status;
  json j = json::parse(r->body, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r->body;
  return j;
}

std::string msg_body(const std::string& content, int max_tokens, bool stream = false, const std::string& extra = "") {
  return R"({"model":"claude-sonnet-4-5","max_tokens":)" + std::to_string(max_tokens) +
         R"(,"temperature":0,"stream":)" + (stream ? "true" : "false") + extra +
         R"(,"messages":[{"role":"user","content":)" + json(content).dump() + "}]}";
}

// ---- pieces without HTTP ----------------------------------------------------------------------

TEST(StopMatcher, HoldsBackPossibleStartsAcrossPieces) {
  StopMatcher m({"STOP", "end."});
  std::string out;
  for (const char* piece : {"Hello S", "T", "x and e", "nd", "!", " ST", "OP after"}) out += m.feed(piece);
  EXPECT_EQ(out, "Hello STx and end! ");
  EXPECT_EQ(m.matched(), "STOP");
  EXPECT_TRUE(m.done());
  EXPECT_EQ(m.feed("more"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, EarliestMatchWinsAndHeldTextFlushes) {
  StopMatcher m({"bc", "abcd"});
  EXPECT_EQ(m.feed("xab"), "x");  // "ab" may start "abcd"; "b" may start "bc"
  EXPECT_EQ(m.feed("c"), "a");
  EXPECT_EQ(m.matched(), "bc");
  StopMatcher n({"<|x|>"});
  EXPECT_EQ(n.feed("héllo <|"), "héllo ");
  EXPECT_EQ(n.flush(), "<|");
  StopMatcher none({});
  EXPECT_EQ(none.feed("abc"), "abc");
}

TEST(BillingHeader, StrippedLineOnly) {
  EXPECT_EQ(strip_billing_header("x-anthropic-billing-header: cc_version=2.1.3; cch=ab12;\nYou are Claude Code."),
            "You are Claude Code.");
  EXPECT_EQ(strip_billing_header("A\n  x-anthropic-billing-header: cch=1;\nB"), "A\nB");
  EXPECT_EQ(strip_billing_header("x-anthropic-billing-header: cch=1;"), "");
  EXPECT_EQ(strip_billing_header("mentions x-anthropic-billing-header: inline"), "mentions x-anthropic-billing-header: inline");
}

TEST(Parse, AnthropicContentShapes) {
  ParseOptions o;
  auto j = json::parse(R"({"model":"m","max_tokens":5,
    "system":[{"type":"text","text":"x-anthropic-billing-header: cch=9;"},{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
    "tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"auto"},"metadata":{"user_id":"u"},
    "messages":[{"role":"system","content":"More rules."},
                {"role":"user","content":[{"type":"text","text":"A"},{"type":"image","source":{}},{"type":"text","text":"B"}]},
                {"role":"assistant","content":[{"type":"thinking","thinking":"hm"},{"type":"tool_use","id":"1","name":"ls","input":{"p":"."}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"1","content":[{"type":"text","text":"f.txt"}]}]},
                {"role":"system","content":"Late rule."},
                {"role":"assistant","content":"Sure"}]})");
  auto r = parse_anthropic_messages(j, o);
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->messages.size(), 5u);
  EXPECT_EQ(r->messages[0].role, "system");
  EXPECT_EQ(r->messages[0].content, "Be brief.\n\nMore rules.");
  EXPECT_EQ(r->messages[1].content, "A\n\n[image]\n\nB");
  EXPECT_EQ(r->messages[2].content, "[tool_use ls] {\"p\":\".\"}");
  EXPECT_EQ(r->messages[3].content, "[tool_result] f.txt");
  EXPECT_EQ(r->messages[4].role, "system");
  ASSERT_TRUE(r->assistant_prefix.has_value());
  EXPECT_EQ(*r->assistant_prefix, "Sure");
}

// ---- HTTP ---------------------------------------------------------------------------------------

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { s_ = new TestServer(); }
  static void TearDownTestSuite() {
    delete s_;
    s_ = nullptr;
  }
  static TestServer* s_;
};
TestServer* ServerTest::s_ = nullptr;

TEST_F(ServerTest, HealthModelsMetrics) {
  auto c = s_->client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->body, R"({"status":"ok","model":"phi3-tiny"})");
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  json mj = json::parse(m->body);
  EXPECT_EQ(mj["data"][0]["id"], "phi3-tiny");
  EXPECT_EQ(mj["object"], "list");
  auto one = c.Get("/v1/models/claude-opus-4");
  ASSERT_TRUE(one);
  EXPECT_EQ(json::parse(one->body)["id"], "phi3-tiny");
  // Requests are counted once answered (httplib's logger runs after the response is written), so
  // the /health request's line may land a moment after the client has read the response.
  const std::string health_line = "pensieve_http_requests_total{path=\"/health\",status=\"200\"}";
  auto x = c.Get("/metrics");
  ASSERT_TRUE(x);
  for (int i = 0; i < 200 && x->body.find(health_line) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    x = c.Get("/metrics");
    ASSERT_TRUE(x);
  }
  for (const char* name : {"pensieve_queue_depth", "pensieve_active_slots", "pensieve_kv_blocks_used",
                           "pensieve_kv_blocks_total", "pensieve_kv_blocks_cached", "pensieve_output_tokens_per_second",
                           "pensieve_preemptions_total", "pensieve_engine_steps_total",
                           "pensieve_engine_step_seconds_total", "pensieve_engine_forward_seconds_total",
                           "pensieve_engine_prefill_steps_total", "pensieve_engine_prefill_step_seconds_total",
                           "pensieve_engine_step_tokens_total",
                           "pensieve_http_requests_total{path=\"/health\",status=\"200\"}"})
    EXPECT_NE(x->body.find(name), std::string::npos) << name;
}

TEST_F(ServerTest, AnthropicNonStreaming) {
  int st = 0;
  json r = post_json(*s_, "/v1/messages", msg_body("Hello", 12), &st, {{"anthropic-version", "2026-10-21"}});
  ASSERT_EQ(st, 200) << r.dump();
  EXPECT_TRUE(std::regex_match(r["id"].get<std::string>(), std::regex("msg_[0-9A-Za-z]{24}")));
  EXPECT_EQ(r["type"], "message");
  EXPECT_EQ(r["role"], "assistant");
  EXPECT_EQ(r["model"], "phi3-tiny");
  EXPECT_EQ(r["stop_reason"], "max_tokens");
  EXPECT_TRUE(r["stop_sequence"].is_null());
  EXPECT_EQ(r["content"][0]["type"], "text");
  EXPECT_FALSE(r["content"][0]["text"].get<std::string>().empty());
  EXPECT_EQ(r["usage"]["output_tokens"], 12);
  EXPECT_EQ(r["usage"]["input_tokens"].get<int>() + r["usage"]["cache_read_input_tokens"].get<int>(), 4);
  json c = post_json(*s_, "/v1/messages/count_tokens", R"({"model":"x","messages":[{"role":"user","content":"Hello"}]})", &st);
  EXPECT_EQ(st, 200);
  EXPECT_EQ(c, json::parse(R"({"input_tokens":4})"));
}

// The stream, byte for byte, apart from the id and how the text is cut into deltas.
TEST_F(ServerTest, AnthropicStreamExactBytes) {
  int st = 0;
  json full = post_json(*s_, "/v1/messages", msg_body("Tell me", 6), &st);
  ASSERT_EQ(st, 200);
  std::string want_text = full["content"][0]["text"];
  auto r = s_->client().Post("/v1/messages", msg_body("Tell me", 6, true), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  std::string body = std::regex_replace(r->body, std::regex("msg_[0-9A-Za-z]{24}"), "msg_ID");
  std::string rest, text;
  size_t pos = 0, n_deltas = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    ASSERT_NE(end, std::string::npos) << "unterminated event at " << pos;
    std::string ev = body.substr(pos, end + 2 - pos);
    pos = end + 2;
    const std::string delta = "event: content_block_delta\ndata: ";
    if (ev.rfind(delta, 0) == 0) {
      json d = json::parse(ev.substr(delta.size()));
      EXPECT_EQ(ev, delta + R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":)" +
                        d["delta"]["text"].dump() + "}}\n\n");
      text += d["delta"]["text"].get<std::string>();
      ++n_deltas;
    } else {
      rest += ev;
    }
  }
  EXPECT_GE(n_deltas, 1u);
  EXPECT_EQ(text, want_text);
  EXPECT_EQ(rest,
            "event: message_start\n"
            R"(data: {"type":"message_start","message":{"id":"msg_ID","type":"message","role":"assistant","model":"phi3-tiny","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}})"
            "\n\n"
            "event: content_block_start\n"
            R"(data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"
            "\n\n"
            "event: ping\n"
            R"(data: {"type":"ping"})"
            "\n\n"
            "event: content_block_stop\n"
            R"(data: {"type":"content_block_stop","index":0})"
            "\n\n"
            "event: message_delta\n"
            R"(data: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"input_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":6}})"
            "\n\n"
            "event: message_stop\n"
            R"(data: {"type":"message_stop"})"
            "\n\n");
}

TEST_F(ServerTest, OpenAiStreamExactBytes) {
  const std::string req =
      R"({"model":"gpt-4o","max_tokens":5,"temperature":0,"messages":[{"role":"user","content":"Hi there"}])";
  int st = 0;
  json full = post_json(*s_, "/v1/chat/completions", req + "}", &st);
  ASSERT_EQ(st, 200) << full.dump();
  EXPECT_EQ(full["object"], "chat.completion");
  EXPECT_EQ(full["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(full["usage"]["completion_tokens"], 5);
  std::string want_text = full["choices"][0]["message"]["content"];
  for (bool usage : {false, true}) {
    std::string body = req + R"(,"stream":true)" + (usage ? R"(,"stream_options":{"include_usage":true}})" : "}");
    auto r = s_->client().Post("/v1/chat/completions", body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    std::string s = r->body;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(s, m, std::regex(R"re("id":"(chatcmpl-[0-9A-Za-z]{24})","object":"chat.completion.chunk","created":([0-9]+),)re")));
    const std::string id = m[1].str(), created = m[2].str();  // m points into s
    s = std::regex_replace(s, std::regex(id), "ID");
    s = std::regex_replace(s, std::regex(R"("created":)" + created), R"("created":0)");
    const std::string head = R"(data: {"id":"ID","object":"chat.completion.chunk","created":0,"model":"phi3-tiny","system_fingerprint":null,"choices":[{"index":0,"delta":)";
    const std::string u = usage ? R"(,"usage":null)" : "";
    std::string expect_start = head + R"({"role":"assistant","content":""},"logprobs":null,"finish_reason":null}])" + u + "}\n\n";
    ASSERT_EQ(s.substr(0, expect_start.size()), expect_start);
    s = s.substr(expect_start.size());
    std::string text;
    while (s.rfind(head + R"({"content":)", 0) == 0) {
      size_t end = s.find("\n\n");
      json d = json::parse(s.substr(6, end - 6));
      std::string c = d["choices"][0]["delta"]["content"];
      EXPECT_EQ(s.substr(0, end + 2), head + R"({"content":)" + json(c).dump() + R"(},"logprobs":null,"finish_reason":null}])" + u + "}\n\n");
      text += c;
      s = s.substr(end + 2);
    }
    EXPECT_EQ(text, want_text);
    std::string tail = head + R"({},"logprobs":null,"finish_reason":"length"}])" + u + "}\n\n";
    if (usage)
      tail += R"(data: {"id":"ID","object":"chat.completion.chunk","created":0,"model":"phi3-tiny","system_fingerprint":null,"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10,"prompt_tokens_details":{"cached_tokens":0}}})"
              "\n\n";
    tail += "data: [DONE]\n\n";
    EXPECT_EQ(s, tail);
  }
}

TEST_F(ServerTest, StopSequences) {
  int st = 0;
  json full = post_json(*s_, "/v1/messages", msg_body("Hello", 20), &st);
  std::string text = full["content"][0]["text"];
  ASSERT_GT(text.size(), 12u);
  // A stop string that starts inside one token and ends in a later one.
  std::string stop = text.substr(5, 6);
  json r = post_json(*s_, "/v1/messages", msg_body("Hello", 20, false, R"(,"stop_sequences":[)" + json(stop).dump() + "]"), &st);
  ASSERT_EQ(st, 200) << r.dump();
  EXPECT_EQ(r["stop_reason"], "stop_sequence");
  EXPECT_EQ(r["stop_sequence"], stop);
  EXPECT_EQ(r["content"][0]["text"], text.substr(0, text.find(stop)));
  // Streaming gives the same text; OpenAI reports finish_reason "stop".
  auto s = s_->client().Post("/v1/messages", msg_body("Hello", 20, true, R"(,"stop_sequences":[)" + json(stop).dump() + "]"),
                             "application/json");
  ASSERT_TRUE(s);
  EXPECT_NE(s->body.find(R"("stop_reason":"stop_sequence","stop_sequence":)" + json(stop).dump()), std::string::npos);
  EXPECT_EQ(s->body.find(stop), s->body.find(R"("stop_sequence":)" + json(stop).dump()) + 17) << "the stop string is never streamed";
  json o = post_json(*s_, "/v1/chat/completions",
                     R"({"model":"m","max_tokens":20,"temperature":0,"stop":)" + json(stop).dump() +
                         R"(,"messages":[{"role":"user","content":"Hello"}]})",
                     &st);
  EXPECT_EQ(o["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(o["choices"][0]["message"]["content"], text.substr(0, text.find(stop)));
}

void expect_anthropic_error(const TestServer& s, const std::string& body, int status, const std::string& type,
                            const std::string& message_part, const std::string& path = "/v1/messages") {
  int st = 0;
  json r = post_json(s, path, body, &st);
  EXPECT_EQ(st, status) << body << " -> " << r.dump();
  EXPECT_EQ(r["type"], "error") << r.dump();
  EXPECT_EQ(r["error"]["type"], type) << body << " -> " << r.dump();
  std::string msg = r["error"].value("message", "");
  EXPECT_NE(msg.find(message_part), std::string::npos) << body << " -> " << msg;
}

void expect_openai_error(const TestServer& s, const std::string& body, int status, const std::string& type,
                         const std::string& message_part) {
  int st = 0;
  json r = post_json(s, "/v1/chat/completions", body, &st);
  EXPECT_EQ(st, status) << body << " -> " << r.dump();
  EXPECT_EQ(r["error"]["type"], type) << body << " -> " << r.dump();
  EXPECT_TRUE(r["error"].contains("param") && r["error"].contains("code")) << r.dump();
  std::string msg = r["error"].value("message", "");
  EXPECT_NE(msg.find(message_part), std::string::npos) << body << " -> " << msg;
}

TEST_F(ServerTest, AnthropicBadInputs) {
  const std::string bad = "invalid_request_error";
  const std::string msgs = R"("messages":[{"role":"user","content":"Hi"}])";
  expect_anthropic_error(*s_, "{\"model\": ", 400, bad, "not valid JSON");
  expect_anthropic_error(*s_, "[1,2]", 400, bad, "must be a JSON object");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":1e999,"messages":[]})", 400, bad, "not valid JSON");
  expect_anthropic_error(*s_, "{\"model\":\"\xff\xfe\"}", 400, bad, "not valid JSON");
  expect_anthropic_error(*s_, std::string(1000, '[') + std::string(1000, ']'), 400, bad, "deeper than");
  expect_anthropic_error(*s_, R"({"max_tokens":5,)" + msgs + "}", 400, bad, "model: field required");
  expect_anthropic_error(*s_, R"({"model":7,"max_tokens":5,)" + msgs + "}", 400, bad, "model: expected a string, got number");
  expect_anthropic_error(*s_, R"({"model":"m",)" + msgs + "}", 400, bad, "max_tokens: field required");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":0,)" + msgs + "}", 400, bad, "max_tokens: 0 is out of range");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":-3,)" + msgs + "}", 400, bad, "max_tokens: -3");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":"10",)" + msgs + "}", 400, bad, "max_tokens: expected an integer, got string");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":2.5,)" + msgs + "}", 400, bad, "max_tokens: expected an integer");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":100000,)" + msgs + "}", 400, bad, "max_tokens: 100000 is more than the context window of 4096");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5})", 400, bad, "messages: field required");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"messages":[]})", 400, bad, "at least one message");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"messages":{"role":"user"}})", 400, bad, "messages: expected an array");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"messages":[{"role":"robot","content":"x"}]})", 400, bad, "messages.0.role");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"messages":[{"role":"user"}]})", 400, bad, "messages.0.content: field required");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":5}]})", 400, bad, "messages.0.content: expected a string or an array");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"text":"x"}]}]})", 400, bad, "messages.0.content.0.type: field required");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text"}]}]})", 400, bad, "messages.0.content.0.text: field required");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"system":5,)" + msgs + "}", 400, bad, "system: expected");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"temperature":"hot",)" + msgs + "}", 400, bad, "temperature: expected a number");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"temperature":3,)" + msgs + "}", 400, bad, "temperature: 3 is out of range");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"top_p":0,)" + msgs + "}", 400, bad, "top_p");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"top_k":-1,)" + msgs + "}", 400, bad, "top_k");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"stop_sequences":"x",)" + msgs + "}", 400, bad, "stop_sequences: expected an array");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"stop_sequences":[""],)" + msgs + "}", 400, bad, "stop_sequences.0: must not be empty");
  expect_anthropic_error(*s_, R"({"model":"m","max_tokens":5,"stream":"yes",)" + msgs + "}", 400, bad, "stream: expected a boolean");
  expect_anthropic_error(*s_, R"({"model":"m","messages":5})", 400, bad, "messages: expected an array", "/v1/messages/count_tokens");
  // A prompt longer than the context: 400 with the token counts, never truncated.
  std::string long_text;
  for (int i = 0; i < 5000; ++i) long_text += "word" + std::to_string(i) + " ";
  expect_anthropic_error(*s_, msg_body(long_text, 10), 400, bad, "tokens, but the context window is 4096 tokens");
  expect_anthropic_error(*s_, msg_body(long_text, 10, true), 400, bad, "prompt is too long: ");
  // Unknown fields, any model name and any anthropic-version are fine.
  int st = 0;
  json ok = post_json(*s_, "/v1/messages", R"({"model":"claude-opus-4-1-20250805","max_tokens":2,"future_field":{"a":1},)" + msgs + "}", &st,
                      {{"anthropic-version", "2023-06-01"}, {"anthropic-beta", "whatever"}});
  EXPECT_EQ(st, 200) << ok.dump();
  EXPECT_EQ(ok["model"], "phi3-tiny");
  // An unknown path answers 404 in the API's shape.
  expect_anthropic_error(*s_, "{}", 404, "not_found_error", "not an endpoint", "/v1/messages/batches");
}

TEST_F(ServerTest, OpenAiBadInputs) {
  const std::string bad = "invalid_request_error";
  const std::string msgs = R"("messages":[{"role":"user","content":"Hi"}])";
  expect_openai_error(*s_, "nope", 400, bad, "not valid JSON");
  expect_openai_error(*s_, R"({)" + msgs + "}", 400, bad, "model: field required");
  expect_openai_error(*s_, R"({"model":"m"})", 400, bad, "messages: field required");
  expect_openai_error(*s_, R"({"model":"m","messages":[]})", 400, bad, "at least one message");
  expect_openai_error(*s_, R"({"model":"m","messages":[{"role":"user","content":{"x":1}}]})", 400, bad, "messages.0.content");
  expect_openai_error(*s_, R"({"model":"m","max_tokens":0,)" + msgs + "}", 400, bad, "max_tokens: 0 is out of range");
  expect_openai_error(*s_, R"({"model":"m","max_completion_tokens":"5",)" + msgs + "}", 400, bad, "max_completion_tokens: expected an integer");
  expect_openai_error(*s_, R"({"model":"m","max_tokens":5000,)" + msgs + "}", 400, bad, "more than the context window");
  expect_openai_error(*s_, R"({"model":"m","n":3,)" + msgs + "}", 400, bad, "n: 3 is not supported");
  expect_openai_error(*s_, R"({"model":"m","stop":7,)" + msgs + "}", 400, bad, "stop: expected a string or an array");
  expect_openai_error(*s_, R"({"model":"m","presence_penalty":5,)" + msgs + "}", 400, bad, "presence_penalty");
  expect_openai_error(*s_, R"({"model":"m","stream_options":true,)" + msgs + "}", 400, bad, "stream_options: expected an object");
  // nulls are "not given"; tools are accepted and ignored.
  int st = 0;
  json ok = post_json(*s_, "/v1/chat/completions",
                      R"({"model":"m","max_tokens":2,"temperature":null,"stop":null,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto",)" + msgs + "}", &st);
  EXPECT_EQ(st, 200) << ok.dump();
}

// count_tokens equals the prompt the generation uses, and the billing-header line of Claude
// Code's first system block is dropped, so turns with different hashes share cached blocks.
TEST_F(ServerTest, BillingHeaderDoesNotBreakPrefixReuse) {
  std::string sys;
  for (int i = 0; i < 40; ++i) sys += "Rule " + std::to_string(i) + ": be helpful and precise. ";
  auto body = [&](const std::string& hash, bool count) {
    return std::string(R"({"model":"claude-sonnet-4-5",)") + (count ? "" : R"("max_tokens":3,"temperature":0,)") +
           R"("system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.37.d4f; cc_entrypoint=cli; cch=)" +
           hash + R"(;"},{"type":"text","text":)" + json(sys).dump() +
           R"(}],"messages":[{"role":"user","content":"What now?"}]})";
  };
  int st = 0;
  json c1 = post_json(*s_, "/v1/messages/count_tokens", body("a1b2c", true), &st);
  json c2 = post_json(*s_, "/v1/messages/count_tokens", body("zz999", true), &st);
  EXPECT_EQ(c1, c2);
  json r1 = post_json(*s_, "/v1/messages", body("a1b2c", false), &st);
  ASSERT_EQ(st, 200) << r1.dump();
  json r2 = post_json(*s_, "/v1/messages", body("zz999", false), &st);
  ASSERT_EQ(st, 200) << r2.dump();
  int64_t total = c1["input_tokens"];
  EXPECT_EQ(r2["usage"]["input_tokens"].get<int64_t>() + r2["usage"]["cache_read_input_tokens"].get<int64_t>(), total);
  EXPECT_GE(r2["usage"]["cache_read_input_tokens"].get<int64_t>(), total - 16) << "all full blocks reused";
  EXPECT_EQ(r1["content"], r2["content"]);
}

// ---- sockets: disconnects ---------------------------------------------------------------------

int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

void send_post(int fd, const std::string& path, const std::string& body) {
  std::string req = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
  size_t off = 0;
  while (off < req.size()) {
    ssize_t n = send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    off += size_t(n);
  }
}

// Reads until `needle` has been seen (or the peer closes / 30 s pass).
std::string read_until(int fd, const std::string& needle) {
  std::string got;
  char buf[4096];
  auto t0 = std::chrono::steady_clock::now();
  while (got.find(needle) == std::string::npos && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30)) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, size_t(n));
  }
  return got;
}

// Polls until pred(stats) holds (or 10 s pass).
template <class Pred>
bool wait_for(const Server& srv, Pred pred) {
  for (int i = 0; i < 2000; ++i) {
    if (pred(srv.engine_stats())) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

std::string metric_line(const TestServer& s, const std::string& name) {
  auto r = s.client().Get("/metrics");
  if (!r) return "";
  std::smatch m;
  if (std::regex_search(r->body, m, std::regex("\n" + name + " ([0-9.e+-]+)\n"))) return m[1];
  return "";
}

TEST(ServerDisconnect, MidStreamCancelsTheSequence) {
  TestServer s;
  int fd = connect_to(s.port);
  send_post(fd, "/v1/messages", msg_body("Write a long story", 3000, true));
  std::string got = read_until(fd, "content_block_delta");
  ASSERT_NE(got.find("content_block_delta"), std::string::npos) << got;
  close(fd);
  // Engine stats are published at the end of a step, and the first token reaches the client
  // during its step: requests_total tells that the stats are past the admission.
  EXPECT_TRUE(wait_for(*s.srv, [](const EngineStats& st) { return st.requests_total == 1 && st.running == 0 && st.waiting == 0; }));
  EngineStats st = s.srv->engine_stats();
  EXPECT_LT(st.output_tokens_total, 2000) << "generation stopped long before max_tokens";
  EXPECT_EQ(st.kv_blocks_used, st.kv_blocks_cached) << "no blocks held by a sequence";
  EXPECT_EQ(metric_line(s, "pensieve_client_disconnects_total"), "1");
  auto h = s.client().Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// The client leaves while its long prompt is still being prefilled (small step budget): the
// sequence ends without producing a token. Also for a non-streaming request.
TEST(ServerDisconnect, DuringPrefillCancelsTheSequence) {
  ServerOptions o;
  o.engine.max_seqs = 1;
  o.engine.max_batch_tokens = 2;  // ~1,700 steps for the prompt below
  TestServer s(o);
  std::string long_text;
  for (int i = 0; i < 700; ++i) long_text += "w" + std::to_string(i) + " ";
  for (bool stream : {true, false}) {
    int64_t out_before = s.srv->engine_stats().output_tokens_total;
    int64_t req_before = s.srv->engine_stats().requests_total;
    int fd = connect_to(s.port);
    send_post(fd, "/v1/messages", msg_body(long_text + (stream ? "a" : "b"), 50, stream));
    ASSERT_TRUE(wait_for(*s.srv, [&](const EngineStats& st) { return st.requests_total > req_before && st.running == 1; }));
    close(fd);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(wait_for(*s.srv, [](const EngineStats& st) { return st.running == 0; }));
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EngineStats st = s.srv->engine_stats();
    EXPECT_EQ(st.output_tokens_total, out_before) << "cancelled before its first token (stream " << stream << ")";
    EXPECT_EQ(st.kv_blocks_used, st.kv_blocks_cached) << "its blocks are back in the pool";
    EXPECT_LT(secs, 2.0);
  }
  EXPECT_EQ(metric_line(s, "pensieve_client_disconnects_total"), "2");
}

// ---- limits -----------------------------------------------------------------------------------

TEST(ServerLimits, ApiKeyBodySizeAndOverload) {
  ServerOptions o;
  o.api_key = "sekrit";
  o.max_body_bytes = 4096;
  o.engine.max_seqs = 1;
  o.engine.max_queue = 0;
  TestServer s(o);
  const std::string body = msg_body("Hello", 3);
  int st = 0;
  json r = post_json(s, "/v1/messages", body, &st);
  EXPECT_EQ(st, 401);
  EXPECT_EQ(r["type"], "error");
  EXPECT_EQ(r["error"]["type"], "authentication_error");
  r = post_json(s, "/v1/messages", body, &st, {{"x-api-key", "wrong"}});
  EXPECT_EQ(st, 401);
  r = post_json(s, "/v1/chat/completions", R"({"model":"m","messages":[{"role":"user","content":"Hi"}]})", &st,
                {{"Authorization", "Bearer wrong"}});
  EXPECT_EQ(st, 401);
  EXPECT_EQ(r["error"]["code"], "invalid_api_key");
  r = post_json(s, "/v1/messages", body, &st, {{"x-api-key", "sekrit"}});
  EXPECT_EQ(st, 200) << r.dump();
  r = post_json(s, "/v1/messages", body, &st, {{"Authorization", "Bearer sekrit"}});
  EXPECT_EQ(st, 200) << r.dump();
  auto h = s.client().Get("/health");  // health and metrics need no key
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);

  // Body over the limit: 413 in each shape.
  std::string big = msg_body(std::string(8000, 'x'), 3);
  r = post_json(s, "/v1/messages", big, &st, {{"x-api-key", "sekrit"}});
  EXPECT_EQ(st, 413);
  EXPECT_EQ(r["error"]["type"], "request_too_large");
  r = post_json(s, "/v1/chat/completions", big, &st, {{"x-api-key", "sekrit"}});
  EXPECT_EQ(st, 413);
  EXPECT_EQ(r["error"]["code"], "request_too_large");

  // One slot, no queue: while a long stream runs, the next request is overloaded.
  int fd = connect_to(s.port);
  std::string req = "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: sekrit\r\nContent-Type: application/json\r\n";
  std::string sb = msg_body("Long one", 3000, true);
  req += "Content-Length: " + std::to_string(sb.size()) + "\r\n\r\n" + sb;
  ASSERT_EQ(send(fd, req.data(), req.size(), MSG_NOSIGNAL), ssize_t(req.size()));
  ASSERT_NE(read_until(fd, "content_block_delta").find("content_block_delta"), std::string::npos);
  r = post_json(s, "/v1/messages", body, &st, {{"x-api-key", "sekrit"}});
  EXPECT_EQ(st, 529);
  EXPECT_EQ(r["error"]["type"], "overloaded_error");
  r = post_json(s, "/v1/chat/completions", R"({"model":"m","messages":[{"role":"user","content":"Hi"}]})", &st,
                {{"x-api-key", "sekrit"}});
  EXPECT_EQ(st, 429);
  EXPECT_EQ(r["error"]["type"], "rate_limit_error");
  close(fd);
  // Admitted so far: two answered requests and the long stream.
  EXPECT_TRUE(wait_for(*s.srv, [](const EngineStats& st) { return st.requests_total == 3 && st.running == 0; }));
  r = post_json(s, "/v1/messages", body, &st, {{"x-api-key", "sekrit"}});
  EXPECT_EQ(st, 200) << "served again once the slot is free";
}

// No SO_REUSEPORT: a second server on a port in use fails instead of sharing the connections.
TEST(ServerBind, PortInUseIsAnError) {
  TestServer s;
  ServerOptions o;
  o.port = s.port;
  Server second(o);
  auto p = second.bind();
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().find("cannot bind 127.0.0.1:" + std::to_string(s.port)), std::string::npos) << p.error();
}

// A stream cut by shutdown ends with an error event, not mid-air.
TEST(ServerShutdown, StreamsEndWithAnErrorEvent) {
  auto s = std::make_unique<TestServer>();
  int fd = connect_to(s->port);
  send_post(fd, "/v1/messages", msg_body("Go on", 3000, true));
  ASSERT_NE(read_until(fd, "content_block_delta").find("content_block_delta"), std::string::npos);
  std::thread stopper([&] { s->srv->stop(); });
  std::string rest = read_until(fd, "0\r\n\r\n");
  stopper.join();
  EXPECT_NE(rest.find("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"server shutting down\"}}"),
            std::string::npos)
      << rest.substr(rest.size() > 400 ? rest.size() - 400 : 0);
  close(fd);
  s.reset();
}

}  // namespace
}  // namespace pensieve::server
