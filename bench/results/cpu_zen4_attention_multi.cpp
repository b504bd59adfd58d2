// Single-thread interleaved A/B of the AVX-512 attention against up to four variants (copies of
// kernels/x86/attention_avx512.cpp, each built as its own object with the entry point renamed to
// attn_v1 .. attn_v4): decode of NSEQ sequences (one query each at position CTX - 1, f16 KV in
// shuffled blocks of 16). Each round times every variant for ~30 ms in turn, so a slow spell of
// the VM hits all of them; per variant it prints the median cycles per (kv head, 16-key tile) at
// 3.6 GHz, GB/s of K and V, and the median over rounds of lib time / variant time.
// Build (from the repository root, after a Release build in build/; NVAR - 1 variant objects):
//   F="-O3 -DNDEBUG -ffp-contract=off -std=c++20 -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512bf16 -mfma -mf16c -I."
//   cp kernels/x86/attention_avx512.cpp v1.cpp && patch v1.cpp bench/results/cpu_zen4_attn_skipcorr.patch
//   g++ $F -Dattention_avx512=attn_v1 -c v1.cpp -o v1.o      (likewise v2 .. v4 as needed)
//   g++ $F bench/results/cpu_zen4_attention_multi.cpp v1.o [v2.o ...] -o multi \
//       build/kernels/libpensieve_kernels.a build/quant/libpensieve_quant.a build/tensor/libpensieve_tensor.a -lpthread
// Run: ./multi N_HEADS N_KV_HEADS HEAD_DIM CTX NSEQ NVAR [ROUNDS]
//   ./multi 24 8 128 256 1 2 15     (Phi-4-mini, 512 KiB of KV: L2)
//   ./multi 24 8 128 4096 10 2 9    (160 MiB: DRAM)
#include <chrono>
#include <immintrin.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>
#include <numeric>
#include <algorithm>
#include "kernels/kernels.h"
namespace pensieve {
void attention_avx512(float*, const float*, const AttnSeq&, const KvLayer&, const AttnParams&, int, int, int64_t, int64_t);
// Weak: the variants not linked in are null.
#define DECL(n) __attribute__((weak)) void n(float*, const float*, const AttnSeq&, const KvLayer&, const AttnParams&, int, int, int64_t, int64_t);
DECL(attn_v1) DECL(attn_v2) DECL(attn_v3) DECL(attn_v4)
}
using namespace pensieve;
using Fn = void (*)(float*, const float*, const AttnSeq&, const KvLayer&, const AttnParams&, int, int, int64_t, int64_t);
int main(int argc, char** argv) {
  int nh = atoi(argv[1]), nkv = atoi(argv[2]), hd = atoi(argv[3]);
  int64_t ctx = atoll(argv[4]);
  int nseq = atoi(argv[5]), nvar = atoi(argv[6]), rounds = argc > 7 ? atoi(argv[7]) : 15;
  Fn fns[5] = {attention_avx512, attn_v1, attn_v2, attn_v3, attn_v4};
  for (int f = 1; f < nvar; ++f)
    if (!fns[f]) {
      fprintf(stderr, "attn_v%d is not linked in\n", f);
      return 1;
    }
  const int bs = 16;
  int64_t bps = (ctx + bs - 1) / bs, blocks = bps * nseq;
  size_t elems = size_t(blocks) * nkv * bs * hd;
  std::vector<uint16_t> k(elems), v(elems);
  std::mt19937 g(1);
  std::normal_distribution<float> nd;
  for (size_t i = 0; i < elems; ++i) { k[i] = uint16_t(_cvtss_sh(nd(g), 0)); v[i] = uint16_t(_cvtss_sh(nd(g), 0)); }
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(3));
  KvLayer kv{k.data(), v.data(), DType::f16, int64_t(nkv) * bs * hd, int64_t(bs) * hd, bs, nkv, hd};
  AttnParams p; p.n_heads = nh; p.scale = 1 / std::sqrt(float(hd)); p.q_stride = nh * hd; p.out_stride = nh * hd;
  std::vector<float> q(size_t(nseq) * nh * hd), o1(q.size()), o2(q.size());
  for (auto& x : q) x = nd(g);
  std::vector<AttnSeq> s(nseq);
  for (int i = 0; i < nseq; ++i) s[i] = AttnSeq{i, 1, ctx - 1, table.data() + i * bps};
  for (int f = 1; f < nvar; ++f) {
    for (int i = 0; i < nseq; ++i) { fns[0](o1.data(), q.data(), s[i], kv, p, 0, nkv, 0, 1); fns[f](o2.data(), q.data(), s[i], kv, p, 0, nkv, 0, 1); }
    double maxd = 0; for (size_t i = 0; i < q.size(); ++i) maxd = std::max(maxd, double(std::fabs(o1[i] - o2[i])));
    printf("v%d max|diff| vs lib %.3g\n", f, maxd);
  }
  std::vector<std::vector<double>> t(nvar);
  for (int r = 0; r < rounds; ++r)
    for (int f = 0; f < nvar; ++f) {
      auto t0 = std::chrono::steady_clock::now();
      int iters = 0;
      do {
        for (int i = 0; i < nseq; ++i) fns[f](o2.data(), q.data(), s[i], kv, p, 0, nkv, 0, 1);
        ++iters;
      } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 0.03);
      t[f].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters);
    }
  const double tiles = double(nseq) * nkv * bps, bytes = double(elems) * 4;
  auto med = [](std::vector<double> x) { std::sort(x.begin(), x.end()); return x[x.size() / 2]; };
  for (int f = 0; f < nvar; ++f) {
    std::vector<double> ratio;
    for (int r = 0; r < rounds; ++r) ratio.push_back(t[0][r] / t[f][r]);
    std::vector<double> rs = ratio; std::sort(rs.begin(), rs.end());
    printf("%s: median %.0f cycles/head-tile, %.1f GB/s; speed vs lib median %.3f (range %.3f-%.3f)\n", f ? ("v" + std::to_string(f)).c_str() : "lib",
           med(t[f]) * 3.6e9 / tiles, bytes / med(t[f]) / 1e9, med(ratio), rs.front(), rs.back());
  }
}
