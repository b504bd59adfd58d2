// pensieve-vulkan-bench: Vulkan op microbenchmarks with GPU timestamps.
//
//   pensieve-vulkan-bench [--device auto|vulkan:N] [--quick] [--sweep] [--check] [--batched] [--attention]
//                         [--overhead]
//
// Prints one line per case: median GPU time per dispatch (timestamps around each dispatch of a
// recorded list of back-to-back dispatches), bytes actually read per dispatch, GB/s, GFLOP/s, and
// for memory-bound ops the percentage of the read bandwidth measured by a probe in the same run.
// Weights are random (never zeros) and rotated over enough copies (>= 256 MiB) that the GPU's L2
// cache cannot hold them, so matvec numbers are DRAM numbers. --sweep also tries matvec workgroup
// shapes; --check compares each matvec's output with the CPU reference on a few rows; --batched
// runs only the Phi-3-mini projections at batched-decode sizes (16, 20, 32 tokens: mmq4_coop);
// --attention only decode attention (batched-decode and tg128 contexts, Phi-3 and Phi-4 heads);
// --overhead only what a dispatch costs beyond its work (chains of tiny dispatches, with and without
// the barrier a dependent dispatch needs; on NVIDIA also a grid-wide sync inside one dispatch).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/ref/ref.h"
#include "kernels/vulkan/ops.h"
#include "quant/quantize.h"

using namespace pensieve;
using VBuffer = pensieve::vulkan::Buffer;  // pensieve::Buffer (host memory) is a different class
using namespace pensieve::vulkan;

namespace {

struct Args {
  std::string device = "auto";
  bool quick = false, sweep = false, check = false, batched = false, attention = false, overhead = false;
};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "pensieve-vulkan-bench: %s\n", msg.c_str());
  std::exit(1);
}
#define CHECK_OK(expr)                                    \
  do {                                                    \
    auto _st = (expr);                                    \
    if (!_st.ok()) die(std::string(#expr) + ": " + _st.error()); \
  } while (0)

template <class T>
T take(Result<T> r, const char* what) {
  if (!r.ok()) die(std::string(what) + ": " + r.error());
  return std::move(r).value();
}

// Records `reps` dispatches via record(cl, i), submits twice (the first is warm-up) and returns
// the second submission's per-dispatch GPU times (timestamps).
std::vector<vulkan::OpTime> run_profiled(Context& ctx, int reps, const std::function<Status(CommandList&, int)>& record) {
  auto cl = take(CommandList::create(ctx), "CommandList::create");
  CHECK_OK(cl->begin());
  for (int i = 0; i < reps; ++i) CHECK_OK(record(*cl, i));
  CHECK_OK(cl->end());
  CHECK_OK(cl->submit_and_wait());
  CHECK_OK(cl->submit_and_wait());
  return take(cl->profile(), "profile");
}

// The median per-rep GPU time in ms of `reps` dependent dispatches (the first rep is skipped).
double time_dispatches(Context& ctx, int reps, const std::function<Status(CommandList&, int)>& record) {
  auto prof = run_profiled(ctx, reps, record);
  // Dispatches per rep may be > 1 (e.g. attention + combine): sum per rep.
  int per = std::max(1, int(prof.size()) / reps);
  std::vector<double> t;
  for (int i = 1; i < reps; ++i) {
    double s = 0;
    for (int j = 0; j < per; ++j) s += prof[size_t(i * per + j)].ms;
    t.push_back(s);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Records `reps` independent dispatches (no barriers between them: they may overlap) and returns
// the GPU time of the whole list divided by reps, in ms: throughput without the per-dispatch drain.
double time_overlapped(Context& ctx, int reps, const std::function<Status(CommandList&, int)>& record) {
  auto prof = run_profiled(ctx, reps, record);
  double total = 0;
  for (const auto& p : prof) total += p.ms;
  return total / reps;
}

uint64_t rng_state = 0x9E3779B97F4A7C15ull;
uint64_t next_u64() {  // splitmix64: fast, good enough for filling buffers
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A q4 g64 matrix with random codes and f16 scales/biases in the range real checkpoints have.
struct HostQ4 {
  std::vector<uint32_t> words;
  std::vector<uint16_t> scales, biases;
  WeightMatrix view(int64_t rows, int64_t cols) const {
    WeightMatrix w;
    w.dtype = DType::q4;
    w.rows = rows;
    w.cols = cols;
    w.data = words.data();
    w.scales = scales.data();
    w.biases = biases.data();
    w.scale_dtype = DType::f16;
    w.group_size = 64;
    return w;
  }
};
HostQ4 random_q4(int64_t rows, int64_t cols) {
  HostQ4 h;
  h.words.resize(size_t(rows * cols / 8));
  for (auto& w : h.words) w = uint32_t(next_u64());
  h.scales.resize(size_t(rows * cols / 64));
  h.biases.resize(h.scales.size());
  for (size_t i = 0; i < h.scales.size(); ++i) {
    double u = double(next_u64() >> 11) / 9007199254740992.0;
    h.scales[i] = f32_to_f16(float(0.002 + 0.01 * u));
    h.biases[i] = f32_to_f16(float(-0.08 * u));
  }
  return h;
}

std::vector<float> random_floats(size_t n) {
  std::vector<float> v(n);
  for (auto& x : v) x = float(int64_t(next_u64() % 2001) - 1000) / 1000.0f;
  return v;
}

VBuffer device_buffer(Context& ctx, uint64_t bytes, const char* what) {
  return take(VBuffer::create(ctx, bytes, MemoryKind::device, what), what);
}

// Weight copies packed in one buffer (each plane 256-byte aligned): copy 0 uploaded, the others
// copied on the GPU.
struct WeightCopies {
  VBuffer buf;
  std::vector<GpuWeight> w;
  uint64_t bytes_each = 0;  // packed + scales + biases
};
uint64_t align256(uint64_t v) { return (v + 255) / 256 * 256; }

WeightCopies make_copies(Context& ctx, const HostQ4& h, int64_t rows, int64_t cols, uint64_t min_total) {
  WeightMatrix wm = h.view(rows, cols);
  auto pb = take(weight_plane_bytes(wm), "weight_plane_bytes");
  uint64_t stride = align256(pb.data) + 2 * align256(pb.scales);
  int copies = int(std::max<uint64_t>(2, (min_total + stride - 1) / stride));
  WeightCopies wc;
  wc.bytes_each = pb.data + pb.scales + pb.biases;
  wc.buf = device_buffer(ctx, stride * uint64_t(copies), "weights");
  CHECK_OK(ctx.upload(wc.buf, 0, h.words.data(), pb.data));
  CHECK_OK(ctx.upload(wc.buf, align256(pb.data), h.scales.data(), pb.scales));
  CHECK_OK(ctx.upload(wc.buf, align256(pb.data) + align256(pb.scales), h.biases.data(), pb.biases));
  auto cl = take(CommandList::create(ctx), "CommandList::create");
  CHECK_OK(cl->begin());
  for (int c = 1; c < copies; ++c) CHECK_OK(cl->copy(wc.buf.slice(0, stride), wc.buf.slice(stride * c, stride)));
  CHECK_OK(cl->end());
  CHECK_OK(cl->submit_and_wait());
  for (int c = 0; c < copies; ++c) {
    GpuWeight g;
    g.dtype = DType::q4;
    g.rows = rows;
    g.cols = cols;
    g.scale_dtype = DType::f16;
    g.group_size = 64;
    uint64_t base = stride * uint64_t(c);
    g.data = wc.buf.slice(base, pb.data);
    g.scales = wc.buf.slice(base + align256(pb.data), align256(pb.scales));
    g.biases = wc.buf.slice(base + align256(pb.data) + align256(pb.scales), align256(pb.scales));
    wc.w.push_back(g);
  }
  return wc;
}

double probe_bw = 0;  // GB/s

void print_row(const char* op, const std::string& shape, const std::string& variant, double ms, double bytes,
               double flops, bool pct) {
  double gbs = bytes / (ms * 1e-3) / 1e9;
  std::printf("%-14s %-24s %-26s %9.4f ms %10.1f GB/s %10.1f GFLOP/s", op, shape.c_str(), variant.c_str(), ms, gbs,
              flops / (ms * 1e-3) / 1e9);
  if (pct && probe_bw > 0) std::printf("  %5.1f%% of read bw", 100.0 * gbs / probe_bw);
  std::printf("\n");
  std::fflush(stdout);
}

void bench_probe(Context& ctx, bool quick) {
  uint64_t bytes = std::min<uint64_t>(quick ? (256ull << 20) : (2ull << 30), ctx.info().max_storage_buffer_range / 16 * 16);
  bytes = std::min<uint64_t>(bytes, ctx.info().device_local_bytes / 4);
  VBuffer src = device_buffer(ctx, bytes, "probe source");
  VBuffer sink = device_buffer(ctx, 4096, "probe sink");
  {  // never time on zeros: fill with a pattern first
    auto cl = take(CommandList::create(ctx), "cl");
    CHECK_OK(cl->begin());
    CHECK_OK(cl->fill(src.whole(), 0x3c013c02u));
    CHECK_OK(cl->end());
    CHECK_OK(cl->submit_and_wait());
  }
  double ms = time_dispatches(ctx, 12, [&](CommandList& cl, int) { return vulkan::ops::read_probe(cl, src.whole(), sink.whole()); });
  probe_bw = double(bytes) / (ms * 1e-3) / 1e9;
  print_row("read_probe", std::to_string(bytes >> 20) + " MiB", "uvec4 grid-stride", ms, double(bytes), 0, false);
}

void check_matvec(Context& ctx, const HostQ4& h, const GpuWeight& g, int64_t n, const MatvecTuning& t) {
  std::vector<float> x = random_floats(size_t(n * g.cols));
  VBuffer bx = device_buffer(ctx, x.size() * 4, "x");
  VBuffer by = device_buffer(ctx, size_t(n * g.rows) * 4, "y");
  CHECK_OK(ctx.upload(bx, 0, x.data(), x.size() * 4));
  auto cl = take(CommandList::create(ctx), "cl");
  CHECK_OK(cl->begin());
  CHECK_OK(vulkan::ops::matmul(*cl, by.whole(), g.rows, bx.whole(), g.cols, n, g, n > 8 ? Precision::fast : Precision::exact, t));
  CHECK_OK(cl->end());
  CHECK_OK(cl->submit_and_wait());
  std::vector<float> y(size_t(n * g.rows));
  CHECK_OK(ctx.download(y.data(), by, 0, y.size() * 4));
  WeightMatrix wm = h.view(g.rows, g.cols);
  double worst = 0;
  std::vector<float> want(y.size());
  for (int64_t r : {int64_t(0), g.rows / 3, g.rows - 1}) {
    matmul_ref(want.data(), g.rows, x.data(), g.cols, n, wm, r, r + 1);  // column r of y only
    for (int64_t tkn = 0; tkn < n; ++tkn) {
      double ref = want[size_t(tkn * g.rows + r)], got = y[size_t(tkn * g.rows + r)];
      worst = std::max(worst, std::fabs(got - ref) / (std::fabs(ref) + 1.0));
    }
  }
  std::printf("    check: max rel error vs CPU reference on 3 rows = %.2e %s\n", worst, worst < 2e-2 ? "ok" : "MISMATCH");
}

// Batch invariance of the matvec: n tokens in one call (token blocks of up to 8) must give every
// token bitwise the result it gets alone.
void check_invariance(Context& ctx, const GpuWeight& g, int64_t n) {
  std::vector<float> x = random_floats(size_t(n * g.cols));
  VBuffer bx = device_buffer(ctx, x.size() * 4, "x");
  VBuffer by = device_buffer(ctx, size_t(n * g.rows) * 4, "y"), b1 = device_buffer(ctx, size_t(n * g.rows) * 4, "y1");
  CHECK_OK(ctx.upload(bx, 0, x.data(), x.size() * 4));
  auto cl = take(CommandList::create(ctx), "cl");
  CHECK_OK(cl->begin());
  CHECK_OK(vulkan::ops::matmul(*cl, by.whole(), g.rows, bx.whole(), g.cols, n, g, Precision::exact));
  for (int64_t t = 0; t < n; ++t)
    CHECK_OK(vulkan::ops::matmul(*cl, b1.slice(uint64_t(t * g.rows) * 4, uint64_t(g.rows) * 4), g.rows,
                                 bx.slice(uint64_t(t * g.cols) * 4, uint64_t(g.cols) * 4), g.cols, 1, g, Precision::exact));
  CHECK_OK(cl->end());
  CHECK_OK(cl->submit_and_wait());
  std::vector<float> ya(size_t(n * g.rows)), yb(ya.size());
  CHECK_OK(ctx.download(ya.data(), by, 0, ya.size() * 4));
  CHECK_OK(ctx.download(yb.data(), b1, 0, yb.size() * 4));
  size_t diff = 0;
  for (size_t i = 0; i < ya.size(); ++i) diff += std::memcmp(&ya[i], &yb[i], 4) != 0;
  std::printf("    check: %lld tokens at once vs one by one: %zu of %zu outputs differ %s\n", (long long)n, diff,
              ya.size(), diff ? "NOT BATCH-INVARIANT" : "(bitwise equal)");
}

void bench_matvec(Context& ctx, const Args& a, int64_t k, int64_t n_out, const std::vector<int64_t>& batches) {
  HostQ4 h = random_q4(n_out, k);
  // PENSIEVE_BENCH_L2=1: one copy of the weights, read from L2 where it fits (isolates DRAM effects).
  const bool l2 = std::getenv("PENSIEVE_BENCH_L2") != nullptr;
  WeightCopies wc = make_copies(ctx, h, n_out, k, l2 ? 0 : 256ull << 20);
  int64_t max_n = *std::max_element(batches.begin(), batches.end());
  std::vector<float> x = random_floats(size_t(max_n * k));
  VBuffer bx = device_buffer(ctx, x.size() * 4, "x");
  CHECK_OK(ctx.upload(bx, 0, x.data(), x.size() * 4));
  VBuffer by = device_buffer(ctx, size_t(max_n * n_out) * 4, "y");
  const uint64_t yo_stride = align256(uint64_t(n_out) * 4);
  VBuffer byo = device_buffer(ctx, 24 * yo_stride, "y (overlapped)");
  const int copies = l2 ? 1 : int(wc.w.size());
  std::string shape = std::to_string(k) + "->" + std::to_string(n_out);

  // The default, the generic kernel (matvec.comp) for comparison, and with --sweep the q4 kernel's
  // workgroup sizes and rows per invocation.
  // q4 kernel sweep: workgroup size, rows per invocation, lanes per row group (all at 1 token; a
  // subset at 2-8 tokens).
  // Kernel 2: the q4 kernel's f32 arithmetic; 3: its int8 dot-product variant (where the device has it).
  std::vector<MatvecTuning> tunings = {MatvecTuning{}, MatvecTuning{0, 0, 0, 0, 1}};
  if (ctx.info().integer_dot_product) tunings.push_back(MatvecTuning{0, 0, 0, 0, 3});
  if (a.sweep)
    for (uint32_t wg : {64u, 128u, 256u})
      for (uint32_t rows : {1u, 2u, 4u})
        for (uint32_t lanes : {8u, 16u, 32u})
          for (uint32_t kernel : {2u, 3u})
            if (kernel == 2 || ctx.info().integer_dot_product) tunings.push_back({wg, rows, 0, lanes, kernel});
  for (int64_t n : batches) {
    for (const MatvecTuning& t : tunings) {
      if (n > 8 && (t.wg || t.rows || t.kernel)) continue;
      if (t.rows && t.rows * uint32_t(std::min<int64_t>(n, 8)) > 32) continue;
      if (n > 1 && t.wg && (t.wg == 64 || t.unit_words == 16)) continue;
      Precision p = n > 8 ? Precision::fast : Precision::exact;
      const char* kern = vulkan::ops::matmul_kernel(ctx, k, n, wc.w[0], p);
      double ms = time_dispatches(ctx, 24, [&](CommandList& cl, int i) {
        return vulkan::ops::matmul(cl, by.whole(), n_out, bx.whole(), k, n, wc.w[size_t(i % copies)], p, t);
      });
      double bytes = double(wc.bytes_each) + double(n * (k + n_out) * 4);
      std::string var = std::string(kern) + " n=" + std::to_string(n);
      if (t.kernel == 1) var += " (matvec.comp)";
      else if (t.kernel == 3 && !t.wg) var += " (int8 dot)";
      else if (t.wg)
        var += " wg" + std::to_string(t.wg) + " r" + std::to_string(t.rows) + " l" + std::to_string(t.unit_words) +
               (t.kernel == 3 ? " int8" : "");
      else if (std::string(kern) == "matvec") var += " (default)";
      print_row("q4g64 matmul", shape, var, ms, bytes, 2.0 * double(n) * double(k) * double(n_out), n <= 8);
      if (n == 1 && !t.wg && !t.kernel) {  // the same dispatches without barriers between them
        double ov = time_overlapped(ctx, 24, [&](CommandList& cl, int i) {
          return vulkan::ops::matmul(cl, byo.slice(uint64_t(i) * yo_stride, uint64_t(n_out) * 4), n_out, bx.whole(),
                                     k, 1, wc.w[size_t(i % copies)], p, t);
        });
        print_row("q4g64 matmul", shape, var + " overlapped", ov, bytes, 2.0 * double(k) * double(n_out), true);
      }
      if (a.check && !t.wg && !t.kernel) check_matvec(ctx, h, wc.w[0], n, t);
    }
  }
  if (a.check) check_invariance(ctx, wc.w[0], 11);
}

// Batch (prefill) matmul: exact (portable f32 tiled) and fast (cooperative matrix where present).
void bench_matmul(Context& ctx, const Args& a, int64_t k, int64_t n_out, int64_t n) {
  HostQ4 h = random_q4(n_out, k);
  WeightCopies wc = make_copies(ctx, h, n_out, k, 0);
  std::vector<float> x = random_floats(size_t(n * k));
  VBuffer bx = device_buffer(ctx, x.size() * 4, "x");
  CHECK_OK(ctx.upload(bx, 0, x.data(), x.size() * 4));
  VBuffer by = device_buffer(ctx, size_t(n * n_out) * 4, "y");
  std::string shape = std::to_string(k) + "->" + std::to_string(n_out);
  for (Precision p : {Precision::exact, Precision::fast}) {
    const char* kern = vulkan::ops::matmul_kernel(ctx, k, n, wc.w[0], p);
    if (p == Precision::fast && std::string(kern) == "matmul") continue;  // same kernel as exact
    double ms = time_dispatches(ctx, a.quick ? 4 : 8, [&](CommandList& cl, int i) {
      return vulkan::ops::matmul(cl, by.whole(), n_out, bx.whole(), k, n, wc.w[size_t(i % wc.w.size())], p);
    });
    double bytes = double(wc.bytes_each) + double(n * (k + n_out) * 4);
    print_row("q4g64 matmul", shape, std::string(kern) + " n=" + std::to_string(n), ms, bytes,
              2.0 * double(n) * double(k) * double(n_out), false);
    if (a.check) check_matvec(ctx, h, wc.w[0], n, {});
  }
}

// Decode attention: n_seqs sequences of ctx positions each (one query each), Phi-3 heads.
// split_len: keys per split as the model fixes them (512), or 0 for the op's own choice.
void bench_attention(Context& ctx, int n_seqs, int64_t ctx_len, int n_heads, int n_kv, int hd, uint32_t split_len = 0) {
  const int bs = 16;
  int64_t blocks_per_seq = (ctx_len + bs - 1) / bs, n_blocks = blocks_per_seq * n_seqs;
  int64_t block_stride = int64_t(n_kv) * bs * hd;
  uint64_t kv_bytes = uint64_t(n_blocks * block_stride) * 2;
  if (kv_bytes > ctx.info().max_storage_buffer_range) {
    std::printf("attention      skipped: %llu-byte KV exceeds one binding\n", (unsigned long long)kv_bytes);
    return;
  }
  VBuffer k = device_buffer(ctx, kv_bytes, "K"), v = device_buffer(ctx, kv_bytes, "V");
  {
    std::vector<uint16_t> chunk(size_t(std::min<uint64_t>(kv_bytes / 2, 32u << 20)));
    for (auto& e : chunk) e = f32_to_f16(float(int(next_u64() % 2001) - 1000) / 1000.0f);
    for (uint64_t off = 0; off < kv_bytes; off += chunk.size() * 2) {
      uint64_t n = std::min<uint64_t>(chunk.size() * 2, kv_bytes - off);
      CHECK_OK(ctx.upload(k, off, chunk.data(), n));
      CHECK_OK(ctx.upload(v, off, chunk.data(), n));
    }
  }
  std::vector<SeqMeta> meta;
  std::vector<int32_t> tables;
  for (int s = 0; s < n_seqs; ++s) {
    meta.push_back({s, 1, int32_t(ctx_len - 1), int32_t(tables.size())});
    for (int64_t b = 0; b < blocks_per_seq; ++b) tables.push_back(int32_t(s * blocks_per_seq + b));
  }
  VBuffer bm = device_buffer(ctx, meta.size() * sizeof(SeqMeta), "meta"), bt = device_buffer(ctx, tables.size() * 4, "tables");
  CHECK_OK(ctx.upload(bm, 0, meta.data(), meta.size() * sizeof(SeqMeta)));
  CHECK_OK(ctx.upload(bt, 0, tables.data(), tables.size() * 4));
  std::vector<float> q = random_floats(size_t(n_seqs * n_heads * hd));
  VBuffer bq = device_buffer(ctx, q.size() * 4, "q"), bo = device_buffer(ctx, q.size() * 4, "out");
  CHECK_OK(ctx.upload(bq, 0, q.data(), q.size() * 4));
  GpuKv kv{k.whole(), v.whole(), DType::f16, block_stride, int64_t(bs) * hd, bs, n_kv, hd};
  GpuSeqs gs{bm.whole(), bt.whole(), n_seqs, 1, ctx_len, split_len};
  AttnParams p;
  p.n_heads = n_heads;
  p.scale = 1.0f / std::sqrt(float(hd));
  p.q_stride = p.out_stride = int64_t(n_heads) * hd;
  uint64_t sb = vulkan::ops::attention_scratch_bytes(ctx, gs, kv, p);
  VBuffer scratch = device_buffer(ctx, std::max<uint64_t>(sb, 16), "scratch");
  double ms = time_dispatches(ctx, 10, [&](CommandList& cl, int) {
    return vulkan::ops::attention(cl, bo.whole(), bq.whole(), gs, kv, p, scratch.whole());
  });
  double bytes = double(n_seqs) * double(ctx_len) * n_kv * hd * 2 * 2;
  print_row("attn decode", std::to_string(n_seqs) + " seq x ctx " + std::to_string(ctx_len),
            "h" + std::to_string(n_heads) + "/" + std::to_string(n_kv) + " d" + std::to_string(hd) +
                (sb ? " split-K" : ""),
            ms, bytes, 4.0 * n_seqs * double(ctx_len) * n_heads * hd, true);
}

// The median GPU time of three submissions of a recorded list (after one to warm up), in us per
// `per` (dispatches or rounds).
double median_us(CommandList& cl, int per) {
  std::vector<double> t;
  for (int rep = 0; rep < 4; ++rep) {
    CHECK_OK(cl.submit_and_wait());
    if (rep > 0) t.push_back(take(cl.gpu_ms(), "gpu_ms") * 1000.0 / per);
  }
  std::sort(t.begin(), t.end());
  return t[1];
}

// What a dispatch costs beyond its work: `add` over n floats, 2,000 times in one command list
// without per-dispatch timestamps (GPU time of the list / 2,000), each dispatch either depending on
// the one before (same output: a barrier between them, as between the ops of a decode step) or not
// (its own output slice: no barriers, dispatches may overlap). n = 256 is one workgroup; 132 x 2,048
// fills every multiprocessor of an H100 / H200 once.
void bench_overhead(Context& ctx) {
  constexpr int kReps = 2000;
  for (int64_t n : {int64_t(256), int64_t(132) * 2048}) {
    const uint64_t slice = (uint64_t(n) * 4 + 255) / 256 * 256;
    VBuffer x = device_buffer(ctx, slice, "x"), y = device_buffer(ctx, slice * kReps, "y");
    for (bool dependent : {true, false}) {
      auto cl = take(CommandList::create(ctx, false), "CommandList::create");
      CHECK_OK(cl->begin());
      for (int i = 0; i < kReps; ++i)
        CHECK_OK(vulkan::ops::add(*cl, y.slice(dependent ? 0 : uint64_t(i) * slice, uint64_t(n) * 4), x.whole(), n));
      CHECK_OK(cl->end());
      const double us = median_us(*cl, kReps);
      std::printf("%-12s n %-8lld %-26s %8.2f us per dispatch (%d barriers in %d dispatches)\n", "overhead",
                  (long long)n, dependent ? "dependent (barrier each)" : "independent (no barriers)", us,
                  cl->barriers(), cl->dispatches());
    }
  }
  // The alternative to a barrier: workgroups of one dispatch synchronising among themselves (a
  // persistent kernel). Needs all of them resident: one per multiprocessor, so NVIDIA only (the
  // count comes from VK_NV_shader_sm_builtins).
  const uint32_t sms = ctx.info().sm_count;
  if (sms == 0) return;
  constexpr uint32_t kRounds = 2000;
  for (uint32_t groups : {sms / 4, sms}) {
    VBuffer counter = device_buffer(ctx, 256, "counter"), flags = device_buffer(ctx, (groups + 2) * 4, "flags");
    auto cl = take(CommandList::create(ctx, false), "CommandList::create");
    CHECK_OK(cl->begin());
    CHECK_OK(cl->fill(counter.whole(), 0));
    CHECK_OK(cl->fill(flags.whole(), 0));
    CHECK_OK(vulkan::ops::grid_sync_probe(*cl, counter.whole(), flags.whole(), groups, kRounds));
    CHECK_OK(cl->end());
    const double us = median_us(*cl, int(kRounds));
    uint32_t gave_up = 0;
    CHECK_OK(ctx.download(&gave_up, flags, 4, 4));
    std::printf("%-12s %-4u workgroups   %-26s %8.2f us per round%s\n", "overhead", groups, "grid-wide sync in one dispatch",
                us, gave_up ? " (a workgroup gave up waiting: not all resident)" : "");
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--device" && i + 1 < argc) a.device = argv[++i];
    else if (s == "--quick") a.quick = true;
    else if (s == "--sweep") a.sweep = true;
    else if (s == "--check") a.check = true;
    else if (s == "--batched") a.batched = true;
    else if (s == "--attention") a.attention = true;
    else if (s == "--overhead") a.overhead = true;
    else die("usage: pensieve-vulkan-bench [--device auto|vulkan:N] [--quick] [--sweep] [--check] [--batched] [--attention] "
             "[--overhead]");
  }
  ContextOptions o;
  o.device = a.device;
  o.allow_cpu_device = true;  // a benchmark on lavapipe is still a benchmark
  o.profile = true;
  auto ctx = take(Context::create(o), "Context::create");
  std::printf("device: %s\n", ctx->info().summary().c_str());
  if (ctx->info().timestamp_period_ns <= 0) die("the device has no timestamps on its compute queue");
  auto t0 = std::chrono::steady_clock::now();

  bench_probe(*ctx, a.quick);
  {  // let the clocks ramp up: ~0.5 s of reads before the timed cases
    VBuffer src = device_buffer(*ctx, 64u << 20, "warm-up"), sink = device_buffer(*ctx, 4096, "sink");
    auto t1 = std::chrono::steady_clock::now();
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count() < (a.quick ? 0.05 : 0.5)) {
      auto cl = take(CommandList::create(*ctx), "cl");
      CHECK_OK(cl->begin());
      for (int i = 0; i < 64; ++i) CHECK_OK(vulkan::ops::read_probe(*cl, src.whole(), sink.whole()));
      CHECK_OK(cl->end());
      CHECK_OK(cl->submit_and_wait());
    }
  }
  if (a.batched) {  // Phi-3-mini qkv, o_proj, gate_up, down
    for (auto [k, n_out] : {std::pair<int64_t, int64_t>{3072, 9216}, {3072, 3072}, {3072, 16384}, {8192, 3072}})
      bench_matvec(*ctx, a, k, n_out, {16, 20, 32});
    return 0;
  }
  if (a.overhead) {
    bench_overhead(*ctx);
    return 0;
  }
  if (a.attention) {  // decode attention at the batched-decode and tg128 contexts, Phi-3 and Phi-4 heads
    for (auto [n, c] : {std::pair<int, int64_t>{32, 256}, {32, 192}, {32, 128}, {20, 256}, {16, 256}, {1, 576},
                        {1, 128}, {20, 4096}})
      bench_attention(*ctx, n, c, 32, 32, 96, 512);
    bench_attention(*ctx, 32, 256, 24, 8, 128, 512);
    bench_attention(*ctx, 1, 576, 24, 8, 128, 512);
    return 0;
  }
  std::vector<int64_t> batches = a.quick ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 2, 4, 8, 16, 32};
  // Phi-3-mini shapes (k -> n): qkv, o_proj, gate_up, down, lm_head.
  bench_matvec(*ctx, a, 3072, 9216, batches);
  bench_matvec(*ctx, a, 8192, 3072, batches);
  if (!a.quick) {
    bench_matvec(*ctx, a, 3072, 3072, {1});
    bench_matvec(*ctx, a, 3072, 16384, {1, 8});
    bench_matvec(*ctx, a, 3072, 32064, {1});
  }
  bench_matmul(*ctx, a, 3072, 9216, a.quick ? 64 : 512);
  if (!a.quick) bench_matmul(*ctx, a, 8192, 3072, 512);
  bench_attention(*ctx, a.quick ? 2 : 20, a.quick ? 512 : 4096, 32, 32, 96);
  if (!a.quick) {
    bench_attention(*ctx, 1, 4096, 32, 32, 96);
    // Short contexts (tg128, batched decode after a 128-token prompt): latency, not bandwidth.
    bench_attention(*ctx, 1, 128, 32, 32, 96);
    bench_attention(*ctx, 32, 256, 32, 32, 96);
    bench_attention(*ctx, 1, 128, 24, 8, 128);
  }

  auto mu = ctx->memory_use();
  std::printf("peak device memory %.1f MiB; %zu pipelines; %.1f s\n", mu.peak_device / 1048576.0,
              ctx->pipelines().size(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}
