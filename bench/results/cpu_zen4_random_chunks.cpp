// Read bandwidth of a 1 GiB buffer read in chunks of CHUNK_KB taken in random order (a paged KV
// cache's access pattern), summed with 512-bit loads; HUGE=1 madvises transparent huge pages;
// PREFETCH 1: each chunk's lines prefetched (T1) while the previous chunk is read, 2: only its
// first KiB; THREADS split the chunks. Best of 5 passes.
// Build: g++ -O2 -mavx512f bench/results/cpu_zen4_random_chunks.cpp -o chunks -lpthread
// Run:   ./chunks CHUNK_KB HUGE PREFETCH THREADS     (./chunks 32 1 1 2)
#include <immintrin.h>
#include <sys/mman.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>
#include <algorithm>
int main(int argc, char** argv) {
  const size_t chunk = size_t(atoi(argv[1])) * 1024;
  const int huge = atoi(argv[2]), pf = atoi(argv[3]), nt = atoi(argv[4]);
  const size_t total = size_t(1) << 30;
  char* base = (char*)mmap(nullptr, total + (2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  base = (char*)((uintptr_t(base) + (2 << 20) - 1) & ~uintptr_t((2 << 20) - 1));
  if (huge) madvise(base, total, MADV_HUGEPAGE);
  memset(base, 1, total);
  const size_t n = total / chunk;
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(1));
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> th;
    std::vector<float> sink(nt * 16);
    for (int t = 0; t < nt; ++t)
      th.emplace_back([&, t] {
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        const size_t i0 = n * t / nt, i1 = n * (t + 1) / nt;
        for (size_t i = i0; i < i1; ++i) {
          const char* c = base + order[i] * chunk;
          const char* nx = i + 1 < i1 ? base + order[i + 1] * chunk : c;
          for (size_t b = 0; b < chunk; b += 128) {
            if (pf == 1) { _mm_prefetch(nx + b, _MM_HINT_T1); _mm_prefetch(nx + b + 64, _MM_HINT_T1); }
            if (pf == 2 && b < 1024) { _mm_prefetch(nx + b, _MM_HINT_T1); _mm_prefetch(nx + b + 64, _MM_HINT_T1); }
            acc0 = _mm512_add_ps(acc0, _mm512_load_ps((const float*)(c + b)));
            acc1 = _mm512_add_ps(acc1, _mm512_load_ps((const float*)(c + b + 64)));
          }
        }
        _mm512_storeu_ps(&sink[t * 16], _mm512_add_ps(acc0, acc1));
      });
    for (auto& x : th) x.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, total / s / 1e9);
  }
  printf("chunk %zu KiB huge %d prefetch %d threads %d: %.1f GB/s\n", chunk / 1024, huge, pf, nt, best);
}
