// OpsBackend over the Vulkan ops: each call uploads its inputs (and the output's current bytes,
// so elements the op must not touch keep their values), records the op into a CommandList,
// submits, waits and reads the output back. Slow by design (tests, not inference).
//
// vulkan_ops_backends() lists every Vulkan device, CPU implementations (lavapipe) included;
// PENSIEVE_VK_DEVICE=N keeps only vulkan:N, PENSIEVE_VK_DEVICE=none none. Devices with subgroup
// arithmetic appear twice: with subgroup reductions and with the shared-memory fallback ("-nosg"),
// so both shader variants run the same cases; devices with NV cooperative matrices a third and a
// fourth time, their prefill attention on the tensor-core kernels: 16-query tiles ("-flash",
// shaders/attn_flash.comp) and wide tiles ("-flashwide", attn_flash_wide.comp).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "kernels/vulkan/ops.h"
#include "tests/ops_backend.h"

namespace pensieve {
namespace {

using vulkan::Buffer;
using vulkan::BufferSlice;
using vulkan::CommandList;
using vulkan::Context;
using vulkan::MemoryKind;

class VulkanOpsBackend : public OpsBackend {
 public:
  VulkanOpsBackend(std::unique_ptr<Context> ctx, std::unique_ptr<CommandList> cl, std::string name,
                   std::optional<vulkan::ops::FlashTiles> flash)
      : ctx_(std::move(ctx)), cl_(std::move(cl)), name_(std::move(name)), flash_(flash) {}
  std::string name() const override { return name_; }

  bool matmul(float* y, const float* x, int64_t n, const WeightMatrix& w, Precision p) override {
    auto gw = vulkan::upload_weight(*ctx_, w);
    if (!gw.ok()) return fail("matmul", gw.error());
    auto bx = put(x, n * w.cols * 4);
    auto by = put(y, n * w.rows * 4);
    if (!bx || !by) return false;
    return run("matmul", [&] {
      return vulkan::ops::matmul(*cl_, by->whole(), w.rows, bx->whole(), w.cols, n, gw->w, p);
    }) && get(y, *by, n * w.rows * 4);
  }

  bool rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps) override {
    auto bx = put(x, rows * dim * 4), bw = put(w, dim * 4), by = put(y, rows * dim * 4);
    if (!bx || !bw || !by) return false;
    return run("rmsnorm", [&] {
      return vulkan::ops::rmsnorm(*cl_, by->whole(), bx->whole(), bw->whole(), rows, dim, eps);
    }) && get(y, *by, rows * dim * 4);
  }

  bool rope(float* x, int64_t n, int64_t stride, int n_heads, int head_dim, int rot_dim, const float* cos,
            const float* sin) override {
    int64_t bytes = ((n - 1) * stride + int64_t(n_heads) * head_dim) * 4;
    auto bx = put(x, bytes), bc = put(cos, n * (rot_dim / 2) * 4), bs = put(sin, n * (rot_dim / 2) * 4);
    if (!bx || !bc || !bs) return false;
    return run("rope", [&] {
      return vulkan::ops::rope(*cl_, bx->whole(), n, stride, n_heads, head_dim, rot_dim, bc->whole(), bs->whole());
    }) && get(x, *bx, bytes);
  }

  bool attention(float* out, const float* q, const AttnSeq* seqs, int n_seqs, const KvLayer& kv,
                 const AttnParams& p, int64_t n_q_rows, int64_t kv_blocks) override {
    const int hd = kv.head_dim;
    std::vector<vulkan::SeqMeta> meta;
    std::vector<int32_t> tables;
    int64_t max_n_q = 0, max_len = 0;
    for (int s = 0; s < n_seqs; ++s) {
      const AttnSeq& a = seqs[s];
      int64_t len = a.pos0 + a.n_q;
      meta.push_back({int32_t(a.q_begin), int32_t(a.n_q), int32_t(a.pos0), int32_t(tables.size())});
      for (int64_t b = 0; b < (len + kv.block_size - 1) / kv.block_size; ++b) tables.push_back(a.block_table[b]);
      max_n_q = std::max(max_n_q, a.n_q);
      max_len = std::max(max_len, len);
    }
    if (tables.empty()) tables.push_back(0);
    const int64_t esz = kv.dtype == DType::f16 ? 2 : 4;
    const int64_t kv_elems = (kv_blocks - 1) * kv.block_stride + int64_t(kv.n_kv_heads - 1) * kv.head_stride +
                             int64_t(kv.block_size) * hd;
    const int64_t q_bytes = ((n_q_rows - 1) * p.q_stride + int64_t(p.n_heads) * hd) * 4;
    const int64_t o_bytes = ((n_q_rows - 1) * p.out_stride + int64_t(p.n_heads) * hd) * 4;
    auto bq = put(q, q_bytes), bo = put(out, o_bytes), bk = put(kv.k, kv_elems * esz), bv = put(kv.v, kv_elems * esz);
    auto bm = put(meta.data(), int64_t(meta.size() * sizeof(vulkan::SeqMeta)));
    auto bt = put(tables.data(), int64_t(tables.size() * 4));
    if (!bq || !bo || !bk || !bv || !bm || !bt) return false;
    vulkan::GpuKv gkv{bk->whole(), bv->whole(), kv.dtype, kv.block_stride, kv.head_stride, kv.block_size,
                      kv.n_kv_heads, hd};
    vulkan::GpuSeqs gs{bm->whole(), bt->whole(), n_seqs, max_n_q, max_len};
    uint64_t scratch_bytes = vulkan::ops::attention_scratch_bytes(*ctx_, gs, gkv, p);
    auto scratch = Buffer::create(*ctx_, std::max<uint64_t>(scratch_bytes, 16), MemoryKind::device, "scratch");
    if (!scratch.ok()) return fail("attention", scratch.error());
    const bool flash = flash_ && max_n_q > 4 && vulkan::ops::flash_attention_supported(*ctx_, gkv, p);
    return run("attention", [&] {
      if (flash) return vulkan::ops::flash_attention(*cl_, bo->whole(), bq->whole(), gs, gkv, p, *flash_);
      return vulkan::ops::attention(*cl_, bo->whole(), bq->whole(), gs, gkv, p, scratch->whole());
    }) && get(out, *bo, o_bytes);
  }

  bool silu_mul(float* out, const float* gu, int64_t n, int64_t ffn) override {
    auto bg = put(gu, n * 2 * ffn * 4), bo = put(out, n * ffn * 4);
    if (!bg || !bo) return false;
    return run("silu_mul", [&] { return vulkan::ops::silu_mul(*cl_, bo->whole(), bg->whole(), n, ffn); }) &&
           get(out, *bo, n * ffn * 4);
  }

  bool add(float* y, const float* x, int64_t n) override {
    auto by = put(y, n * 4), bx = put(x, n * 4);
    if (!by || !bx) return false;
    return run("add", [&] { return vulkan::ops::add(*cl_, by->whole(), bx->whole(), n); }) && get(y, *by, n * 4);
  }

  bool embed(float* out, const int32_t* ids, int64_t n, const WeightMatrix& table) override {
    auto gw = vulkan::upload_weight(*ctx_, table);
    if (!gw.ok()) return fail("embed", gw.error());
    auto bi = put(ids, n * 4), bo = put(out, n * table.cols * 4);
    if (!bi || !bo) return false;
    return run("embed", [&] { return vulkan::ops::embed(*cl_, bo->whole(), bi->whole(), n, gw->w); }) &&
           get(out, *bo, n * table.cols * 4);
  }

 private:
  // Errors mean "this device cannot run the case": report once per op, count as skipped.
  bool fail(const char* op, const std::string& msg) {
    std::fprintf(stderr, "[%s] %s: %s\n", name_.c_str(), op, msg.c_str());
    return false;
  }
  std::unique_ptr<Buffer> put(const void* src, int64_t bytes) {
    auto b = Buffer::create(*ctx_, uint64_t(std::max<int64_t>(bytes, 4)), MemoryKind::device, "test input");
    if (!b.ok()) {
      fail("upload", b.error());
      return nullptr;
    }
    auto out = std::make_unique<Buffer>(std::move(*b));
    if (bytes > 0) {
      Status st = ctx_->upload(*out, 0, src, uint64_t(bytes));
      if (!st.ok()) {
        fail("upload", st.error());
        return nullptr;
      }
    }
    return out;
  }
  bool get(void* dst, const Buffer& b, int64_t bytes) {
    Status st = ctx_->download(dst, b, 0, uint64_t(bytes));
    return st.ok() || fail("download", st.error());
  }
  template <class F>
  bool run(const char* op, F&& record) {
    Status st = cl_->begin();
    if (st.ok()) st = record();
    if (st.ok()) st = cl_->end();
    if (st.ok()) st = cl_->submit_and_wait();
    return st.ok() || fail(op, st.error());
  }

  std::unique_ptr<Context> ctx_;
  std::unique_ptr<CommandList> cl_;
  std::string name_;
  std::optional<vulkan::ops::FlashTiles> flash_;  // prefill attention on the tensor-core kernels where they apply
};

std::unique_ptr<OpsBackend> make_backend(int index, bool subgroups, const std::string& label,
                                         std::optional<vulkan::ops::FlashTiles> flash = std::nullopt) {
  vulkan::ContextOptions opt;
  opt.device = "vulkan:" + std::to_string(index);
  opt.allow_cpu_device = true;
  opt.use_subgroups = subgroups;
  auto ctx = Context::create(opt);
  if (!ctx.ok()) {
    std::fprintf(stderr, "vulkan_ops_backends: %s\n", ctx.error().c_str());
    return nullptr;
  }
  auto cl = CommandList::create(**ctx);
  if (!cl.ok()) {
    std::fprintf(stderr, "vulkan_ops_backends: %s\n", cl.error().c_str());
    return nullptr;
  }
  return std::make_unique<VulkanOpsBackend>(std::move(*ctx), std::move(*cl), label, flash);
}

}  // namespace

std::vector<std::unique_ptr<OpsBackend>> vulkan_ops_backends() {
  std::vector<std::unique_ptr<OpsBackend>> out;
  const char* only = std::getenv("PENSIEVE_VK_DEVICE");
  if (only && std::strcmp(only, "none") == 0) return out;
  auto devices = vulkan::Context::list_devices();
  if (!devices.ok()) {
    std::fprintf(stderr, "vulkan_ops_backends: %s (Vulkan cases skipped)\n", devices.error().c_str());
    return out;
  }
  for (const auto& d : *devices) {
    if (only && *only && std::atoi(only) != d.index) continue;
    std::string label = "vulkan:" + std::to_string(d.index) + " " + d.name;
    if (auto b = make_backend(d.index, true, label)) out.push_back(std::move(b));
    if (d.subgroup_arithmetic)
      if (auto b = make_backend(d.index, false, label + " -nosg")) out.push_back(std::move(b));
    if (d.coopmat_nv_f16_16x16x16) {
      using vulkan::ops::FlashTiles;
      if (auto b = make_backend(d.index, true, label + " -flash", FlashTiles::narrow)) out.push_back(std::move(b));
      if (auto b = make_backend(d.index, true, label + " -flashwide", FlashTiles::wide)) out.push_back(std::move(b));
    }
  }
  return out;
}

}  // namespace pensieve
