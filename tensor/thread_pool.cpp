#include "tensor/thread_pool.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax() { asm volatile("yield"); }
#else
static inline void cpu_relax() {}
#endif

namespace pensieve {

// Workers spin this many times on the generation counter before sleeping on it: a decode step
// issues hundreds of parallel_for calls a few microseconds apart, and a futex wake costs more.
// Waiters yield their core between checks after kYieldAfter spins, so an oversubscribed machine
// (more runnable threads than cores) still makes progress instead of spinning whole time slices.
static constexpr int kSpinIterations = 20000;
static constexpr int kYieldAfter = 200;

ThreadPool::ThreadPool(int n_threads) {
  // Each worker starts from the generation as it is now, not as it finds it once running: a
  // parallel_for issued before a worker got scheduled must still count as new work for it.
  const uint32_t start = generation_.load(std::memory_order_relaxed);
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, start] { worker_loop(start); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

int ThreadPool::default_threads() {
  if (const char* env = std::getenv("PENSIEVE_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? int(n) : 1;
}

void ThreadPool::run_chunks() {
  for (;;) {
    int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= job_chunks_) break;
    int64_t begin = c * job_grain_;
    int64_t end = begin + job_grain_ < job_n_ ? begin + job_grain_ : job_n_;
    (*job_)(begin, end);
  }
}

void ThreadPool::worker_loop(uint32_t seen) {
  for (;;) {
    uint32_t g;
    int spins = 0;
    while ((g = generation_.load(std::memory_order_acquire)) == seen) {
      if (++spins < kYieldAfter) {
        cpu_relax();
      } else if (spins < kSpinIterations) {
        std::this_thread::yield();
      } else {
        generation_.wait(seen, std::memory_order_acquire);
      }
    }
    seen = g;
    if (stop_.load()) return;
    run_chunks();
    busy_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int64_t chunks = (n + grain - 1) / grain;
  if (workers_.empty() || chunks == 1) {
    for (int64_t b = 0; b < n; b += grain) fn(b, b + grain < n ? b + grain : n);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  job_grain_ = grain;
  job_chunks_ = chunks;
  next_chunk_.store(0, std::memory_order_relaxed);
  busy_.store(int(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  run_chunks();
  for (int spins = 0; busy_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kYieldAfter) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  job_ = nullptr;
}

}  // namespace pensieve
