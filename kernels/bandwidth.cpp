#include "kernels/bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tensor/tensor.h"

namespace pensieve {

// Sums 64-bit words with 8 independent accumulators: integer adds reassociate freely, so the
// compiler vectorizes this at any ISA level, and 8 chains keep enough loads in flight.
static uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) a[k] += p[i + size_t(k)];
  for (; i < n; ++i) a[0] += p[i];
  return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

BandwidthResult read_bandwidth(ThreadPool& pool, size_t bytes, int passes) {
  const size_t words = bytes / 8;
  Buffer buf(words * 8);
  std::memset(buf.data(), 1, words * 8);  // fault every page in before timing
  const uint64_t* p = buf.as<uint64_t>();
  const int64_t slices = pool.size();
  std::atomic<uint64_t> sink{0};
  std::vector<double> gbs;
  for (int pass = 0; pass < passes; ++pass) {
    auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(slices, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        size_t begin = words * size_t(s) / size_t(slices), end = words * size_t(s + 1) / size_t(slices);
        sink.fetch_add(sum_words(p + begin, end - begin), std::memory_order_relaxed);
      }
    });
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    gbs.push_back(double(words * 8) / sec / 1e9);
  }
  std::sort(gbs.begin(), gbs.end());
  BandwidthResult r;
  r.best_gbs = gbs.back();
  r.median_gbs = gbs[gbs.size() / 2];
  if (sink.load() == 42) r.best_gbs += 0;  // keep the sums observable
  return r;
}

}  // namespace pensieve
