// Model: a loaded model ready to run — config, weights, the KV cache pool, and a forward pass on
// the chosen backend. Everything above models/ (CLI, server) starts here.
#pragma once

#include <memory>
#include <string>

#include "kernels/ops.h"
#include "models/config.h"
#include "models/forward.h"
#include "models/kv_cache.h"
#include "models/weights.h"
#include "tensor/thread_pool.h"

namespace pensieve {

struct ModelOptions {
  LoadOptions load;
  Precision precision = Precision::fast;
  KvCacheOptions kv;            // n_blocks / max_bytes 0: sized from ctx_tokens; dtype: see kv_type
  // automatic: f32 when every matrix is dense f32 (a reference run, or a tiny model), else f16.
  enum class KvType { automatic, f16, f32 } kv_type = KvType::automatic;
  // "cpu"; "auto": a Vulkan GPU (discrete, else integrated) when there is one, else the CPU with
  // one line on stderr saying why; "vulkan" / "vulkan:N": that device or an error.
  std::string device = "cpu";
  int64_t ctx_tokens = 0;       // KV pool size in tokens when kv sizes are 0 (default: max_positions, capped)
  int threads = 0;              // 0: ThreadPool::default_threads()
  std::string kernels;          // CPU kernel table by name ("" = best for this CPU)
};

class Model {
 public:
  static Result<std::unique_ptr<Model>> load(const std::string& dir, const ModelOptions& options);

  const ModelConfig& config() const { return config_; }
  const Weights& weights() const { return *weights_; }
  KvCache& cache() { return *cache_; }
  Forward& forward() { return *forward_; }
  ThreadPool& pool() { return *pool_; }
  const std::string& dir() const { return dir_; }
  double load_seconds() const { return load_seconds_; }

 private:
  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<KernelContext> ctx_;
  std::unique_ptr<Weights> weights_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<Forward> forward_;
  double load_seconds_ = 0;
};

}  // namespace pensieve
