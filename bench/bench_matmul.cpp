// q4 (group 64, f16 scales, as MLX writes Phi models) matmuls at the real shapes, k -> n, for
// batches 1..512 in both precisions, and OpenBLAS sgemm on the same weights dequantized to f32.
//
// Names: matmul_q4/<shape>/batch:<b>/<exact|fast>, sgemm_f32/<shape>/batch:<b>.
// Counters: bytes_per_second (weights + activations read per call), GFLOP/s (2·batch·k·n per
// call), rows_tokens_per_s, and for batch 1 pct_of_read_bw against this run's probe.
// Each iteration uses the next of several copies of the weights (together >= 256 MiB), so
// weights come from DRAM as in a real decode step, not from the 32 MiB L3.
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "bench/bench_common.h"

namespace pensieve::bench {
namespace {

struct Shape {
  const char* name;
  int64_t k, n;  // in features -> out features (weight rows)
};
const Shape kShapes[] = {
    {"phi3_qkv", 3072, 9216},      {"phi3_o_proj", 3072, 3072}, {"phi3_gate_up", 3072, 16384},
    {"phi3_down", 8192, 3072},     {"phi3_lm_head", 3072, 32064}, {"phi4_qkv", 3072, 5120},
    {"phi4_lm_head", 3072, 200064},
};
const int kBatches[] = {1, 4, 16, 32, 512};

// Weights of the shape being benchmarked (one shape at a time: the large ones take GBs).
struct Current {
  std::string shape;
  std::vector<std::unique_ptr<RandomQuant>> q4;  // copies
  std::vector<std::vector<float>> f32;           // dequantized copies (built on first sgemm)
};
Current& current(const Shape& s) {
  static Current c;
  if (c.shape != s.name) {
    c = Current();
    c.shape = s.name;
    auto first = random_quant(s.n, s.k, 4, 64, 42);
    const int64_t copies = std::max<int64_t>(1, (kColdBytes + first->w.nbytes() - 1) / first->w.nbytes());
    c.q4.push_back(std::move(first));
    for (int64_t i = 1; i < copies; ++i) {
      auto q = std::make_unique<RandomQuant>(*c.q4[0]);
      q->w.data = q->packed.data();
      q->w.scales = q->scales.data();
      q->w.biases = q->biases.data();
      c.q4.push_back(std::move(q));
    }
  }
  return c;
}

std::vector<float> activations(int64_t n, int64_t k) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(size_t(n * k));
  for (float& v : x) v = nd(rng);
  return x;
}

void BM_MatmulQ4(benchmark::State& st, Shape s, int batch, Precision p) {
  Current& c = current(s);
  std::vector<float> x = activations(batch, s.k), y(size_t(batch * s.n));
  KernelContext& ctx = *env().ctx;
  ops::matmul(ctx, y.data(), x.data(), batch, c.q4[0]->w, p);  // warm-up: scratch allocation
  double seconds = 0;
  size_t i = 0;
  for (auto _ : st) {
    const WeightMatrix& w = c.q4[i++ % c.q4.size()]->w;
    double t = time_call([&] { ops::matmul(ctx, y.data(), x.data(), batch, w, p); });
    st.SetIterationTime(t);
    seconds += t;
  }
  const double bytes = double(c.q4[0]->w.nbytes()) + double(batch) * double(s.k) * 4;
  set_counters(st, seconds, bytes, 2.0 * batch * s.k * s.n, batch == 1);
  st.counters["rows_tokens_per_s"] = benchmark::Counter(double(batch) * double(s.n), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_SgemmF32(benchmark::State& st, Shape s, int batch) {
  Current& c = current(s);
  if (c.f32.empty()) {
    const int64_t bytes = s.n * s.k * 4;
    const int64_t copies = std::max<int64_t>(1, std::min<int64_t>(c.q4.size(), (kColdBytes + bytes - 1) / bytes));
    c.f32.resize(size_t(copies));
    for (auto& m : c.f32) m.resize(size_t(s.n * s.k));
    env().pool->parallel_for(s.n, 256, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) dequantize_row(c.q4[0]->w, r, c.f32[0].data() + r * s.k);
    });
    for (size_t i = 1; i < c.f32.size(); ++i) std::memcpy(c.f32[i].data(), c.f32[0].data(), size_t(bytes));
  }
  openblas_set_num_threads(env().threads);
  std::vector<float> x = activations(batch, s.k), y(size_t(batch * s.n));
  double seconds = 0;
  size_t i = 0;
  for (auto _ : st) {
    const float* w = c.f32[i++ % c.f32.size()].data();
    double t = time_call([&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, int(s.n), int(s.k), 1.0f, x.data(), int(s.k), w,
                  int(s.k), 0.0f, y.data(), int(s.n));
    });
    st.SetIterationTime(t);
    seconds += t;
  }
  const double bytes = double(s.n) * double(s.k) * 4 + double(batch) * double(s.k) * 4;
  set_counters(st, seconds, bytes, 2.0 * batch * s.k * s.n, batch == 1);
  st.counters["rows_tokens_per_s"] = benchmark::Counter(double(batch) * double(s.n), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

void register_matmul_benchmarks() {
  for (const Shape& s : kShapes) {
    for (int b : kBatches) {
      for (Precision p : {Precision::exact, Precision::fast}) {
        std::string name = std::string("matmul_q4/") + s.name + "/batch:" + std::to_string(b) +
                           (p == Precision::exact ? "/exact" : "/fast");
        benchmark::RegisterBenchmark(name.c_str(), BM_MatmulQ4, s, b, p)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.2);
      }
    }
    for (int b : kBatches) {
      std::string name = std::string("sgemm_f32/") + s.name + "/batch:" + std::to_string(b);
      benchmark::RegisterBenchmark(name.c_str(), BM_SgemmF32, s, b)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.2);
    }
  }
}

}  // namespace pensieve::bench
