// Single-thread A/B harness: the library's avx512 attention against a variant (a copy of
// kernels/x86/attention_avx512.cpp built as its own object, entry point renamed): decode of NSEQ
// sequences (one query each at position CTX - 1, f16 KV in shuffled blocks of 16), checks the
// two outputs agree (max |diff|), then times each (best of 7 x 0.1 s) and prints cycles per
// (kv head, 16-key tile) at 3.6 GHz (the Zen 4 VM's clock) and GB/s of K and V read.
// Build (from the repository root, after a Release build in build/):
//   F="-O3 -DNDEBUG -ffp-contract=off -std=c++20 -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512bf16 -mfma -mf16c -I."
//   git show REV:kernels/x86/attention_avx512.cpp > variant.cpp
//   g++ $F -Dattention_avx512=attention_variant -c variant.cpp -o v.o
//   g++ $F bench/results/cpu_zen4_attention_harness.cpp v.o -o h build/kernels/libpensieve_kernels.a \
//       build/quant/libpensieve_quant.a build/tensor/libpensieve_tensor.a -lpthread
// Run: ./h N_HEADS N_KV_HEADS HEAD_DIM CTX [NSEQ]
//   ./h 24 8 128 128        (Phi-4-mini, 512 KiB of KV: L2)     ./h 24 8 128 4096 10   (DRAM)
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
void attention_variant(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                      int kh1, int64_t i0, int64_t i1);
void attention_avx512(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0,
                      int kh1, int64_t i0, int64_t i1);
}
using namespace pensieve;
int main(int argc, char** argv) {
  int nh = atoi(argv[1]), nkv = atoi(argv[2]), hd = atoi(argv[3]);
  int64_t ctx = atoll(argv[4]);
  int nseq = argc > 5 ? atoi(argv[5]) : 1;
  const int bs = 16;
  int64_t bps = (ctx + bs - 1) / bs, blocks = bps * nseq;
  size_t elems = size_t(blocks) * nkv * bs * hd;
  std::vector<uint16_t> k(elems), v(elems);
  std::mt19937 g(1);
  std::normal_distribution<float> nd;
  auto h16 = [](float f) { return uint16_t(_cvtss_sh(f, 0)); };
  for (size_t i = 0; i < elems; ++i) { k[i] = h16(nd(g)); v[i] = h16(nd(g)); }
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(3));
  KvLayer kv{k.data(), v.data(), DType::f16, int64_t(nkv) * bs * hd, int64_t(bs) * hd, bs, nkv, hd};
  AttnParams p; p.n_heads = nh; p.scale = 1 / std::sqrt(float(hd)); p.q_stride = nh * hd; p.out_stride = nh * hd;
  std::vector<float> q(size_t(nseq) * nh * hd), o1(q.size()), o2(q.size());
  for (auto& x : q) x = nd(g);
  std::vector<AttnSeq> s(nseq);
  for (int i = 0; i < nseq; ++i) s[i] = AttnSeq{i, 1, ctx - 1, table.data() + i * bps};
  for (int i = 0; i < nseq; ++i) { attention_avx512(o1.data(), q.data(), s[i], kv, p, 0, nkv, 0, 1); attention_variant(o2.data(), q.data(), s[i], kv, p, 0, nkv, 0, 1); }
  double maxd = 0; for (size_t i = 0; i < q.size(); ++i) maxd = std::max(maxd, double(std::fabs(o1[i] - o2[i])));
  for (int fn = 0; fn < 2; ++fn) {
    double best = 1e9;
    for (int rep = 0; rep < 7; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      int iters = 0;
      do {
        for (int i = 0; i < nseq; ++i) (fn ? attention_variant : attention_avx512)(o2.data(), q.data(), s[i], kv, p, 0, nkv, 0, 1);
        ++iters;
      } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 0.1);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters);
    }
    double tiles = double(nseq) * nkv * bps, bytes = double(elems) * 4;
    printf("%s: %.1f us/call, %.0f cycles@3.6GHz per head-tile, %.1f GB/s (max|diff| %.2g)\n", fn ? "variant" : "lib", best * 1e6,
           best * 3.6e9 / tiles, bytes / best / 1e9, maxd);
  }
}
