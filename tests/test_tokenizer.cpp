// Tokenizer tests: HF `tokenizers` goldens (Phi-3, Phi-4-mini), peer vectors (llama.cpp,
// onnxruntime-extensions), streaming decode, chat templates, bad files, and speed.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "models/tokenizer/chat_template.h"
#include "models/tokenizer/tokenizer.h"

namespace pensieve {
namespace {

using nlohmann::json;

std::string data_path(const std::string& rel) { return std::string(PENSIEVE_TEST_DATA) + "/" + rel; }

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
    auto ids = tok.encode(*text);
    EXPECT_EQ(*ids, ids_of(c["ids"])) << c["name"];
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Golden, ::testing::Values("phi3", "phi4-mini"),
                         [](const auto& info) { return info.param == "phi3" ? "phi3" : "phi4mini"; });

}  // namespace
}  // namespace pensieve
