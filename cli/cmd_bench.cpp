// pensieve bench: prompt processing and generation speed of a model, like llama-bench, plus
// batched decode (many sequences per step, like llama-batched-bench), load time and peak RSS.
// It drives the forward pass directly (no sampling beyond argmax, no HTTP), on random tokens.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cli/model_args.h"
#include "kernels/bandwidth.h"
#ifdef PENSIEVE_HAS_VULKAN
#include "models/forward_vulkan.h"
#endif

namespace pensieve::cli {

static const char kUsage[] =
    "usage: pensieve bench --model DIR [-p 512] [-n 128] [-d 0] [-r 3] [--batch 1,4,16,32] [--json]\n"
    "\n"
    "  -p, --prompt-tokens N   prompt processing test: N tokens in one forward (pp; 0 = skip)\n"
    "  -n, --gen-tokens N      generation test: N single-token decode steps (tg; 0 = skip)\n"
    "  -d, --depth N           the tg test decodes after an N-token prompt (prefilled, not timed),\n"
    "                          so attention reads N+ cached positions per step (llama-bench's -d)\n"
    "  -r, --repeats N         repeats of each test; the median is reported (default 3)\n"
    "  --batch LIST            batched decode: for each B, B sequences prefill 128 tokens each,\n"
    "                          then decode 128 tokens together; aggregate tok/s\n"
    "  --no-probe              skip the memory read-bandwidth probe (host memory, or the Vulkan device's)\n"
    "  --profile               GPU backends: per-op GPU time of a pp step and of decode steps\n"
    "                          (timestamps around each dispatch; measured after the timed tests)\n"
    "  --json                  print one JSON object instead of the table\n"
    "\nmodel options:\n";

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int64_t peak_rss_bytes() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return int64_t(ru.ru_maxrss) * 1024;
}

// Called after every forward pass of run_sequences (profiling).
using StepHook = std::function<void(bool decode)>;

// Runs `b` sequences: each prefills `prompt` random tokens (together, one chunk each), then
// `gen` decode steps with all b sequences in every step. Tokens are picked greedily from the top-1
// candidate the forward pass returns (on a GPU backend: argmax on the device, 8 bytes back per
// sequence, as the engine does for greedy requests). Returns (prefill s, decode s).
Result<std::pair<double, double>> run_sequences(Model& m, int b, int64_t prompt, int64_t gen, std::mt19937& rng,
                                                const StepHook& hook = nullptr) {
  const ModelConfig& c = m.config();
  const int64_t V = c.vocab;
  std::vector<SeqKv> seqs(static_cast<size_t>(b));
  std::vector<std::vector<int32_t>> toks(static_cast<size_t>(b));
  std::uniform_int_distribution<int32_t> pick(0, int32_t(std::min<int64_t>(V, 32000) - 1));
  std::vector<SeqChunk> chunks(static_cast<size_t>(b));
  auto cleanup = [&] {
    for (auto& s : seqs) s.release(m.cache());
  };
  for (int i = 0; i < b; ++i) {
    toks[size_t(i)].resize(size_t(prompt));
    for (auto& t : toks[size_t(i)]) t = pick(rng);
    seqs[size_t(i)].start(m.cache(), toks[size_t(i)], c.long_rope(prompt + gen), false);
    if (!seqs[size_t(i)].reserve(m.cache(), prompt + gen)) {
      cleanup();
      return errorf("%d sequences of %lld tokens do not fit the KV cache (raise --ctx)", b, (long long)(prompt + gen));
    }
  }
  std::vector<float> top_v(size_t(b * kMaxTopK));
  std::vector<int32_t> top_i(size_t(b * kMaxTopK));
  const TopK top{top_v.data(), top_i.data()};
  auto t0 = Clock::now();
  for (int i = 0; i < b; ++i) {
    SeqChunk& ch = chunks[size_t(i)];
    ch.tokens = toks[size_t(i)].data();
    ch.n = prompt;
    ch.pos0 = 0;
    ch.block_table = seqs[size_t(i)].blocks().data();
    ch.long_rope = seqs[size_t(i)].long_rope();
    ch.top_k = 1;
  }
  if (prompt > 0) {
    if (Status st = m.forward().run_topk(chunks, nullptr, top); !st.ok()) {
      cleanup();
      return std::move(st).take_error();
    }
    if (hook) hook(false);
  }
  double prefill = since(t0);
  std::vector<int32_t> next(static_cast<size_t>(b));
  t0 = Clock::now();
  for (int64_t s = 0; s < gen; ++s) {
    for (int i = 0; i < b; ++i) {
      next[size_t(i)] = s == 0 && prompt == 0 ? pick(rng) : top_i[size_t(i * kMaxTopK)];
      SeqChunk& ch = chunks[size_t(i)];
      ch.tokens = &next[size_t(i)];
      ch.n = 1;
      ch.pos0 = prompt + s;
    }
    if (Status st = m.forward().run_topk(chunks, nullptr, top); !st.ok()) {
      cleanup();
      return std::move(st).take_error();
    }
    if (hook) hook(true);
  }
  double decode = since(t0);
  cleanup();
  return std::make_pair(prefill, decode);
}

#ifdef PENSIEVE_HAS_VULKAN
// Per-op GPU time of the Vulkan forward pass: timestamps around each dispatch, summed by label
// ("<op>/<pipeline>") over the steps of one kind, reported per step.
struct OpProfile {
  std::map<std::string, std::pair<double, int>> ms;  // label -> (total ms, dispatches)
  int steps = 0;
  void add(const std::vector<vulkan::OpTime>& v) {
    for (const auto& t : v) {
      ms[t.label].first += t.ms;
      ms[t.label].second += 1;
    }
    ++steps;
  }
  nlohmann::ordered_json json() const {
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const auto& [label, v] : sorted())
      rows.push_back({{"op", label}, {"ms_per_step", v.first / steps}, {"dispatches_per_step", double(v.second) / steps}});
    return rows;
  }
  std::vector<std::pair<std::string, std::pair<double, int>>> sorted() const {
    std::vector<std::pair<std::string, std::pair<double, int>>> v(ms.begin(), ms.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
    return v;
  }
  void print(const char* title) const {
    double total = 0;
    int n = 0;
    for (const auto& [l, v] : ms) total += v.first, n += v.second;
    std::printf("\n%s: %.3f ms GPU per step, %.0f dispatches (%d steps)\n", title, total / steps, double(n) / steps,
                steps);
    std::printf("  %8s %6s %6s  %s\n", "ms/step", "%", "count", "op/pipeline");
    for (const auto& [label, v] : sorted())
      std::printf("  %8.4f %5.1f%% %6.0f  %s\n", v.first / steps, 100 * v.first / total, double(v.second) / steps,
                  label.c_str());
  }
};
#endif

}  // namespace

int cmd_bench(int argc, char** argv) {
  ModelArgs margs;
  int64_t pp = 512, tg = 128, depth = 0;
  int reps = 3;
  std::string batch_list;
  bool json = false, no_probe = false, profile = false;
  std::string usage = std::string(kUsage) + kModelOptionsHelp;
  Args a("bench", usage.c_str());
  margs.add_to(a);
  a.option("--prompt-tokens", &pp, "-p");
  a.option("--gen-tokens", &tg, "-n");
  a.option("--depth", &depth, "-d");
  a.option("--repeats", &reps, "-r");
  a.option("--batch", &batch_list);
  a.flag("--json", &json);
  a.flag("--no-probe", &no_probe);
  a.flag("--profile", &profile);
  if (int rc; !a.parse(argc, argv, &rc)) return rc;
  std::vector<int> batches;
  {
    std::stringstream ss(batch_list);
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (item.empty()) continue;
      int b = std::atoi(item.c_str());
      if (b <= 0 || b > 4096) {
        std::fprintf(stderr, "pensieve bench: --batch has \"%s\", expected positive numbers\n", item.c_str());
        return 2;
      }
      batches.push_back(b);
    }
  }
  if (pp < 0 || tg < 0 || depth < 0 || reps <= 0) {
    std::fprintf(stderr, "pensieve bench: -p, -n and -d must be >= 0 and -r > 0\n");
    return 2;
  }
  // Size the KV pool for the largest test unless the user chose.
  ModelArgs load_args = margs;
  if (load_args.ctx == 0) {
    int64_t need = std::max<int64_t>(std::max(pp, depth) + tg, 1) + 16;
    for (int b : batches) need = std::max<int64_t>(need, int64_t(b) * (256 + 16));
    load_args.ctx = need;
  }
  auto model = load_args.load();
  if (!model) {
    std::fprintf(stderr, "pensieve bench: %s\n", model.error().c_str());
    return 1;
  }
  Model& m = **model;
  std::mt19937 rng(1234);

  // The ceiling decode is measured against: the memory the weights are read from (the Vulkan
  // device's own on the Vulkan backend, host memory otherwise).
  BandwidthResult bw;
  std::string bw_of = "host memory";
#ifdef PENSIEVE_HAS_VULKAN
  if (auto* vf = dynamic_cast<VulkanForward*>(&m.forward()); vf && !no_probe) {
    // (A device too full for the probe buffer gets the figures without it.)
    if (auto g = vulkan::ops::read_bandwidth_gbs(vf->context()); g) {
      bw.best_gbs = bw.median_gbs = *g;
      bw_of = "Vulkan device memory";
    } else {
      std::fprintf(stderr, "pensieve bench: no GPU bandwidth probe (%s)\n", g.error().c_str());
      no_probe = true;
    }
  }
#endif
  if (!no_probe && bw.best_gbs == 0) bw = read_bandwidth(m.pool());

  std::vector<double> pp_tps, tg_tps, tg_gpu_ms;  // tg_gpu_ms: GPU time per token (Vulkan)
  StepHook gpu_time = nullptr;
  double gpu_sum = 0;
#ifdef PENSIEVE_HAS_VULKAN
  if (auto* vf = dynamic_cast<VulkanForward*>(&m.forward()))
    gpu_time = [&gpu_sum, vf](bool decode) {
      if (!decode) return;
      if (auto ms = vf->last_gpu_ms(); ms.ok()) gpu_sum += *ms;
    };
#endif
  for (int r = 0; r < reps; ++r) {
    if (pp > 0) {
      auto t = run_sequences(m, 1, pp, 0, rng);
      if (!t) {
        std::fprintf(stderr, "pensieve bench: %s\n", t.error().c_str());
        return 1;
      }
      pp_tps.push_back(double(pp) / t->first);
    }
    if (tg > 0) {
      gpu_sum = 0;
      auto t = run_sequences(m, 1, depth, tg, rng, gpu_time);
      if (!t) {
        std::fprintf(stderr, "pensieve bench: %s\n", t.error().c_str());
        return 1;
      }
      tg_tps.push_back(double(tg) / t->second);
      if (gpu_time) tg_gpu_ms.push_back(gpu_sum / double(tg));
    }
  }
  nlohmann::ordered_json batched = nlohmann::ordered_json::array();
  bool gpu = false;
#ifdef PENSIEVE_HAS_VULKAN
  gpu = dynamic_cast<VulkanForward*>(&m.forward()) != nullptr;
#endif
  for (int b : batches) {
    // On the GPU each new batch size records new command buffers and may build new pipeline
    // variants (seconds on a cold driver cache): one short untimed pass first, as llama-bench warms up.
    if (gpu) {
      if (auto w = run_sequences(m, b, 128, 2, rng); !w) {
        std::fprintf(stderr, "pensieve bench: %s\n", w.error().c_str());
        return 1;
      }
    }
    gpu_sum = 0;
    auto t = run_sequences(m, b, 128, 128, rng, gpu_time);
    if (!t) {
      std::fprintf(stderr, "pensieve bench: %s\n", t.error().c_str());
      return 1;
    }
    batched.push_back({{"seqs", b}, {"prefill_tokens_per_s", double(b) * 128 / t->first},
                       {"tg_tokens_per_s", double(b) * 128 / t->second}});
    if (gpu_time) batched.back()["gpu_ms_per_step"] = gpu_sum / 128;
  }

  nlohmann::ordered_json profile_json;
#ifdef PENSIEVE_HAS_VULKAN
  std::vector<std::pair<std::string, OpProfile>> profiles;
  if (auto* vf = dynamic_cast<VulkanForward*>(&m.forward()); vf && profile) {
    vf->set_profiling(true);
    auto profile_run = [&](const std::string& title, int b, int64_t prompt, int64_t gen) -> Status {
      OpProfile pre, dec;
      auto t = run_sequences(m, b, prompt, gen, rng, [&](bool decode) {
        auto p = vf->last_profile();
        if (p.ok()) (decode ? dec : pre).add(*p);
      });
      if (!t) return std::move(t).take_error();
      if (prompt > 0 && pre.steps) profiles.push_back({title + " prefill", pre});
      if (gen > 0 && dec.steps) profiles.push_back({title + " decode", dec});
      return Status::Ok();
    };
    Status st = Status::Ok();
    if (pp > 0) st = profile_run("pp" + std::to_string(pp), 1, pp, 0);
    if (st.ok() && tg > 0) st = profile_run("1 sequence", 1, 0, std::min<int64_t>(tg, 64));
    if (st.ok() && !batches.empty()) {
      int b = *std::max_element(batches.begin(), batches.end());
      st = profile_run(std::to_string(b) + " sequences", b, 128, 32);
    }
    vf->set_profiling(false);
    if (!st.ok()) {
      std::fprintf(stderr, "pensieve bench: --profile: %s\n", st.error().c_str());
      return 1;
    }
    for (const auto& [title, p] : profiles) profile_json[title] = p.json();
  } else if (profile) {
    std::fprintf(stderr, "pensieve bench: --profile needs the Vulkan backend (--device vulkan)\n");
  }
#else
  if (profile) std::fprintf(stderr, "pensieve bench: --profile needs the Vulkan backend (this build has none)\n");
#endif

  const int64_t weight_bytes = m.weights().nbytes();
  double tg_med = median(tg_tps);
  nlohmann::ordered_json j = {
      {"model", m.dir()},
      {"backend", m.forward().name()},
      {"device", m.forward().describe()},
      {"threads", m.pool().size()},
      {"weight_bytes", weight_bytes},
      {"load_s", m.load_seconds()},
      {"pp_tokens", pp},
      {"pp_tokens_per_s", median(pp_tps)},
      {"tg_tokens", tg},
      {"tg_depth", depth},
      {"tg_tokens_per_s", tg_med},
      {"tg_gpu_ms_per_token", median(tg_gpu_ms)},
      {"peak_rss_bytes", peak_rss_bytes()},
  };
  if (!no_probe) {
    j["read_bw_of"] = bw_of;
    j["read_bw_best_gbs"] = bw.best_gbs;
    j["read_bw_median_gbs"] = bw.median_gbs;
    // Weight traffic during generation: every token reads all weights once.
    j["tg_weight_gbs"] = double(weight_bytes) * tg_med / 1e9;
    j["tg_pct_of_read_bw"] = bw.best_gbs > 0 ? 100.0 * double(weight_bytes) * tg_med / 1e9 / bw.best_gbs : 0;
  }
  if (!batches.empty()) j["batched"] = batched;
  if (!profile_json.is_null()) j["profile"] = profile_json;
  if (json) {
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("model           %s (%s, %d threads)\n", m.dir().c_str(), m.forward().name(), m.pool().size());
  std::printf("weights         %.2f GiB, loaded in %.2f s\n", double(weight_bytes) / (1 << 30), m.load_seconds());
  if (std::string(m.forward().name()) != "cpu") std::printf("device          %s\n", m.forward().describe().c_str());
  if (!no_probe)
    std::printf("read bandwidth  %.1f GB/s best, %.1f median (%s)\n", bw.best_gbs, bw.median_gbs, bw_of.c_str());
  if (pp > 0) std::printf("pp%-5lld         %.1f tok/s\n", (long long)pp, median(pp_tps));
  if (tg > 0) {
    const std::string label = "tg" + std::to_string(tg) + (depth > 0 ? " @ d" + std::to_string(depth) : "");
    std::printf("%-15s %.2f tok/s", label.c_str(), tg_med);
    if (!no_probe) std::printf("  (weights at %.1f GB/s = %.0f%% of the probe)", double(weight_bytes) * tg_med / 1e9,
                               100.0 * double(weight_bytes) * tg_med / 1e9 / bw.best_gbs);
    // What the GPU itself took per token against the wall clock: the rest is the host's
    // round trip (inputs, submission, waiting for the fence, reading the result).
    if (!tg_gpu_ms.empty())
      std::printf("\n                GPU busy %.3f of %.3f ms per token", median(tg_gpu_ms), 1e3 / tg_med);
    std::printf("\n");
  }
  for (const auto& b : batched) {
    std::printf("batched %-4d    %.1f tok/s aggregate generation (prefill %.1f tok/s)", b["seqs"].get<int>(),
                b["tg_tokens_per_s"].get<double>(), b["prefill_tokens_per_s"].get<double>());
    if (b.contains("gpu_ms_per_step"))  // as tg's GPU busy, per decode step
      std::printf("; GPU busy %.3f of %.3f ms per step", b["gpu_ms_per_step"].get<double>(),
                  1e3 * b["seqs"].get<int>() / b["tg_tokens_per_s"].get<double>());
    std::printf("\n");
  }
  std::printf("peak RSS        %.2f GiB\n", double(peak_rss_bytes()) / (1 << 30));
#ifdef PENSIEVE_HAS_VULKAN
  for (const auto& [title, p] : profiles) p.print(title.c_str());
#endif
  return 0;
}

}  // namespace pensieve::cli
