// Tokenizer tests: HF `tokenizers` goldens (Phi-3, Phi-4-mini), peer vectors (llama.cpp,
// onnxruntime-extensions), streaming decode, chat templates, bad files, and speed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "models/tokenizer/chat_template.h"
#include "models/tokenizer/tokenizer.h"
#include "tensor/safetensors.h"

namespace pensieve {
namespace {

using nlohmann::json;

std::string data_path(const std::string& rel) {
  return std::string(PENSIEVE_TEST_DATA) + "/" + rel;
}

json load_json(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  return json::parse(f);
}

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

// Tokenizers are loaded once per process (the Phi-4 file is 6.7 MB).
const Tokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    auto t = Tokenizer::load(data_path("tokenizers/" + name));
    if (!t.ok()) {
      ADD_FAILURE() << t.error();
      std::abort();
    }
    it = cache.emplace(name, std::move(t.value())).first;
  }
  return it->second;
}

std::string show(const std::string& s) { return json(s).dump(); }

// ---------------------------------------------------------------------------------------------
// Goldens: every string case and every chat case of tests/data/tokenizers/golden/<name>.json.

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, Encode) {
  const Tokenizer& tok = tokenizer(GetParam());
  const json g = load_json(data_path("tokenizers/golden/" + GetParam() + ".json"));
  ASSERT_EQ(g["cases"].size(), 50u);
  for (const json& c : g["cases"]) {
    const std::string text = c["text"];
    auto ids = tok.encode(text);
    ASSERT_TRUE(ids.ok()) << ids.error();
    EXPECT_EQ(*ids, ids_of(c["ids"])) << "text " << show(text);
    auto plain = tok.encode(text, {.add_special_tokens = false});
    EXPECT_EQ(*plain, ids_of(c["ids_no_add_special"])) << "text " << show(text);
    auto as_text = tok.encode(text, {.special_as_text = true});
    EXPECT_EQ(*as_text, ids_of(c["ids_special_as_text"])) << "special as text, text " << show(text);
  }
}

TEST_P(Golden, Decode) {
  const Tokenizer& tok = tokenizer(GetParam());
  const json g = load_json(data_path("tokenizers/golden/" + GetParam() + ".json"));
  for (const json& c : g["cases"]) {
    const std::vector<int32_t> ids = ids_of(c["ids"]);
    EXPECT_EQ(tok.decode(ids), c["decode"].get<std::string>()) << "text " << show(c["text"]);
    EXPECT_EQ(tok.decode(ids, true), c["decode_skip_special"].get<std::string>())
        << "text " << show(c["text"]);
  }
}

TEST_P(Golden, ChatTemplate) {
  const Tokenizer& tok = tokenizer(GetParam());
  const json g = load_json(data_path("tokenizers/golden/" + GetParam() + ".json"));
  auto tmpl = ChatTemplate::select(tok);
  ASSERT_TRUE(tmpl.ok()) << tmpl.error();
  EXPECT_EQ(tmpl->name(), GetParam() == "phi3" ? "phi3" : "phi4");
  ASSERT_EQ(g["chat_template_cases"].size(), 7u);
  for (const json& c : g["chat_template_cases"]) {
    std::vector<ChatMessage> msgs;
    for (const json& m : c["messages"]) {
      ChatMessage cm{m["role"], m["content"], std::nullopt};
      if (m.contains("tools")) cm.tools = m["tools"].get<std::string>();
      msgs.push_back(cm);
    }
    auto text = tmpl->render(msgs, c["add_generation_prompt"]);
    ASSERT_TRUE(text.ok()) << text.error();
    EXPECT_EQ(*text, c["rendered"].get<std::string>()) << c["name"];
    auto ids = tok.encode(*text, {.add_special_tokens = tmpl->add_special_tokens()});
    EXPECT_EQ(*ids, ids_of(c["ids"])) << c["name"];
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Golden, ::testing::Values("phi3", "phi4-mini"),
                         [](const auto& info) {
                           return info.param == "phi3" ? "phi3" : "phi4mini";
                         });

// ---------------------------------------------------------------------------------------------
// The model fixtures' prompts: chat-templated texts (one of ~21 kB) and their HF ids, and the
// decoded text of the random models' greedy continuations.

struct ModelPrompts {
  const char* model;
  const char* tokenizer;
};
const ModelPrompts kModels[] = {
    {"phi3-tiny", "phi3"}, {"phi3-128k-tiny", "phi3"}, {"phi4-mini-tiny", "phi4-mini"}};

std::vector<int32_t> read_i32(const SafetensorsFile& f, const std::string& name) {
  const SafetensorsEntry* e = f.find(name);
  EXPECT_NE(e, nullptr) << name;
  if (!e) return {};
  EXPECT_EQ(e->dtype_name, "I32");
  std::vector<int32_t> v(e->nbytes / 4);
  std::memcpy(v.data(), f.data(*e), e->nbytes);
  return v;
}

TEST(ModelPrompts, EncodeAndDecode) {
  for (const ModelPrompts& m : kModels) {
    const Tokenizer& tok = tokenizer(m.tokenizer);
    const std::string dir = data_path(std::string("models/") + m.model);
    const json g = load_json(dir + "/golden.json");
    for (const json& p : g["prompts"]) {
      EXPECT_EQ(*tok.encode(p["text"].get<std::string>()), ids_of(p["ids"]))
          << m.model << " prompt " << p["index"];
      EXPECT_EQ(tok.decode(ids_of(p["greedy_ids"])), p["greedy_text"].get<std::string>())
          << m.model << " prompt " << p["index"];
    }
    if (g.contains("long_prompt") && g["long_prompt"].is_object()) {
      auto st = SafetensorsFile::open(dir + "/golden.safetensors");
      ASSERT_TRUE(st.ok()) << st.error();
      const std::string text = g["long_prompt"]["text"];
      const std::vector<int32_t> want = read_i32(*st, "long.input_ids");
      ASSERT_EQ(want.size(), 4200u);
      EXPECT_EQ(*tok.encode(text), want) << m.model << " long prompt";
      // Phi-4's template puts no whitespace after its rstrip tokens: decoding gives the text back.
      if (std::string(m.tokenizer) == "phi4-mini") {
        EXPECT_EQ(tok.decode(want), text) << m.model;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Peer vectors

TEST(Peer, LlamaCppPhi3Vocab) {
  const Tokenizer& tok = tokenizer("phi3");
  const json v = load_json(data_path("tokenizers/peer/llamacpp_phi3_vocab_test.json"));
  ASSERT_EQ(v["cases"].size(), 46u);
  for (const json& c : v["cases"])
    EXPECT_EQ(*tok.encode(c["text"].get<std::string>(), {.add_special_tokens = false}),
              ids_of(c["ids"]))
        << "text " << show(c["text"]);
}

TEST(Peer, MicrosoftOrtx) {
  const json v = load_json(data_path("tokenizers/peer/microsoft_ortx_vectors.json"));
  for (const json& c : v["cases"]) {
    const Tokenizer& tok = tokenizer(c["tokenizer"]);
    if (c.contains("messages")) {
      std::vector<ChatMessage> msgs;
      for (const json& m : c["messages"]) msgs.push_back({m["role"], m["content"], std::nullopt});
      auto tmpl = ChatTemplate::select(tok);
      ASSERT_TRUE(tmpl.ok()) << tmpl.error();
      EXPECT_EQ(*tmpl->render(msgs, c["add_generation_prompt"]), c["rendered"].get<std::string>());
    }
    EXPECT_EQ(*tok.encode(c["rendered"].get<std::string>()), ids_of(c["ids"])) << c["tokenizer"];
    // onnxruntime-extensions' own decoder drops the "▁" after each skipped special token, which
    // HF `tokenizers` keeps (its goldens: "You are helpful. Hi"); only Phi-4's agrees.
    if (c["tokenizer"] == "phi4-mini") {
      EXPECT_EQ(tok.decode(ids_of(c["ids"]), true), c["decode_skip_special"].get<std::string>());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Streaming decode

// Whether s is valid UTF-8 (no partial character at either end).
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

class Stream : public ::testing::TestWithParam<std::string> {};

TEST_P(Stream, IncrementalEqualsFullDecode) {
  const Tokenizer& tok = tokenizer(GetParam());
  const bool phi3 = GetParam() == "phi3";
  std::mt19937 rng(20240611);
  const int32_t limit = phi3 ? 32064 : 200064;  // the models' padded vocab_size
  // Streams mix: any id (padded ones included), byte-fallback tokens, specials, and the tokens of
  // texts with multi-byte characters (Phi-4 splits those into byte-level pieces).
  std::vector<int32_t> text_ids;
  for (const char* t :
       {"日本語のテキスト 🙂👍🏽 Ærøskøbing", " \n\n  x", "€ and ￼ and 𠀀"}) {
    auto ids = tok.encode(t);
    text_ids.insert(text_ids.end(), ids->begin(), ids->end());
  }
  std::uniform_int_distribution<int> kind(0, 9), any(-3, limit + 5), byte_tok(3, 258),
      pick_text(0, static_cast<int>(text_ids.size()) - 1), len(0, 80);
  const std::vector<int32_t> specials = phi3 ? std::vector<int32_t>{0, 1, 2, 32000, 32007, 32010}
                                             : std::vector<int32_t>{199999, 200019, 200020, 200023};
  for (int iter = 0; iter < 2000; ++iter) {
    std::vector<int32_t> ids;
    for (int k = len(rng); k > 0; --k) {
      const int c = kind(rng);
      if (c < 3) {
        ids.push_back(any(rng));
      } else if (c < 6 && phi3) {
        ids.push_back(byte_tok(rng));
      } else if (c < 7) {
        ids.push_back(specials[rng() % specials.size()]);
      } else {
        ids.push_back(text_ids[pick_text(rng)]);
      }
    }
    for (bool skip : {false, true}) {
      StreamDecoder sd(tok, skip);
      std::string streamed;
      for (int32_t id : ids) {
        const std::string piece = sd.push(id);
        ASSERT_TRUE(valid_utf8(piece)) << "iteration " << iter;
        streamed += piece;
      }
      const std::string rest = sd.flush();
      ASSERT_TRUE(valid_utf8(rest));
      streamed += rest;
      ASSERT_EQ(streamed, tok.decode(ids, skip)) << "seed 20240611, iteration " << iter;
    }
  }
}

TEST_P(Stream, GoldenCasesTokenByToken) {
  const Tokenizer& tok = tokenizer(GetParam());
  const json g = load_json(data_path("tokenizers/golden/" + GetParam() + ".json"));
  for (const json& c : g["cases"]) {
    for (bool skip : {false, true}) {
      StreamDecoder sd(tok, skip);
      std::string out;
      for (int32_t id : ids_of(c["ids"])) out += sd.push(id);
      out += sd.flush();
      EXPECT_EQ(out, c[skip ? "decode_skip_special" : "decode"].get<std::string>())
          << show(c["text"]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Stream, ::testing::Values("phi3", "phi4-mini"),
                         [](const auto& info) {
                           return info.param == "phi3" ? "phi3" : "phi4mini";
                         });

TEST(StreamDecoder, Phi3ByteFallbackRuns) {
  const Tokenizer& tok = tokenizer("phi3");
  // "日" is <0xE6><0x97><0xA5>: nothing until the character is complete and its run has ended.
  StreamDecoder sd(tok);
  EXPECT_EQ(sd.push(29871), "");  // "▁": a leading space, stripped
  EXPECT_EQ(sd.push(3 + 0xE6), "");
  EXPECT_EQ(sd.push(3 + 0x97), "");
  EXPECT_EQ(sd.push(3 + 0xA5), "");
  EXPECT_EQ(sd.push(29889), "日.");  // "." ends the run
  // A run that cannot become valid UTF-8 any more: one U+FFFD per byte, at once (HF's rule).
  EXPECT_EQ(sd.push(3 + 0xE6), "");
  EXPECT_EQ(sd.push(3 + 0x41), "\uFFFD\uFFFD");
  EXPECT_EQ(sd.push(3 + 0x42), "\uFFFD");
  // An unfinished character at the end of generation.
  EXPECT_EQ(sd.push(29889), ".");
  EXPECT_EQ(sd.push(3 + 0xF0), "");
  EXPECT_EQ(sd.push(3 + 0x9F), "");
  EXPECT_EQ(sd.flush(), "\uFFFD\uFFFD");
  // HF: a valid character followed by a stray byte turns the whole run into U+FFFDs.
  const std::vector<int32_t> run = {3 + 0xE6, 3 + 0x97, 3 + 0xA5, 3 + 0xFF};
  EXPECT_EQ(tok.decode(run), "\uFFFD\uFFFD\uFFFD\uFFFD");
}

TEST(StreamDecoder, Phi4ByteLevelLossy) {
  const Tokenizer& tok = tokenizer("phi4-mini");
  // Byte-level tokens of single bytes: "Ġ" (0x20) is 220, "ä" (0xE4) and "½" (0xBD) stand for
  // those bytes. 0xE4 0xBD 0xA0 is "你".
  const int32_t e4 = tok.token_to_id("\xC3\xA4"), bd = tok.token_to_id("\xC2\xBD"),
                a0 = tok.token_to_id("\xC5\x82");
  ASSERT_GE(e4, 0);
  ASSERT_GE(bd, 0);
  ASSERT_GE(a0, 0);
  StreamDecoder sd(tok);
  EXPECT_EQ(sd.push(e4), "");
  EXPECT_EQ(sd.push(bd), "");
  EXPECT_EQ(sd.push(a0), "你");
  EXPECT_EQ(sd.push(e4), "");
  EXPECT_EQ(sd.push(e4), "\uFFFD");  // E4 E4: the first can no longer complete
  EXPECT_EQ(sd.flush(), "\uFFFD");
  // Lossy decoding replaces each maximal invalid subpart by one U+FFFD (Rust from_utf8_lossy).
  EXPECT_EQ(tok.decode(std::vector<int32_t>{e4, bd}), "\uFFFD");
}

// ---------------------------------------------------------------------------------------------
// Special tokens, odd ids, odd input

TEST(Tokenizer, SpecialTokens) {
  const Tokenizer& p3 = tokenizer("phi3");
  EXPECT_EQ(p3.special_tokens().bos, 1);
  EXPECT_EQ(p3.special_tokens().eos, 32000);
  EXPECT_EQ(p3.special_tokens().pad, 32000);
  EXPECT_EQ(p3.special_tokens().unk, 0);
  EXPECT_EQ(p3.special_tokens().stop, (std::vector<int32_t>{32000, 32007}));
  EXPECT_EQ(p3.vocab_size(), 32011);
  EXPECT_EQ(p3.bos_token(), "<s>");
  EXPECT_EQ(p3.eos_token(), "<|endoftext|>");
  EXPECT_TRUE(p3.is_special(32007));
  EXPECT_FALSE(p3.is_special(2));  // </s> is special: false in this file
  EXPECT_EQ(p3.id_to_token(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(p3.token_to_id("<|user|>"), 32010);

  const Tokenizer& p4 = tokenizer("phi4-mini");
  EXPECT_EQ(p4.special_tokens().bos, 199999);
  EXPECT_EQ(p4.special_tokens().eos, 199999);
  EXPECT_EQ(p4.special_tokens().stop, (std::vector<int32_t>{199999, 200020}));
  EXPECT_EQ(p4.vocab_size(), 200029);
  EXPECT_FALSE(p4.is_special(200023));  // <|tool|>
}

TEST(Tokenizer, IdsWithoutTokensDecodeToNothing) {
  const Tokenizer& p3 = tokenizer("phi3");
  const std::vector<int32_t> ids = {32011, 15043, 32063, -1, 1 << 30, 3186};
  EXPECT_EQ(p3.decode(ids), "Hello world");
  EXPECT_EQ(p3.id_to_token(32011), "");
  EXPECT_EQ(p3.id_to_token(-5), "");
  const Tokenizer& p4 = tokenizer("phi4-mini");
  EXPECT_EQ(p4.decode(std::vector<int32_t>{199998, 200000, 200063, 13225}), "Hello");
}

TEST(Tokenizer, InvalidUtf8InputIsReplaced) {
  for (const char* name : {"phi3", "phi4-mini"}) {
    const Tokenizer& tok = tokenizer(name);
    auto bad = tok.encode(
        "a\xFF"
        "b\xE6\x97");  // stray byte, truncated character
    auto lossy = tok.encode("a\uFFFDb\uFFFD");
    ASSERT_TRUE(bad.ok());
    EXPECT_EQ(*bad, *lossy) << name;
  }
}

TEST(Tokenizer, Concurrent) {
  const Tokenizer& tok = tokenizer("phi4-mini");
  const std::string text = "Hello world, 12345 <|user|> Привет 🙂";
  const auto want = *tok.encode(text);
  const std::string want_text = tok.decode(want);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i)
        if (*tok.encode(text) != want || tok.decode(want) != want_text) ++bad;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// Bad files: clear errors, never a crash.

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void expect_error(const Result<Tokenizer>& r, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "expected an error containing \"" << needle << "\"";
  EXPECT_NE(r.error().find(needle), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("load_tokenizer"), std::string::npos) << r.error();
}

TEST(BadFiles, MissingAndTruncated) {
  expect_error(Tokenizer::load("/nonexistent/model"), "is not a directory");
  expect_error(Tokenizer::load(data_path("stories260K")), "tokenizer.json not found");
  const std::string full = read_text(data_path("tokenizers/phi3/tokenizer.json"));
  for (size_t cut : {size_t{0}, size_t{1}, size_t{100}, full.size() / 2, full.size() - 2})
    expect_error(Tokenizer::from_json(std::string_view(full).substr(0, cut)), "invalid JSON");
  expect_error(Tokenizer::from_json(full, "{\"add_bos_token\": tru"), "tokenizer_config");
}

TEST(BadFiles, WrongContent) {
  expect_error(Tokenizer::from_json("[1, 2]"), "expected a JSON object");
  expect_error(Tokenizer::from_json("{}"), "no \"model\"");
  expect_error(Tokenizer::from_json(R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})"),
               "model.type is \"Unigram\", expected \"BPE\"");
  expect_error(Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}}})"),
               "model.merges: missing");
  expect_error(
      Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})"),
      "id is not an integer");
  expect_error(
      Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": -4}, "merges": []}})"),
      "out of range");
  expect_error(Tokenizer::from_json(
                   R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}})"),
               "id 0 is used by both");
  expect_error(Tokenizer::from_json(
                   R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}})"),
               "token \"c\" is not in the vocabulary");
  expect_error(
      Tokenizer::from_json(
          R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]}})"),
      "merged token \"ab\" is not in the vocabulary");
  expect_error(
      Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a  a"]}})"),
      "expected two tokens separated by one space");
  expect_error(
      Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}})"),
      "expected \"a b\" or [\"a\", \"b\"]");
  const std::string ok_model = R"("model": {"type": "BPE", "vocab": {"a": 0}, "merges": []})";
  expect_error(Tokenizer::from_json(R"({"normalizer": {"type": "NFKC"}, )" + ok_model + "}"),
               "normalizer \"NFKC\" is not supported");
  expect_error(
      Tokenizer::from_json(R"({"pre_tokenizer": {"type": "Whitespace"}, )" + ok_model + "}"),
      "pre_tokenizer \"Whitespace\" is not supported");
  expect_error(Tokenizer::from_json(R"({"decoder": {"type": "WordPiece"}, )" + ok_model + "}"),
               "decoder \"WordPiece\" is not supported");
  expect_error(
      Tokenizer::from_json(
          R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Removed"}, )" +
          ok_model + "}"),
      "cannot compile");
  expect_error(Tokenizer::from_json(R"({"added_tokens": [{"content": "x"}], )" + ok_model + "}"),
               "added_tokens[0]");
  expect_error(Tokenizer::from_json(R"({"post_processor": {"type": "Foo"}, )" + ok_model + "}"),
               "post_processor \"Foo\" is not supported");
}

// A minimal tokenizer.json with a Llama-style BOS post-processor and no byte fallback.
TEST(Tokenizer, PostProcessorAndConfigBos) {
  const std::string model = R"("model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true,
      "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "ab": 5}, "merges": ["a b"]})";
  const std::string added = R"("added_tokens": [
      {"id": 1, "content": "<s>", "special": true, "normalized": false},
      {"id": 2, "content": "</s>", "special": true, "normalized": false}])";
  auto with_pp =
      Tokenizer::from_json(R"({)" + added + R"(, "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "</s>", "type_id": 0}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                         "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}, )" +
                           model + "}");
  ASSERT_TRUE(with_pp.ok()) << with_pp.error();
  EXPECT_EQ(*with_pp->encode("abxxa"), (std::vector<int32_t>{1, 5, 0, 3, 2}));  // fused <unk>
  EXPECT_EQ(*with_pp->encode("ab", {.add_special_tokens = false}), (std::vector<int32_t>{5}));
  EXPECT_EQ(with_pp->decode(std::vector<int32_t>{1, 5, 3}),
            "<s> ab a");  // no decoder: joined by spaces
  auto with_cfg =
      Tokenizer::from_json("{" + added + ", " + model + "}",
                           R"({"add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>"})");
  ASSERT_TRUE(with_cfg.ok()) << with_cfg.error();
  EXPECT_EQ(*with_cfg->encode("ab"), (std::vector<int32_t>{1, 5}));
  EXPECT_EQ(with_cfg->special_tokens().stop, (std::vector<int32_t>{2}));
  auto null_flags = Tokenizer::from_json("{" + added + ", " + model + "}",
                                         R"({"add_bos_token": null, "chat_template": [{"name": 1}]})");
  ASSERT_TRUE(null_flags.ok()) << null_flags.error();
  EXPECT_EQ(*null_flags->encode("ab"), (std::vector<int32_t>{5}));
}

// Llama-3 style: a ByteLevel pre-tokenizer with its own regex, and a Metaspace round trip.
TEST(Tokenizer, OtherPipelines) {
  auto bl =
      Tokenizer::from_json(R"({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true,
      "use_regex": true}, "decoder": {"type": "ByteLevel"},
      "model": {"type": "BPE", "vocab": {"Ġ": 0, "a": 1, "b": 2, "Ġa": 3, "!": 4}, "merges": [["Ġ", "a"]]}})");
  ASSERT_TRUE(bl.ok()) << bl.error();
  EXPECT_EQ(*bl->encode("a b!"), (std::vector<int32_t>{3, 0, 2, 4}));
  EXPECT_EQ(bl->decode(std::vector<int32_t>{3, 0, 2, 4}), " a b!");
  auto ms = Tokenizer::from_json(R"({"pre_tokenizer": {"type": "Metaspace", "replacement": "▁",
      "prepend_scheme": "first", "split": false}, "decoder": {"type": "Metaspace", "replacement": "▁",
      "prepend_scheme": "first", "split": false},
      "added_tokens": [{"id": 4, "content": "<x>", "special": true, "normalized": false}],
      "model": {"type": "BPE", "vocab": {"▁": 0, "a": 1, "▁a": 2, "b": 3, "<x>": 4}, "merges": ["▁ a"]}})");
  ASSERT_TRUE(ms.ok()) << ms.error();
  // "first": only the segment at the start of the text gets the prefix.
  EXPECT_EQ(*ms->encode("a a<x>a"), (std::vector<int32_t>{2, 2, 4, 1}));
  EXPECT_EQ(ms->decode(std::vector<int32_t>{2, 2, 4, 1}), "a a<x>a");
}

// Random input never crashes: bytes to encode, ids to decode, and mutated tokenizer files (which
// load or fail with a message).
TEST(Robustness, RandomInputAndMutatedFiles) {
  std::mt19937 rng(7);
  for (const char* name : {"phi3", "phi4-mini"}) {
    const Tokenizer& tok = tokenizer(name);
    for (int i = 0; i < 300; ++i) {
      std::string bytes(rng() % 200, '\0');
      for (char& c : bytes) c = static_cast<char>(rng());
      auto ids = tok.encode(bytes, {.special_as_text = (i & 1) != 0});
      ASSERT_TRUE(ids.ok()) << ids.error();
      std::vector<int32_t> rid(rng() % 50);
      for (int32_t& id : rid) id = static_cast<int32_t>(rng() % 210000) - 100;
      EXPECT_TRUE(valid_utf8(tok.decode(rid, (i & 2) != 0)));
    }
  }
  const std::string base =
      R"({"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend",
      "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
      "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+|\\p{L}+"}, "behavior": "Isolated"},
      "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}},
      {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
      "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"},
      "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ",
      "start": 1, "stop": 1}]}, "added_tokens": [{"id": 1, "content": "<s>", "special": true,
      "normalized": false, "lstrip": true, "rstrip": true, "single_word": true}],
      "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true,
      "vocab": {"<unk>": 0, "<s>": 1, "<0x41>": 2, "▁": 3, "a": 4, "▁a": 5, "b": 6},
      "merges": ["▁ a", ["a", "b"]]}})";
  auto ok = Tokenizer::from_json(base);
  ASSERT_FALSE(ok.ok());  // "ab" is not in the vocabulary
  EXPECT_NE(ok.error().find("\"ab\""), std::string::npos) << ok.error();
  const std::string good = std::string(base).replace(base.find(R"(["a", "b"])"), 10, R"("a ▁")");
  auto g = Tokenizer::from_json(good);
  ASSERT_FALSE(g.ok());  // "a▁" neither
  std::string fixed = good;
  fixed.replace(fixed.find(R"("b": 6)"), 6, R"("b": 6, "a▁": 7)");
  auto f = Tokenizer::from_json(fixed);
  ASSERT_TRUE(f.ok()) << f.error();
  // The pre-tokenizer isolates letters, so "▁ a" never applies; <s> is single_word: glued to a
  // letter it is text (unknown characters, <unk> each, as they are separate words).
  EXPECT_EQ(*f->encode("a a <s> Ab"), (std::vector<int32_t>{1, 3, 4, 3, 4, 1, 3, 2, 6}));
  EXPECT_EQ(*f->encode("a<s>"), (std::vector<int32_t>{1, 3, 4, 0, 0, 0}));
  EXPECT_EQ(f->decode(std::vector<int32_t>{5, 3, 4, 2, 3}, true), "a aA");  // Strip stop=1 too
  int loaded = 0;
  for (int i = 0; i < 1500; ++i) {
    std::string m = fixed;
    for (int k = 1 + static_cast<int>(rng() % 3); k > 0; --k) {
      const size_t pos = rng() % m.size();
      switch (rng() % 3) {
        case 0: m[pos] = static_cast<char>(rng()); break;
        case 1: m.erase(pos, 1 + rng() % 8); break;
        default: m.insert(pos, 1, "{}[]\",:0a▁"[rng() % 10]); break;
      }
    }
    auto t = Tokenizer::from_json(m);
    if (!t.ok()) {
      EXPECT_FALSE(t.error().empty());
      continue;
    }
    ++loaded;
    auto ids = t->encode("a b ab <s>x\xE2\x96\x81 A");
    if (ids.ok()) t->decode(*ids);
  }
  std::printf("[ mutated  ] %d of 1500 mutated files loaded\n", loaded);
}

// ---------------------------------------------------------------------------------------------
// Chat templates beyond the goldens

TEST(ChatTemplates, ByNameAndRules) {
  const std::vector<ChatMessage> conv = {{"system", "", std::nullopt},
                                         {"user", "Hi", std::nullopt},
                                         {"assistant", " Hello ", std::nullopt},
                                         {"user", "Bye", std::nullopt}};
  auto p35 = ChatTemplate::from_name("phi3.5", "<s>", "<|endoftext|>");
  ASSERT_TRUE(p35.ok());
  EXPECT_EQ(
      *p35->render(conv, true),
      "<|user|>\nHi<|end|>\n<|assistant|>\n Hello <|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n");
  auto p3 = ChatTemplate::from_name("phi3", "<s>", "<|endoftext|>");
  EXPECT_EQ(*p3->render(conv, false),
            "<|system|>\n<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n Hello "
            "<|end|>\n<|user|>\nBye<|end|>\n"
            "<|endoftext|>");
  auto l2 = ChatTemplate::from_name("llama2", "<s>", "</s>");
  std::vector<ChatMessage> l2conv = {{"system", "Be brief.", std::nullopt},
                                     {"user", " Hi ", std::nullopt},
                                     {"assistant", "Hello\n", std::nullopt},
                                     {"user", "Bye", std::nullopt}};
  EXPECT_EQ(
      *l2->render(l2conv, true),
      "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello </s><s>[INST] Bye [/INST]");
  std::vector<ChatMessage> bad = {{"user", "a", std::nullopt}, {"user", "b", std::nullopt}};
  auto err = l2->render(bad, true);
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.error().find("must alternate"), std::string::npos);
  auto raw = ChatTemplate::from_name("raw");
  EXPECT_EQ(*raw->render(l2conv, true), "Be brief. Hi Hello\nBye");
  auto p4 = ChatTemplate::from_name("phi4", "", "<|endoftext|>");
  std::vector<ChatMessage> tool = {{"system", "S", std::string("[]")},
                                   {"tool", "{}", std::nullopt}};
  EXPECT_EQ(*p4->render(tool, true),
            "<|system|>S<|tool|>[]<|/tool|><|end|><|tool|>{}<|end|><|assistant|>");
  auto unknown = ChatTemplate::from_name("chatml");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().find("phi3|phi3.5|phi4|llama2"), std::string::npos);
}

TEST(ChatTemplates, Recognition) {
  // The Phi-3.5 template as a pretty-printed chat_template.jinja would have it.
  const char* pretty = R"(
{%- for message in messages -%}
    {%- if message['role'] == 'system' and message['content'] -%}
        {{-'<|system|>\n' + message['content'] + '<|end|>\n'-}}
    {%- elif message['role'] == 'user' -%}
        {{-'<|user|>\n' + message['content'] + '<|end|>\n'-}}
    {%- elif message['role'] == 'assistant' -%}
        {{-"<|assistant|>\n" + message['content'] + '<|end|>\n'-}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>\n' -}}
{%- else -%}
    {{- eos_token -}}
{%- endif -%}
)";
  auto f = ChatTemplate::recognize(pretty);
  ASSERT_TRUE(f.ok()) << f.error();
  EXPECT_EQ(*f, ChatTemplate::Format::kPhi35);
  // Without whitespace control the newlines are output: a different template.
  std::string no_control = pretty;
  for (size_t p; (p = no_control.find("{%-")) != std::string::npos;) no_control.replace(p, 3, "{%");
  EXPECT_FALSE(ChatTemplate::recognize(no_control).ok());
  // Unknown templates name the override option.
  auto chatml = ChatTemplate::recognize(
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
      "+ "
      "'<|im_end|>' + '\n'}}{% endfor %}");
  ASSERT_FALSE(chatml.ok());
  EXPECT_NE(chatml.error().find("--chat-template"), std::string::npos) << chatml.error();
  // No template at all: raw (the tiny stories model).
  auto tj = Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
  auto t = ChatTemplate::select(*tj);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->name(), "raw");
  auto over = ChatTemplate::select(tokenizer("phi3"), "phi4");
  EXPECT_EQ(over->name(), "phi4");
}

// ---------------------------------------------------------------------------------------------
// Speed (reported, not asserted tightly: the targets are for benchmarks, not tests)

TEST(Speed, LoadAndEncode) {
  using clock = std::chrono::steady_clock;
  for (const ModelPrompts& m : kModels) {
    if (std::string(m.model) == "phi3-tiny") continue;
    const auto t0 = clock::now();
    auto tok = Tokenizer::load(data_path(std::string("tokenizers/") + m.tokenizer));
    const double load_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    ASSERT_TRUE(tok.ok());
    const json g = load_json(data_path(std::string("models/") + m.model + "/golden.json"));
    const std::string text = g["long_prompt"]["text"];
    std::vector<int32_t> ids;
    const auto t1 = clock::now();
    const int reps = 10;
    for (int r = 0; r < reps; ++r) ids = *tok->encode(text);
    const double enc_ms =
        std::chrono::duration<double, std::milli>(clock::now() - t1).count() / reps;
    const auto t2 = clock::now();
    std::string back;
    for (int r = 0; r < reps; ++r) back = tok->decode(ids);
    const double dec_ms =
        std::chrono::duration<double, std::milli>(clock::now() - t2).count() / reps;
    std::printf(
        "[ speed    ] %s: load %.0f ms; encode %zu bytes -> %zu ids in %.2f ms; decode %.2f ms\n",
        m.tokenizer, load_ms, text.size(), ids.size(), enc_ms, dec_ms);
    EXPECT_LT(enc_ms, 200.0);  // generous: a loaded 2-core CI machine, Debug builds
  }
}

}  // namespace
}  // namespace pensieve
