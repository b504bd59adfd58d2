// Continuous batching: the engine's output for a request must not depend on what else runs
// (batch composition, preemption and recomputation, prefix-cache hits), and it must match the
// golden greedy continuation of the model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "models/engine.h"
#include "tensor/safetensors.h"
#include "tests/vulkan_test_device.h"

namespace pensieve {
namespace {

const std::string kModel = std::string(PENSIEVE_TEST_DATA) + "/models/phi3-tiny";

// The device the engine tests run on: "cpu", or the Vulkan device for the EngineVulkan copies.
std::string g_device = "cpu";

std::unique_ptr<Model> load(Precision p, int64_t kv_blocks, DType kv = DType::f16) {
  ModelOptions o;
  o.device = g_device;
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

void GreedyMatchesGolden() {
  auto m = load(Precision::exact, 64, DType::f32);
  ASSERT_STREQ(m->forward().name(), g_device == "cpu" ? "cpu" : "vulkan");
  Engine e(*m, {});
  // The GPU warm-up runs throwaway steps of every size class: it must leave no blocks held and no
  // trace in the results below; on the CPU it does nothing.
  EXPECT_EQ(e.warm_up() > 0, g_device != "cpu");
  EXPECT_EQ(m->cache().free_blocks(), m->cache().n_blocks());
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
void ResultsIndependentOfBatching() {
  for (Precision prec : {Precision::exact, Precision::fast}) {
    if (!load(prec, 16)->forward().batch_invariant()) continue;  // Vulkan fast with tensor cores: documented
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

void PrefixReuse() {
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

// (Bit-for-bit only where the forward is batch-invariant: the Vulkan fast precision on GPUs with
// tensor cores is not, so there the exact one runs.)
void SeededSamplingReproducible() {
  auto m = load(Precision::fast, 128);
  if (!m->forward().batch_invariant()) m = load(Precision::exact, 128);
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

void CancelAndCallbackStop() {
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
  // The step counters (/metrics): one step prefilled the 5 prompt tokens, 4 decoded one each.
  EngineStats st = e.stats();
  EXPECT_EQ(st.steps_total, 5);
  EXPECT_EQ(st.prefill_steps_total, 1);
  EXPECT_EQ(st.step_tokens_total, 9);
  EXPECT_GT(st.forward_seconds_total, 0);
  EXPECT_LE(st.forward_seconds_total, st.step_seconds_total);
  EXPECT_GT(st.prefill_step_seconds_total, 0);
  EXPECT_LE(st.prefill_step_seconds_total, st.step_seconds_total);

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

// Each test on the CPU and, where there is a Vulkan device, on the Vulkan forward pass.
struct OnDevice {
  explicit OnDevice(const std::string& d) { g_device = d; }
  ~OnDevice() { g_device = "cpu"; }
};
#define ENGINE_TEST(name)                                                     \
  TEST(Engine, name) { name(); }                                              \
  TEST(EngineVulkan, name) {                                                  \
    std::string dev = test_vulkan_device();                                   \
    if (dev.empty()) GTEST_SKIP() << "no Vulkan device";                      \
    OnDevice on(dev);                                                         \
    name();                                                                   \
  }
ENGINE_TEST(GreedyMatchesGolden)
ENGINE_TEST(ResultsIndependentOfBatching)
ENGINE_TEST(PrefixReuse)
ENGINE_TEST(SeededSamplingReproducible)
ENGINE_TEST(CancelAndCallbackStop)

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

namespace pensieve {
namespace {

// The top-k path: run_topk's candidates are exactly the best entries of run()'s logits rows
// (values bit for bit, ties to the lower id), on the CPU (default implementation) and on Vulkan.
void TopKMatchesFullLogits() {
  auto m = load(Precision::fast, 64);
  const int64_t V = m->config().vocab;
  auto prompts = random_prompts(3, 5);
  std::vector<SeqKv> seqs(prompts.size());
  std::vector<SeqChunk> chunks;
  for (size_t i = 0; i < prompts.size(); ++i) {
    seqs[i].start(m->cache(), prompts[i], false, false);
    ASSERT_TRUE(seqs[i].reserve(m->cache(), int64_t(prompts[i].size())));
    SeqChunk ch;
    ch.tokens = prompts[i].data();
    ch.n = int64_t(prompts[i].size());
    ch.block_table = seqs[i].blocks().data();
    ch.logits = i == 1 ? SeqChunk::Logits::all : SeqChunk::Logits::last;
    ch.top_k = i == 2 ? 0 : i == 0 ? 1 : 40;
    chunks.push_back(ch);
  }
  const int64_t rows = logits_rows(chunks), top_rows = topk_rows(chunks);
  std::vector<float> full(size_t(rows * V));
  ASSERT_TRUE(m->forward().run(chunks, full.data()).ok());  // writes the same KV again below
  std::vector<float> rest(size_t((rows - top_rows) * V)), values(size_t(top_rows * kMaxTopK));
  std::vector<int32_t> ids(size_t(top_rows * kMaxTopK));
  Status st = m->forward().run_topk(chunks, rest.data(), TopK{values.data(), ids.data()});
  ASSERT_TRUE(st.ok()) << st.error();
  int64_t row = 0, top_row = 0, rest_row = 0;
  for (const SeqChunk& ch : chunks) {
    int64_t n = ch.logits == SeqChunk::Logits::all ? ch.n : 1;
    for (int64_t i = 0; i < n; ++i, ++row) {
      const float* ref = full.data() + row * V;
      if (ch.top_k == 0) {
        EXPECT_EQ(std::memcmp(ref, rest.data() + rest_row++ * V, size_t(V) * 4), 0) << "row " << row;
        continue;
      }
      float v[kMaxTopK];
      int32_t id[kMaxTopK];
      select_topk(ref, V, ch.top_k, v, id);
      for (int k = 0; k < ch.top_k; ++k) {
        EXPECT_EQ(ids[size_t(top_row * kMaxTopK + k)], id[k]) << "row " << row << " rank " << k;
        EXPECT_EQ(values[size_t(top_row * kMaxTopK + k)], v[k]) << "row " << row << " rank " << k;
      }
      ++top_row;
    }
  }
  for (auto& s : seqs) s.release(m->cache());
}
ENGINE_TEST(TopKMatchesFullLogits)

// A step mixing a prefill chunk with a decoding sequence gives each the logits it gets alone (on
// GPUs with tensor cores the chunk's attention takes the prefill kernel and the decode token the
// split-K decode kernel in that step, and the token's projections run in f16 on the tensor cores
// in the mixed step but with int8 activations in the matvec alone (devices with integer dot
// products): a small relative difference, 1.7% measured on the H200).
void MixedStepMatchesSeparateSteps() {
  auto m = load(Precision::fast, 64);
  const int64_t V = m->config().vocab;
  auto prompts = random_prompts(2, 11);
  prompts[0].resize(40, 7);  // the prefill chunk: 40 tokens
  prompts[1].resize(31, 9);  // 30 cached, then one decoded
  auto chunk_of = [](SeqKv& s, const std::vector<int32_t>& ids, int64_t pos0, int64_t n) {
    SeqChunk ch;
    ch.tokens = ids.data() + pos0;
    ch.n = n;
    ch.pos0 = pos0;
    ch.block_table = s.blocks().data();
    ch.logits = SeqChunk::Logits::last;
    return ch;
  };
  const size_t nv = static_cast<size_t>(V);
  std::vector<float> alone_a(nv), alone_b(nv), mixed(2 * nv), scratch(nv);
  {
    SeqKv a, b;
    a.start(m->cache(), prompts[0], false, false);
    b.start(m->cache(), prompts[1], false, false);
    ASSERT_TRUE(a.reserve(m->cache(), 40) && b.reserve(m->cache(), 31));
    ASSERT_TRUE(m->forward().run({chunk_of(a, prompts[0], 0, 40)}, alone_a.data()).ok());
    ASSERT_TRUE(m->forward().run({chunk_of(b, prompts[1], 0, 30)}, scratch.data()).ok());
    ASSERT_TRUE(m->forward().run({chunk_of(b, prompts[1], 30, 1)}, alone_b.data()).ok());
    a.release(m->cache());
    b.release(m->cache());
  }
  {
    SeqKv a, b;
    a.start(m->cache(), prompts[0], false, false);
    b.start(m->cache(), prompts[1], false, false);
    ASSERT_TRUE(a.reserve(m->cache(), 40) && b.reserve(m->cache(), 31));
    ASSERT_TRUE(m->forward().run({chunk_of(b, prompts[1], 0, 30)}, scratch.data()).ok());
    Status st = m->forward().run({chunk_of(a, prompts[0], 0, 40), chunk_of(b, prompts[1], 30, 1)}, mixed.data());
    ASSERT_TRUE(st.ok()) << st.error();
    a.release(m->cache());
    b.release(m->cache());
  }
  auto rel = [&](const float* x, const float* y) {
    double d = 0, n = 0;
    for (int64_t i = 0; i < V; ++i) {
      d += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
      n += double(y[i]) * y[i];
    }
    return std::sqrt(d / n);
  };
  EXPECT_LT(rel(mixed.data(), alone_a.data()), 1e-2) << "prefill chunk";
  EXPECT_LT(rel(mixed.data() + V, alone_b.data()), 4e-2) << "decode token";
}
ENGINE_TEST(MixedStepMatchesSeparateSteps)

// Sampler::sample_top on a row's best candidates picks what sample() picks from the whole row,
// with the same random draws, including ties and values that divide to the same float.
TEST(Sampler, TopCandidatesGiveTheSameToken) {
  std::mt19937 rng(3);
  std::normal_distribution<float> logit(0.f, 3.f);
  const int64_t V = 1000;
  std::vector<SamplingParams> params(5);
  params[0].temperature = 0;
  params[1].temperature = 0.7f, params[1].top_k = 5;
  params[2].temperature = 1.3f, params[2].top_k = 40, params[2].top_p = 0.9f, params[2].min_p = 0.05f;
  params[3].temperature = 3.0f, params[3].top_k = 64;
  params[4].temperature = 1.0f, params[4].top_k = 2;
  for (size_t pi = 0; pi < params.size(); ++pi) {
    SamplingParams p = params[pi];
    p.seed = 99;
    p.has_seed = true;
    Sampler full(p), top(p);
    const int k = top.candidates_needed(kMaxTopK);
    ASSERT_GT(k, 0);
    for (int r = 0; r < 300; ++r) {
      std::vector<float> row(static_cast<size_t>(V));
      for (auto& x : row) x = logit(rng);
      // Ties (equal logits) and adjacent floats (equal after dividing by a temperature > 1).
      row[size_t(r % V)] = row[size_t((r * 7 + 3) % V)] = 9.f;
      row[size_t((r * 13 + 1) % V)] = std::nextafter(8.f, 9.f);
      row[size_t((r * 17 + 2) % V)] = 8.f;
      float v[kMaxTopK];
      int32_t id[kMaxTopK];
      select_topk(row.data(), V, k, v, id);
      std::vector<int32_t> none;
      int32_t a = full.sample(row.data(), V, none, none);
      int32_t b = top.sample_top(v, id, k);
      ASSERT_EQ(a, b) << "params " << pi << " row " << r;
    }
  }
  SamplingParams pen;
  pen.repetition_penalty = 1.1f;
  EXPECT_EQ(Sampler(pen).candidates_needed(kMaxTopK), 0);
  SamplingParams top_p_only;
  top_p_only.top_p = 0.9f;
  EXPECT_EQ(Sampler(top_p_only).candidates_needed(kMaxTopK), 0);
}

// --device: "auto" without a usable GPU runs on the CPU; "vulkan" without one is an error, as is a
// missing loader; unknown names are errors.
TEST(ModelDevice, SelectionAndFallbacks) {
  ModelOptions o;
  o.kv.n_blocks = 16;
  o.threads = 2;
  o.device = "gpu";
  EXPECT_FALSE(Model::load(kModel, o).ok());
#ifdef PENSIEVE_HAS_VULKAN
  ::setenv("PENSIEVE_VULKAN_LIBRARY", "/nonexistent/libvulkan.so.1", 1);
  o.device = "auto";
  auto cpu = Model::load(kModel, o);
  o.device = "vulkan";
  auto none = Model::load(kModel, o);
  ::unsetenv("PENSIEVE_VULKAN_LIBRARY");
  ASSERT_TRUE(cpu.ok()) << cpu.error();
  EXPECT_STREQ((*cpu)->forward().name(), "cpu");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().find("no Vulkan loader"), std::string::npos) << none.error();

  auto devices = vulkan::Context::list_devices();
  bool gpu = false;
  if (devices.ok())
    for (const auto& d : *devices) gpu = gpu || !d.is_cpu();
  o.device = "vulkan";
  auto v = Model::load(kModel, o);
  EXPECT_EQ(v.ok(), gpu) << (v.ok() ? "" : v.error());
  o.device = "auto";
  auto a = Model::load(kModel, o);
  ASSERT_TRUE(a.ok()) << a.error();
  EXPECT_STREQ((*a)->forward().name(), gpu ? "vulkan" : "cpu");
  if (std::string dev = test_vulkan_device(); !dev.empty()) {
    o.device = dev;
    auto named = Model::load(kModel, o);
    ASSERT_TRUE(named.ok()) << named.error();
    EXPECT_STREQ((*named)->forward().name(), "vulkan");
  }
#else
  o.device = "vulkan";
  EXPECT_FALSE(Model::load(kModel, o).ok());
#endif
}

}  // namespace
}  // namespace pensieve
