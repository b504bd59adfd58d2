// RMSNorm, RoPE and attention at Phi shapes.
//
//   rmsnorm/rows:<n>                    hidden 3072
//   rope/<model>/tokens:<n>             q heads of Phi-3 (32 x 96, full) / Phi-4-mini (24 x 128, rot 96)
//   attention_decode/<model>/ctx:<c>    20 sequences, one query each at position c - 1, f16 KV;
//                                       bytes = K and V read; pct_of_read_bw against the probe
//   attention_decode_1seq/<model>/ctx:<c>  one sequence (the kv heads split over the threads),
//                                       a different one of 16 per call, as the layers of a model
//                                       would be, so the KV comes from DRAM and not the L3
//   attention_prefill/<model>/tokens:512  one sequence, causal
#include <numeric>
#include <string>

#include "bench/bench_common.h"

namespace pensieve::bench {
namespace {

struct Model {
  const char* name;
  int n_heads, n_kv_heads, head_dim, rot_dim;
};
const Model kPhi3{"phi3", 32, 32, 96, 96};
const Model kPhi4{"phi4", 24, 8, 128, 96};

std::vector<float> normal(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

void BM_Rmsnorm(benchmark::State& st) {
  const int64_t rows = st.range(0), dim = 3072;
  std::vector<float> x = normal(size_t(rows * dim), 1), w = normal(size_t(dim), 2), y(x.size());
  double seconds = 0;
  for (auto _ : st) {
    double t = time_call([&] { ops::rmsnorm(*env().ctx, y.data(), x.data(), w.data(), rows, dim, 1e-5f); });
    st.SetIterationTime(t);
    seconds += t;
  }
  set_counters(st, seconds, double(rows * dim * 4 + dim * 4), 3.0 * rows * dim, false);
}

void BM_Rope(benchmark::State& st, Model m) {
  const int64_t n = st.range(0), stride = int64_t(m.n_heads) * m.head_dim, half = m.rot_dim / 2;
  std::vector<float> x = normal(size_t(n * stride), 3), cs = normal(size_t(n * half), 4), sn = normal(size_t(n * half), 5);
  double seconds = 0;
  for (auto _ : st) {
    double t = time_call([&] { ops::rope(*env().ctx, x.data(), n, stride, m.n_heads, m.head_dim, m.rot_dim, cs.data(), sn.data()); });
    st.SetIterationTime(t);
    seconds += t;
  }
  set_counters(st, seconds, double(n) * (m.n_heads * m.rot_dim + 2 * half) * 4, 6.0 * n * m.n_heads * half, false);
}

// A paged f16 KV cache for `seqs` sequences of `len` positions each (blocks of 16, shuffled).
struct Cache {
  std::vector<uint16_t> k, v;
  std::vector<int32_t> table;
  KvLayer kv;
  int64_t blocks_per_seq;
};
Cache make_cache(const Model& m, int seqs, int64_t len) {
  Cache c;
  const int bs = 16;
  c.blocks_per_seq = (len + bs - 1) / bs;
  const int64_t blocks = c.blocks_per_seq * seqs, elems = blocks * m.n_kv_heads * bs * m.head_dim;
  std::vector<float> f = normal(size_t(std::min<int64_t>(elems, 1 << 20)), 6);
  c.k.resize(size_t(elems));
  c.v.resize(size_t(elems));
  for (int64_t i = 0; i < elems; ++i) {
    c.k[size_t(i)] = f32_to_f16(f[size_t(i) % f.size()]);
    c.v[size_t(i)] = f32_to_f16(f[size_t(i * 7) % f.size()]);
  }
  c.table.resize(size_t(blocks));
  std::iota(c.table.begin(), c.table.end(), 0);
  std::shuffle(c.table.begin(), c.table.end(), std::mt19937(8));
  c.kv = KvLayer{c.k.data(), c.v.data(), DType::f16, int64_t(m.n_kv_heads) * bs * m.head_dim, int64_t(bs) * m.head_dim,
                 bs, m.n_kv_heads, m.head_dim};
  return c;
}

AttnParams params(const Model& m) {
  AttnParams p;
  p.n_heads = m.n_heads;
  p.scale = 1.0f / std::sqrt(float(m.head_dim));
  p.q_stride = int64_t(m.n_heads) * m.head_dim;
  p.out_stride = p.q_stride;
  return p;
}

// Decode of `seqs` sequences per call; the cache holds `rounds` such sets, one per call in turn
// (as a model's layers would be: with one sequence, one set alone would sit in the L3).
void BM_AttentionDecode(benchmark::State& st, Model m, int seqs, int rounds) {
  const int64_t ctx = st.range(0);
  Cache c = make_cache(m, seqs * rounds, ctx);
  std::vector<AttnSeq> s(size_t(seqs * rounds));
  for (int i = 0; i < seqs * rounds; ++i)
    s[size_t(i)] = AttnSeq{i % seqs, 1, ctx - 1, c.table.data() + i * c.blocks_per_seq};
  const AttnParams p = params(m);
  std::vector<float> q = normal(size_t(seqs * p.q_stride), 9), out(q.size());
  double seconds = 0;
  int round = 0;
  for (auto _ : st) {
    const AttnSeq* set = s.data() + size_t(round++ % rounds) * seqs;
    double t = time_call([&] { ops::attention(*env().ctx, out.data(), q.data(), set, seqs, c.kv, p); });
    st.SetIterationTime(t);
    seconds += t;
  }
  const double kv_bytes = double(seqs) * double(ctx) * m.n_kv_heads * m.head_dim * 2 * 2;
  set_counters(st, seconds, kv_bytes, 4.0 * seqs * ctx * m.n_heads * m.head_dim, true);
}

void BM_AttentionPrefill(benchmark::State& st, Model m) {
  const int64_t n = st.range(0);
  Cache c = make_cache(m, 1, n);
  AttnSeq s{0, n, 0, c.table.data()};
  const AttnParams p = params(m);
  std::vector<float> q = normal(size_t(n * p.q_stride), 10), out(q.size());
  double seconds = 0;
  for (auto _ : st) {
    double t = time_call([&] { ops::attention(*env().ctx, out.data(), q.data(), &s, 1, c.kv, p); });
    st.SetIterationTime(t);
    seconds += t;
  }
  // Causal: n(n+1)/2 (query, key) pairs per head, 2 dot products of head_dim each.
  set_counters(st, seconds, double(n) * m.n_kv_heads * m.head_dim * 4, 4.0 * (n * (n + 1) / 2) * m.n_heads * m.head_dim, false);
}

}  // namespace

void register_op_benchmarks() {
  benchmark::RegisterBenchmark("rmsnorm", BM_Rmsnorm)->ArgName("rows")->Arg(1)->Arg(20)->Arg(512)->UseManualTime()->Unit(benchmark::kMicrosecond);
  for (const Model& m : {kPhi3, kPhi4}) {
    std::string name = m.name;
    benchmark::RegisterBenchmark(("rope/" + name).c_str(), BM_Rope, m)->ArgName("tokens")->Arg(1)->Arg(512)->UseManualTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("attention_decode/" + name).c_str(), BM_AttentionDecode, m, 20, 1)
        ->ArgName("ctx")->Arg(512)->Arg(4096)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.2);
    benchmark::RegisterBenchmark(("attention_decode_1seq/" + name).c_str(), BM_AttentionDecode, m, 1, 16)
        ->ArgName("ctx")->Arg(4096)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.2);
    benchmark::RegisterBenchmark(("attention_prefill/" + name).c_str(), BM_AttentionPrefill, m)
        ->ArgName("tokens")->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.2);
  }
}

}  // namespace pensieve::bench
