// Sampler (statistics of each filter, reproducibility, penalties) and TextStream (stop strings
// across token boundaries).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "models/sampler.h"
#include "models/text_stream.h"

namespace pensieve {
namespace {

std::vector<float> random_logits(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 2);
  std::vector<float> l(static_cast<size_t>(n));
  for (float& x : l) x = nd(rng);
  return l;
}

std::vector<int32_t> top_ids(const std::vector<float>& l, int k) {
  std::vector<int32_t> ids(l.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i);
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return l[size_t(a)] > l[size_t(b)]; });
  ids.resize(size_t(k));
  return ids;
}

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  std::vector<float> l = {0.5f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(s.sample(l.data(), 4, {}, {}), 1);
}

TEST(Sampler, TopKNeverPicksOutsideTheKBest) {
  auto base = random_logits(1000, 1);
  auto allowed = top_ids(base, 5);
  SamplingParams p;
  p.top_k = 5;
  p.temperature = 1.5f;
  p.seed = 7;
  p.has_seed = true;
  Sampler s(p);
  std::map<int32_t, int> seen;
  for (int i = 0; i < 4000; ++i) {
    auto l = base;
    int32_t t = s.sample(l.data(), 1000, {}, {});
    ASSERT_NE(std::find(allowed.begin(), allowed.end(), t), allowed.end()) << t;
    ++seen[t];
  }
  EXPECT_EQ(seen.size(), 5u) << "all of the top 5 get drawn at temperature 1.5";
}

// Draw frequencies follow softmax(l / T) renormalized over the nucleus; top-p keeps the smallest
// prefix whose mass reaches p.
TEST(Sampler, TopPKeepsTheNucleusWithTheRightFrequencies) {
  std::vector<float> base = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f};
  double z = 0;
  for (float x : base) z += std::exp(x);
  std::vector<double> p(base.size());
  for (size_t i = 0; i < base.size(); ++i) p[i] = std::exp(base[i]) / z;
  // p ≈ .52 .19 .12 .07 .03 .003: top_p 0.8 keeps the first three (.52+.19 = .71 < .8 <= .83).
  SamplingParams sp;
  sp.top_p = 0.8f;
  sp.seed = 3;
  sp.has_seed = true;
  Sampler s(sp);
  const int N = 60000;
  std::vector<int> count(base.size());
  for (int i = 0; i < N; ++i) {
    auto l = base;
    ++count[size_t(s.sample(l.data(), int64_t(l.size()), {}, {}))];
  }
  double kept = p[0] + p[1] + p[2];
  for (size_t i = 0; i < 3; ++i) {
    double expect = p[i] / kept, got = double(count[i]) / N;
    EXPECT_NEAR(got, expect, 4 * std::sqrt(expect * (1 - expect) / N)) << i;  // 4 sigma
  }
  for (size_t i = 3; i < base.size(); ++i) EXPECT_EQ(count[i], 0) << i;
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  std::vector<float> base = {0.0f, -0.5f, -3.0f, -5.0f};  // p / p_max = 1, .61, .05, .007
  SamplingParams sp;
  sp.min_p = 0.1f;
  sp.top_p = 1;
  sp.seed = 5;
  sp.has_seed = true;
  Sampler s(sp);
  std::set<int32_t> seen;
  for (int i = 0; i < 3000; ++i) {
    auto l = base;
    seen.insert(s.sample(l.data(), 4, {}, {}));
  }
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1}));
}

TEST(Sampler, SeedReproducesAndDiffers) {
  auto base = random_logits(5000, 9);
  auto draw = [&](uint64_t seed) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.seed = seed;
    p.has_seed = true;
    Sampler s(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) {
      auto l = base;
      out.push_back(s.sample(l.data(), 5000, {}, {}));
    }
    return out;
  };
  EXPECT_EQ(draw(11), draw(11));
  EXPECT_NE(draw(11), draw(12));
}

TEST(Sampler, PenaltiesFollowHfAndOpenAi) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  Sampler s(p);
  // Token 0 (logit 3, seen) becomes 1.5 < token 1 (2.0): greedy moves to 1. A negative logit of
  // a seen token is multiplied (more negative), once however often it occurs.
  std::vector<float> l = {3.0f, 2.0f, -1.0f};
  EXPECT_EQ(s.sample(l.data(), 3, {0, 0, 0}, {2}), 1);
  EXPECT_FLOAT_EQ(l[0], 1.5f);
  EXPECT_FLOAT_EQ(l[2], -2.0f);

  SamplingParams q;
  q.temperature = 0;
  q.presence_penalty = 0.5f;
  q.frequency_penalty = 0.25f;
  Sampler t(q);
  std::vector<float> m = {3.0f, 2.5f, 0.0f};
  // Output has token 0 twice: 3 - 0.5 - 2·0.25 = 2.0 < 2.5. The prompt does not count.
  EXPECT_EQ(t.sample(m.data(), 3, {1, 1, 1}, {0, 0}), 1);
  EXPECT_FLOAT_EQ(m[0], 2.0f);
  EXPECT_FLOAT_EQ(m[1], 2.5f);
}

TEST(Sampler, ValidatesRanges) {
  SamplingParams p;
  EXPECT_TRUE(validate(p).ok());
  p.temperature = -1;
  EXPECT_FALSE(validate(p).ok());
  p = {};
  p.top_p = 0;
  EXPECT_FALSE(validate(p).ok());
  p = {};
  p.top_k = -2;
  EXPECT_FALSE(validate(p).ok());
  p = {};
  p.min_p = 1.5f;
  EXPECT_FALSE(validate(p).ok());
  p = {};
  p.temperature = NAN;
  EXPECT_FALSE(validate(p).ok());
}

// TextStream over the phi3 tokenizer: a stop string split across tokens is caught, the text
// before it is released, the stop string is not.
TEST(TextStream, StopStringsAcrossTokenBoundaries) {
  auto tok = Tokenizer::load(std::string(PENSIEVE_TEST_DATA) + "/tokenizers/phi3");
  ASSERT_TRUE(tok.ok()) << tok.error();
  const std::string text = "Hello world, the answer is forty-two. END of story";
  auto ids = tok->encode(text, {false, false});
  ASSERT_TRUE(ids.ok());
  for (const std::string stop : {"END", "forty-two", "wor", "y", ". E"}) {
    TextStream s(*tok, {"never", stop});
    std::string out;
    size_t i = 0;
    for (; i < ids->size() && !s.stopped(); ++i) out += s.push((*ids)[i]);
    out += s.finish();
    ASSERT_TRUE(s.stopped()) << stop;
    EXPECT_EQ(s.stop_string(), stop);
    EXPECT_EQ(out, text.substr(0, text.find(stop))) << stop;
  }
  // No stop string: everything comes out, identical to decode().
  TextStream s(*tok, {"zzz"});
  std::string out;
  for (int32_t id : *ids) out += s.push(id);
  out += s.finish();
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(out, text);
}

}  // namespace
}  // namespace pensieve
