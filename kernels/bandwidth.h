// Memory read bandwidth probe: the ceiling that decode speed is measured against.
#pragma once

#include <cstddef>

#include "tensor/thread_pool.h"

namespace pensieve {

struct BandwidthResult {
  double best_gbs = 0;    // best pass (the number targets are stated against)
  double median_gbs = 0;
};

// Reads `bytes` (≥ 1 GiB by default, far beyond any cache) with every pool thread summing its own
// slice, `passes` times; GB/s = bytes read / seconds (10^9 bytes).
BandwidthResult read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, int passes = 5);

}  // namespace pensieve
