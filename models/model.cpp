#include "models/model.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "models/forward_cpu.h"
#ifdef PENSIEVE_HAS_VULKAN
#include "models/forward_vulkan.h"
#endif

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

  // Device: a Vulkan context first (it decides where the KV cache lives).
  const bool want_vulkan = o.device.rfind("vulkan", 0) == 0;
  if (o.device != "cpu" && o.device != "auto" && !want_vulkan)
    return errorf("device \"%s\": expected auto, cpu, vulkan or vulkan:N", o.device.c_str());
#ifdef PENSIEVE_HAS_VULKAN
  std::unique_ptr<vulkan::Context> vk;
  if (o.device != "cpu") {
    vulkan::ContextOptions co;
    co.device = o.device;
    auto ctx = vulkan::Context::create(co);
    if (!ctx) {
      if (want_vulkan) return errorf("device %s: %s", o.device.c_str(), ctx.error().c_str());
      const std::string& e = ctx.error();
      std::fprintf(stderr, "pensieve: no Vulkan GPU (%s); running on the CPU\n", e.substr(0, e.find('\n')).c_str());
    } else {
      vk = std::move(*ctx);
    }
  }
#else
  if (want_vulkan) return errorf("device %s: this build has no Vulkan backend", o.device.c_str());
#endif

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
#ifdef PENSIEVE_HAS_VULKAN
  if (vk) {
    kv.host_storage = false;  // the GPU holds the pool; KvCache keeps the block bookkeeping
    auto cache = KvCache::create(m->config_, kv);
    if (!cache) return std::move(cache).take_error();
    std::string why = VulkanForward::unsupported(m->config_, *m->weights_, **cache);
    if (why.empty()) {
      m->cache_ = std::move(*cache);
      auto f = VulkanForward::create(m->config_, *m->weights_, *m->cache_, o.precision, std::move(vk));
      if (f) {
        m->forward_ = std::move(*f);
      } else if (want_vulkan) {
        return errorf("device %s: %s", o.device.c_str(), f.error().c_str());
      } else {
        std::fprintf(stderr, "pensieve: the Vulkan backend failed (%s); running on the CPU\n", f.error().c_str());
        m->cache_.reset();
        kv.host_storage = o.kv.host_storage;
      }
    } else if (want_vulkan) {
      return errorf("device %s: the Vulkan backend does not support this model: %s", o.device.c_str(), why.c_str());
    } else {
      std::fprintf(stderr, "pensieve: the Vulkan backend does not support this model (%s); running on the CPU\n",
                   why.c_str());
      kv.host_storage = o.kv.host_storage;
    }
  }
#endif
  if (!m->forward_) {
    auto cache = KvCache::create(m->config_, kv);
    if (!cache) return std::move(cache).take_error();
    m->cache_ = std::move(*cache);
    m->forward_ = std::make_unique<CpuForward>(m->config_, *m->weights_, *m->cache_, *m->ctx_, o.precision);
  }
  m->load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

}  // namespace pensieve
