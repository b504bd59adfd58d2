#include "models/model.h"

#include <algorithm>
#include <chrono>

#include "models/forward_cpu.h"

namespace pensieve {

Result<std::unique_ptr<Model>> Model::load(const std::string& dir, const ModelOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto m = std::make_unique<Model>();
  m->dir_ = dir;
  auto config = load_model_config(dir);
  if (!config) return std::move(config).take_error();
  m->config_ = *config;

  const CpuKernels* k = &cpu_kernels();
  if (!o.kernels.empty()) {
    k = cpu_kernels_by_name(o.kernels.c_str());
    if (!k) return errorf("load_model: CPU kernels \"%s\" are not available on this CPU", o.kernels.c_str());
  }
  m->pool_ = std::make_unique<ThreadPool>(o.threads > 0 ? o.threads : ThreadPool::default_threads());
  m->ctx_ = std::make_unique<KernelContext>(*m->pool_, *k);

  auto weights = Weights::load(dir, m->config_, o.load, *m->pool_);
  if (!weights) return errorf("%s: %s", dir.c_str(), weights.error().c_str());
  m->weights_ = std::move(*weights);

  KvCacheOptions kv = o.kv;
  kv.dtype = o.kv_type == ModelOptions::KvType::f32 ? DType::f32 : DType::f16;
  if (o.kv_type == ModelOptions::KvType::automatic) {
    // A model kept entirely in f32 is a reference run (or a tiny model): its cache is f32 too.
    const Weights& w = *m->weights_;
    bool all_f32 = w.embed.dtype == DType::f32 && w.lm_head.dtype == DType::f32;
    for (const auto& L : w.layers) {
      for (const auto& p : L.qkv.parts) all_f32 = all_f32 && p.dtype == DType::f32;
      for (const auto& p : L.gate_up.parts) all_f32 = all_f32 && p.dtype == DType::f32;
      all_f32 = all_f32 && L.o.dtype == DType::f32 && L.down.dtype == DType::f32;
    }
    if (all_f32) kv.dtype = DType::f32;
  }
  if (kv.n_blocks == 0 && kv.max_bytes == 0) {
    int64_t tokens = o.ctx_tokens > 0 ? o.ctx_tokens : std::min<int64_t>(m->config_.max_positions, 8192);
    kv.n_blocks = (tokens + kv.block_size - 1) / kv.block_size;
  }
  auto cache = KvCache::create(m->config_, kv);
  if (!cache) return std::move(cache).take_error();
  m->cache_ = std::move(*cache);
  m->forward_ = std::make_unique<CpuForward>(m->config_, *m->weights_, *m->cache_, *m->ctx_, o.precision);
  m->load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

}  // namespace pensieve
