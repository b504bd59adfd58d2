// tokenizer_json_from_llama2c: our Tokenizer, loaded from the converted tok512.bin, must encode
// exactly like llama2.c's encode() and decode like its decode(). The reference below is a
// straight port of llama2.c's run.c (build_tokenizer, str_lookup, encode, decode), kept
// deliberately close to the C so it can be compared line by line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>

#include "models/tokenizer/llama2c.h"
#include "models/tokenizer/tokenizer.h"

namespace pensieve {
namespace {

const std::string kTok512 = std::string(PENSIEVE_TEST_DATA) + "/stories260K/tok512.bin";

// ---------------------------------------------------------------------------------------------
// llama2.c's tokenizer (run.c), ported: std::string for char*, std::vector for malloc.

struct L2cTokenizer {
  std::vector<std::string> vocab;
  std::vector<float> vocab_scores;
  std::vector<std::pair<std::string, int>> sorted_vocab;  // TokenIndex {str, id}, sorted by str
  unsigned int max_token_length = 0;
};

L2cTokenizer build_tokenizer(const std::string& path, int vocab_size) {
  L2cTokenizer t;
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(&t.max_token_length), 4);
  for (int i = 0; i < vocab_size; i++) {
    float score;
    int len;
    f.read(reinterpret_cast<char*>(&score), 4);
    f.read(reinterpret_cast<char*>(&len), 4);
    std::string s(len, '\0');
    f.read(s.data(), len);
    t.vocab.push_back(s);
    t.vocab_scores.push_back(score);
  }
  for (int i = 0; i < vocab_size; i++) t.sorted_vocab.emplace_back(t.vocab[i], i);
  // qsort with strcmp: byte order, as std::string's operator<.
  std::sort(t.sorted_vocab.begin(), t.sorted_vocab.end());
  return t;
}

int str_lookup(const std::string& str, const L2cTokenizer& t) {
  auto it = std::lower_bound(t.sorted_vocab.begin(), t.sorted_vocab.end(), std::make_pair(str, -1));
  return it != t.sorted_vocab.end() && it->first == str ? it->second : -1;
}

std::vector<int> l2c_encode(const L2cTokenizer& t, const std::string& text, bool bos, bool eos) {
  std::vector<int> tokens;
  if (bos) tokens.push_back(1);
  // add_dummy_prefix: a " " token, but only if text != "".
  if (!text.empty()) tokens.push_back(str_lookup(" ", t));
  // UTF-8 code points (a lead byte and up to 3 continuation bytes) -> piece, or byte tokens.
  std::string str_buffer;
  const char* c = text.c_str();
  for (; *c != '\0'; c++) {
    if ((*c & 0xC0) != 0x80) str_buffer.clear();
    str_buffer.push_back(*c);
    if ((*(c + 1) & 0xC0) == 0x80 && str_buffer.size() < 4) continue;
    int id = str_lookup(str_buffer, t);
    if (id != -1) {
      tokens.push_back(id);
    } else {
      for (unsigned char b : str_buffer) tokens.push_back(b + 3);  // byte_fallback
    }
    str_buffer.clear();
  }
  // Merge the best consecutive pair each iteration, by the score of the merged piece.
  while (true) {
    float best_score = -1e10;
    int best_id = -1, best_idx = -1;
    for (int i = 0; i + 1 < static_cast<int>(tokens.size()); i++) {
      int id = str_lookup(t.vocab[tokens[i]] + t.vocab[tokens[i + 1]], t);
      if (id != -1 && t.vocab_scores[id] > best_score) {
        best_score = t.vocab_scores[id];
        best_id = id;
        best_idx = i;
      }
    }
    if (best_idx == -1) break;
    tokens[best_idx] = best_id;
    tokens.erase(tokens.begin() + best_idx + 1);
  }
  if (eos) tokens.push_back(2);
  return tokens;
}

std::string l2c_decode_piece(const L2cTokenizer& t, int prev_token, int token) {
  std::string piece = t.vocab[token];
  // Following BOS, the sentencepiece decoder strips a leading space.
  if (prev_token == 1 && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
  unsigned char byte_val;
  if (std::sscanf(piece.c_str(), "<0x%02hhX>", &byte_val) == 1)
    piece = std::string(1, static_cast<char>(byte_val));
  return piece;
}

// What llama2.c prints for a token sequence starting with BOS (every token after the first).
std::string l2c_decode(const L2cTokenizer& t, const std::vector<int>& ids) {
  std::string out;
  for (size_t i = 1; i < ids.size(); ++i) out += l2c_decode_piece(t, ids[i - 1], ids[i]);
  return out;
}

// ---------------------------------------------------------------------------------------------

struct Fixture {
  L2cTokenizer ref = build_tokenizer(kTok512, 512);
  Tokenizer tok = load();
  static Tokenizer load() {
    auto json = tokenizer_json_from_llama2c(kTok512, 512);
    if (!json.ok()) {
      ADD_FAILURE() << json.error();
      std::abort();
    }
    auto t = Tokenizer::from_json(*json, {}, "tok512.bin (converted)");
    if (!t.ok()) {
      ADD_FAILURE() << t.error();
      std::abort();
    }
    return std::move(t.value());
  }
};

const Fixture& fx() {
  static Fixture f;
  return f;
}

std::string random_text(std::mt19937& rng, size_t max_chars) {
  // Code point pools: the vocabulary's ASCII, whitespace, pieces with non-ASCII characters
  // (é ñ “ ” ’ – — … € ™), Latin-1, BMP and astral characters (byte fallback).
  static const char32_t kSpecialPieces[] = {0xE9,   0xF1,   0x201C, 0x201D, 0x2019, 0x2018, 0x2013,
                                            0x2014, 0x2026, 0x20AC, 0x2122, 0xA0,   0xE2,   0x200A};
  std::uniform_int_distribution<int> pool(0, 9), len(0, static_cast<int>(max_chars));
  std::string s;
  const int n = len(rng);
  for (int i = 0; i < n; ++i) {
    char32_t cp;
    switch (pool(rng)) {
      case 0:
      case 1:
      case 2:
      case 3: cp = std::uniform_int_distribution<int>(0x20, 0x7E)(rng); break;
      case 4: cp = U" \n\t"[std::uniform_int_distribution<int>(0, 2)(rng)]; break;
      case 5: cp = kSpecialPieces[std::uniform_int_distribution<int>(0, 13)(rng)]; break;
      case 6: cp = std::uniform_int_distribution<int>(0x01, 0xFF)(rng); break;
      case 7: cp = std::uniform_int_distribution<int>(0x100, 0xD7FF)(rng); break;
      case 8: cp = std::uniform_int_distribution<int>(0xE000, 0xFFFD)(rng); break;
      default: cp = std::uniform_int_distribution<int>(0x10000, 0x10FFFF)(rng); break;
    }
    if (cp == 0x2581) cp = 0x2580;  // a literal "▁" reads as a space (documented difference)
    char buf[4];
    int k;
    if (cp < 0x80)
      buf[0] = static_cast<char>(cp), k = 1;
    else if (cp < 0x800)
      buf[0] = static_cast<char>(0xC0 | (cp >> 6)), buf[1] = static_cast<char>(0x80 | (cp & 0x3F)),
      k = 2;
    else if (cp < 0x10000)
      buf[0] = static_cast<char>(0xE0 | (cp >> 12)),
      buf[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
      buf[2] = static_cast<char>(0x80 | (cp & 0x3F)), k = 3;
    else
      buf[0] = static_cast<char>(0xF0 | (cp >> 18)),
      buf[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
      buf[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
      buf[3] = static_cast<char>(0x80 | (cp & 0x3F)), k = 4;
    s.append(buf, k);
  }
  return s;
}

TEST(Llama2c, EncodesLikeLlama2c) {
  const Fixture& f = fx();
  const std::vector<std::string> fixed = {
      "",
      " ",
      "  ",
      "Once upon a time",
      "Once upon a time, there was a little girl named Lily. She loved to play outside.",
      " leading space",
      "trailing space ",
      "two  spaces   three",
      "\n",
      "line one\nline two\n\n",
      "\ttab",
      "Hello, World! 1234567890 3.14 -42 +7 (a) [b] {c} <d> @#$%^&*_=|\\/~`",
      "\"quoted\" 'single' “curly” ‘single curly’ – — … € ™",
      "Café résumé naïve señor jalapeño",
      "日本語 中文 한국어 Русский ελληνικά",
      "🙂 😀😃 👍🏽 👨‍👩‍👧‍👦",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "the the the the the",
      "Tom and Tim were friends. They liked to play with their toys.",
  };
  for (const std::string& text : fixed) {
    auto ids = f.tok.encode(text);
    ASSERT_TRUE(ids.ok()) << ids.error();
    const std::vector<int> ref = l2c_encode(f.ref, text, true, false);
    EXPECT_EQ(*ids, std::vector<int32_t>(ref.begin(), ref.end())) << "text \"" << text << "\"";
  }
  std::mt19937 rng(1234);
  int mismatches = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string text = random_text(rng, i < 2000 ? 24 : 200);
    auto ids = f.tok.encode(text);
    ASSERT_TRUE(ids.ok()) << ids.error();
    const std::vector<int> ref = l2c_encode(f.ref, text, true, false);
    if (*ids != std::vector<int32_t>(ref.begin(), ref.end()) && ++mismatches <= 5)
      ADD_FAILURE() << "seed 1234, string " << i << ": \"" << text << "\"";
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Llama2c, BosInTextIsSpecialUnlessEncodedAsText) {
  const Fixture& f = fx();
  const std::string text = "a<s>b</s>c<unk>";
  auto as_text = f.tok.encode(text, {.special_as_text = true});
  const std::vector<int> ref = l2c_encode(f.ref, text, true, false);
  EXPECT_EQ(*as_text, std::vector<int32_t>(ref.begin(), ref.end()));
  auto matched = f.tok.encode(text);  // HF semantics: the special tokens are matched
  EXPECT_EQ(std::count(matched->begin(), matched->end(), 1), 2);
}

TEST(Llama2c, DecodesLikeLlama2c) {
  const Fixture& f = fx();
  std::mt19937 rng(99);
  // Round trips: what llama2.c prints for its own encoding of a text.
  for (int i = 0; i < 500; ++i) {
    const std::string text = random_text(rng, 40);
    const std::vector<int> ref = l2c_encode(f.ref, text, true, false);
    const std::vector<int32_t> ids(ref.begin(), ref.end());
    EXPECT_EQ(f.tok.decode(ids, /*skip_special=*/true), l2c_decode(f.ref, ref))
        << "text \"" << text << "\"";
    EXPECT_EQ(f.tok.decode(ids, true), text);
  }
  // Random streams of pieces after BOS, as a model generates them.
  std::uniform_int_distribution<int> piece(259, 511), n(1, 60);
  for (int i = 0; i < 500; ++i) {
    std::vector<int> ref = {1};
    for (int k = n(rng); k > 0; --k) ref.push_back(piece(rng));
    const std::vector<int32_t> ids(ref.begin(), ref.end());
    EXPECT_EQ(f.tok.decode(ids, true), l2c_decode(f.ref, ref));
  }
}

TEST(Llama2c, SpecialTokens) {
  const Fixture& f = fx();
  EXPECT_EQ(f.tok.special_tokens().bos, 1);
  EXPECT_EQ(f.tok.special_tokens().eos, 2);
  EXPECT_EQ(f.tok.special_tokens().unk, 0);
  EXPECT_EQ(f.tok.vocab_size(), 512);
  EXPECT_EQ(f.tok.id_to_token(1), "<s>");
  EXPECT_TRUE(f.tok.is_special(1));
  EXPECT_EQ(*f.tok.encode("", {}), std::vector<int32_t>({1}));
  EXPECT_EQ(*f.tok.encode("", {.add_special_tokens = false}), std::vector<int32_t>());
}

TEST(Llama2c, BadFiles) {
  std::vector<uint8_t> bytes;
  {
    std::ifstream in(kTok512, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 1000u);
  auto truncated = tokenizer_json_from_llama2c_bytes({bytes.data(), bytes.size() - 3}, "t");
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.error().find("token 511"), std::string::npos) << truncated.error();
  auto wrong_size = tokenizer_json_from_llama2c(kTok512, 32000);
  ASSERT_FALSE(wrong_size.ok());
  EXPECT_NE(wrong_size.error().find("512 tokens, expected vocab_size 32000"), std::string::npos)
      << wrong_size.error();
  std::vector<uint8_t> bad_len = bytes;
  const int32_t huge = 1 << 30;
  std::memcpy(bad_len.data() + 8, &huge, 4);  // first token's length
  auto bl = tokenizer_json_from_llama2c_bytes(bad_len, "t");
  ASSERT_FALSE(bl.ok());
  EXPECT_NE(bl.error().find("length 1073741824"), std::string::npos) << bl.error();
  auto empty = tokenizer_json_from_llama2c_bytes({}, "t");
  EXPECT_FALSE(empty.ok());
  auto missing = tokenizer_json_from_llama2c("/nonexistent/tok.bin");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("/nonexistent/tok.bin"), std::string::npos);
}

}  // namespace
}  // namespace pensieve
