// ThreadPool: persistent workers shared by all CPU kernels (no threads are created per call).
//
// parallel_for(n, grain, fn) splits [0, n) into chunks of `grain` items that the caller and the
// workers take from an atomic counter; fn(begin, end) runs once per chunk. Which thread runs a
// chunk must not change results: kernels compute every output element from its inputs alone.
// Calls are serialised: one parallel_for at a time per pool (the engine thread owns the pool).
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

namespace pensieve {

// A non-owning reference to a callable, cheaper than std::function (no allocation).
template <class Sig> class FunctionRef;
template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f) : obj_(const_cast<void*>(static_cast<const void*>(&f))),
                       call_([](void* o, Args... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(a...); }) {}
  R operator()(Args... a) const { return call_(obj_, a...); }

 private:
  void* obj_;
  R (*call_)(void*, Args...);
};

class ThreadPool {
 public:
  // n_threads counts the calling thread: ThreadPool(1) runs everything inline.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }
  void parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> fn);

  // Threads to use by default: PENSIEVE_THREADS if set, else the number of online CPUs.
  static int default_threads();

 private:
  void worker_loop(uint32_t seen);
  void run_chunks();

  std::vector<std::thread> workers_;
  // Job state, published by bumping generation_.
  FunctionRef<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0, job_grain_ = 1, job_chunks_ = 0;
  std::atomic<int64_t> next_chunk_{0};
  std::atomic<int> busy_{0};
  std::atomic<uint32_t> generation_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace pensieve
