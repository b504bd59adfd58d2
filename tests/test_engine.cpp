// Continuous batching: the engine's output for a request must not depend on what else runs
// (batch composition, preemption and recomputation, prefix-cache hits), and it must match the
// golden greedy continuation of the model.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "models/engine.h"
#include "tensor/safetensors.h"

namespace pensieve {
namespace {

const std::string kModel = std::string(PENSIEVE_TEST_DATA) + "/models/phi3-tiny";

std::unique_ptr<Model> load(Precision p, int64_t kv_blocks, DType kv = DType::f16) {
  ModelOptions o;
  o.precision = p;
  o.kv.n_blocks = kv_blocks;
  o.kv_type = kv == DType::f32 ? ModelOptions::KvType::f32 : ModelOptions::KvType::f16;
  o.threads = 2;
  auto m = Model::load(kModel, o);
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error());
  return std::move(*m);
}

std::vector<int32_t> golden_ids(const std::string& name) {
  auto f = SafetensorsFile::open(kModel + "/golden.safetensors");
  auto t = f->tensor(name);
  return std::vector<int32_t>(t->ptr<int32_t>(), t->ptr<int32_t>() + t->numel());
}

struct Outcome {
  std::vector<int32_t> tokens;
  Finish finish;
  bool done = false;
};

// Submits all prompts, steps the engine until every request finished, returns outcomes.
std::vector<Outcome> run_all(Engine& e, const std::vector<std::vector<int32_t>>& prompts, int64_t max_tokens,
                             SamplingParams sp = {}) {
  std::vector<Outcome> out(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    Request r;
    r.prompt = prompts[i];
    r.max_tokens = max_tokens;
    r.sampling = sp;
    r.on_token = [&out, i](int32_t t) { out[i].tokens.push_back(t); return true; };
    r.on_finish = [&out, i](const Finish& f) { out[i].finish = f; out[i].done = true; };
    auto id = e.submit(std::move(r));
    EXPECT_TRUE(id.ok()) << (id.ok() ? "" : id.error());
  }
  for (int guard = 0; guard < 100000; ++guard) {
    bool all = true;
    for (auto& o : out) all = all && o.done;
    if (all) break;
    e.step();
  }
  return out;
}

std::vector<std::vector<int32_t>> random_prompts(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> p;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> ids(size_t(1 + rng() % 70));
    for (auto& t : ids) t = int32_t(rng() % 32000);
    p.push_back(ids);
  }
  return p;
}

SamplingParams greedy() {
  SamplingParams s;
  s.temperature = 0;
  return s;
}

TEST(Engine, GreedyMatchesGolden) {
  auto m = load(Precision::exact, 64, DType::f32);
  Engine e(*m, {});
  for (int p = 0; p < 3; ++p) {
    std::string pre = "prompt" + std::to_string(p) + ".";
    auto out = run_all(e, {golden_ids(pre + "input_ids")}, 24, greedy());
    EXPECT_EQ(out[0].tokens, golden_ids(pre + "greedy_ids")) << pre;
    EXPECT_EQ(out[0].finish.reason, FinishReason::length);
    EXPECT_EQ(out[0].finish.output_tokens, 24);
  }
}

// Alone, then 12 at once with small step budgets (chunked prefill interleaved with decode),
// then again in a pool so small that sequences get preempted and recomputed: same tokens.
TEST(Engine, ResultsIndependentOfBatching) {
  for (Precision prec : {Precision::exact, Precision::fast}) {
    auto prompts = random_prompts(12, 7);
    std::vector<std::vector<int32_t>> alone;
    {
      auto m = load(prec, 256);
      EngineOptions o;
      o.max_seqs = 1;
      Engine e(*m, o);
      for (auto& p : prompts) alone.push_back(run_all(e, {p}, 20, greedy())[0].tokens);
    }
    for (int64_t blocks : {int64_t(256), int64_t(24)}) {
      auto m = load(prec, blocks);
      EngineOptions o;
      o.max_seqs = 12;
      o.max_batch_tokens = 40;
      Engine e(*m, o);
      auto out = run_all(e, prompts, 20, greedy());
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(out[i].tokens, alone[i]) << "prompt " << i << " blocks " << blocks;
        EXPECT_EQ(out[i].finish.reason, FinishReason::length);
      }
      if (blocks == 24) EXPECT_GT(e.stats().preemptions_total, 0);
      EXPECT_EQ(m->cache().free_blocks(), m->cache().n_blocks()) << "every block back in the pool or cache";
    }
  }
}

TEST(Engine, PrefixReuse) {
  auto m = load(Precision::fast, 128);
  Engine e(*m, {});
  std::vector<int32_t> sys = random_prompts(1, 3)[0];
  while (sys.size() < 50) sys.insert(sys.end(), sys.begin(), sys.end());
  std::vector<int32_t> a = sys, b = sys;
  a.push_back(11);
  b.push_back(22);
  auto first = run_all(e, {a}, 8, greedy());
  EXPECT_EQ(first[0].finish.cached_tokens, 0);
  auto second = run_all(e, {b}, 8, greedy());
  EXPECT_EQ(second[0].finish.cached_tokens, int64_t(sys.size()) / 16 * 16);
  // The same request without the cache gives the same tokens.
  auto m2 = load(Precision::fast, 128);
  Engine e2(*m2, {});
  Request r;
  auto fresh = run_all(e2, {b}, 8, greedy());
  EXPECT_EQ(second[0].tokens, fresh[0].tokens);
}

TEST(Engine, SeededSamplingReproducible) {
  auto m = load(Precision::fast, 128);
  Engine e(*m, {});
  SamplingParams s;
  s.temperature = 0.8f;
  s.top_p = 0.9f;
  s.seed = 42;
  s.has_seed = true;
  auto prompts = random_prompts(3, 11);
  auto a = run_all(e, prompts, 16, s);
  auto b = run_all(e, {prompts[1]}, 16, s);
  EXPECT_EQ(a[1].tokens, b[0].tokens);
}

TEST(Engine, CancelAndCallbackStop) {
  auto m = load(Precision::fast, 128);
  Engine e(*m, {});
  std::vector<int32_t> got;
  Finish fin;
  bool done = false;
  Request r;
  r.prompt = {1, 2, 3, 4, 5};
  r.max_tokens = 1000;
  r.sampling = greedy();
  r.on_token = [&](int32_t t) { got.push_back(t); return got.size() < 5; };
  r.on_finish = [&](const Finish& f) { fin = f; done = true; };
  ASSERT_TRUE(e.submit(std::move(r)).ok());
  while (!done) e.step();
  EXPECT_EQ(fin.reason, FinishReason::callback);
  EXPECT_EQ(got.size(), 5u);

  done = false;
  Request r2;
  r2.prompt = {1, 2, 3};
  r2.max_tokens = 1000;
  r2.on_finish = [&](const Finish& f) { fin = f; done = true; };
  auto id = e.submit(std::move(r2));
  ASSERT_TRUE(id.ok());
  for (int i = 0; i < 3; ++i) e.step();
  e.cancel(*id);
  for (int i = 0; i < 3 && !done; ++i) e.step();
  EXPECT_TRUE(done);
  EXPECT_EQ(fin.reason, FinishReason::cancelled);
  EXPECT_EQ(e.stats().running, 0);
  EXPECT_EQ(m->cache().free_blocks(), m->cache().n_blocks());
}

TEST(Engine, BadRequestsAreErrors) {
  auto m = load(Precision::fast, 8);  // 128-token pool: also the context limit
  EngineOptions o;
  o.max_seqs = 1;
  o.max_queue = 1;
  Engine e(*m, o);
  Request r;
  EXPECT_FALSE(e.submit(r).ok());  // empty prompt
  r.prompt.assign(128, 5);
  auto too_long = e.submit(r);
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.error().find("128 tokens"), std::string::npos) << too_long.error();
  r.prompt = {1, 2};
  r.max_tokens = 0;
  EXPECT_FALSE(e.submit(r).ok());
  r.max_tokens = 4;
  r.prompt = {1, 40000};
  EXPECT_FALSE(e.submit(r).ok());  // outside the vocabulary
  r.prompt = {1, 2};
  r.sampling.top_p = 0;
  EXPECT_FALSE(e.submit(r).ok());
  r.sampling = {};
  EXPECT_TRUE(e.submit(r).ok());
  EXPECT_TRUE(e.submit(r).ok());  // one running slot + one queued
  auto over = e.submit(r);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().rfind("overloaded", 0), 0u) << over.error();
}

}  // namespace
}  // namespace pensieve
