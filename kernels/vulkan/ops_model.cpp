// Ops that exist for the decoder's recorded step: rope_store (shaders/rope_store.comp),
// gather_rows (shaders/gather.comp) and the persistent one-token layer (shaders/decode_layer.comp).
#include <cstdlib>
#include <string>

#include "kernels/vulkan/ops_util.h"

namespace pensieve::vulkan::ops {
namespace {

struct RopeStorePush {
  uint32_t stride, n_heads, n_kv_heads, head_dim, half_rot, head_stride;
};
// Bindings: 0 qkv (read and written), 1 cos, 2 sin, 3 slots, 4 K (written), 5 V (written).
const KernelDesc kRopeStore{"rope_store", 6, sizeof(RopeStorePush), (1u << 0) | (1u << 4) | (1u << 5), false, false};

struct GatherPush {
  uint32_t dim;
};
// Bindings: 0 x, 1 idx, 2 out (written).
const KernelDesc kGather{"gather", 3, sizeof(GatherPush), 1u << 2, false, false};

struct DecodeLayerPush {
  uint32_t hidden, q_dim, n_qkv, ffn;
  uint32_t n_heads, n_kv_heads, half_rot;
  uint32_t block_size, block_stride, head_stride, window;
  float eps, scale;
  uint32_t layer, max_polls;
};
// Bindings: 0-11 W/S/B of qkv, o, gate_up, down; 12, 13 norms; 14 x (read and written), 15 qkv,
// 16 attn, 17 gu (written); 18 K, 19 V (written); 20 cos, 21 sin, 22 slots, 23 meta, 24 tables;
// 25 sync (written).
const KernelDesc kDecodeLayer{"decode_layer", 26, sizeof(DecodeLayerPush),
                              (1u << 14) | (1u << 15) | (1u << 16) | (1u << 17) | (1u << 18) | (1u << 19) | (1u << 25),
                              false, false};

// Workgroup size: 512 invocations (up to 128 registers each). PENSIEVE_VK_LAYER_WG=768 or 1024 for
// A/B runs (H200: 1.50 and 1.70 against 1.47 ms per token, RESULTS phase 16).
uint32_t decode_layer_wg() {
  static const uint32_t wg = [] {
    const char* e = std::getenv("PENSIEVE_VK_LAYER_WG");
    const int v = e ? std::atoi(e) : 512;
    return v == 768 || v == 1024 ? uint32_t(v) : 512u;
  }();
  return wg;
}

}  // namespace

std::string decode_layer_unsupported(const Context& ctx, const DecodeLayer& d) {
  const DeviceInfo& in = ctx.info();
  if (in.sm_count == 0) return "multiprocessor count unknown (VK_NV_shader_sm_builtins)";
  if (!in.integer_dot_product || !in.subgroup_shuffle || !ctx.subgroups() || in.subgroup_size != 32)
    return "needs integer dot products and subgroups of 32 with shuffles";
  if (in.max_storage_buffers < 26) return "needs 26 storage buffers per stage";
  const GpuWeight* ws[] = {d.qkv, d.o, d.gate_up, d.down};
  for (const GpuWeight* w : ws)
    if (!w || w->dtype != DType::q4 || w->cols % 32 || w->cols > 8 * 32 * 32 || w->scale_dtype != d.qkv->scale_dtype ||
        w->group_size != d.qkv->group_size || (w->group_size != 32 && w->group_size != 64 && w->group_size != 128) ||
        (w->scale_dtype != DType::f16 && w->scale_dtype != DType::bf16))
      return "needs q4 projections of one group size (32, 64, 128) and f16 or bf16 scales, at most 8192 columns";
  const int64_t H = d.o->rows, hd = d.kv.head_dim, nkv = d.kv.n_kv_heads;
  if (nkv <= 0 || d.n_heads % nkv || d.n_heads / nkv > 4) return "needs at most 4 query heads per kv head";
  if (d.qkv->cols != H || d.gate_up->cols != H || d.down->rows != H || d.gate_up->rows != 2 * d.down->cols ||
      d.o->cols != d.n_heads * hd || d.qkv->rows != (d.n_heads + 2 * nkv) * hd)
    return "projection shapes do not form a layer";
  // head_dim 128 (Phi-4-mini) works, but its key rows take the attention stage to 128 registers
  // and a spill: on the H200 no faster than one dispatch per op (613-619 against 605-617 tok/s,
  // bench/RESULTS.md phase 16), so the path is kept to the head dims it speeds up.
  if (hd % 8 || hd > 96 || d.rot_dim % 4 || d.rot_dim > hd) return "needs head_dim a multiple of 8, <= 96";
  if (d.kv.dtype != DType::f16 || d.kv.head_stride % 8 || d.kv.block_stride % 8) return "needs an f16 cache";
  return "";
}

Status decode_layer(CommandList& cl, const DecodeLayer& d) {
  Context& ctx = cl.context();
  if (std::string why = decode_layer_unsupported(ctx, d); !why.empty()) return errorf("vulkan decode_layer: %s", why.c_str());
  const int64_t H = d.o->rows, F = d.down->cols, QD = d.o->cols, hd = d.kv.head_dim, nkv = d.kv.n_kv_heads;
  PENSIEVE_TRY(detail::need("decode_layer", "x", d.x, uint64_t(H) * 4));
  PENSIEVE_TRY(detail::need("decode_layer", "qkv", d.qkv_out, uint64_t(d.qkv->rows) * 4));
  PENSIEVE_TRY(detail::need("decode_layer", "attn", d.attn, uint64_t(QD) * 4));
  PENSIEVE_TRY(detail::need("decode_layer", "gu", d.gu, uint64_t(F) * 4));
  PENSIEVE_TRY(detail::need("decode_layer", "cos", d.cos, uint64_t(std::max(d.rot_dim / 2, 1)) * 4));
  PENSIEVE_TRY(detail::need("decode_layer", "sin", d.sin, uint64_t(std::max(d.rot_dim / 2, 1)) * 4));
  PENSIEVE_TRY(detail::need("decode_layer", "slots", d.slots, 4));
  PENSIEVE_TRY(detail::need("decode_layer", "meta", d.meta, sizeof(SeqMeta)));
  PENSIEVE_TRY(detail::need("decode_layer", "sync", d.sync, uint64_t(d.layer + 2) * 4));
  const uint32_t wg = decode_layer_wg(), groups = ctx.info().sm_count;
  const uint64_t ts = uint64_t(groups) * (wg / 32);  // subgroups in the grid
  const auto units_per_lane = [](int64_t cols) { return uint32_t(detail::ceil_div(uint64_t(cols) / 32, 32)); };
  // Items per subgroup and round (each lane holds rows * units weight units of 5 registers): as
  // many as the grid needs, capped at 9 units per lane (16 for down, 1 gate/up pair for gate_up).
  // The caps are measured, not derived: the kernel's registers are its busiest stage's, and a
  // spill anywhere costs more than a second round (H200, Phi-3-mini, 512 invocations: qkv, o,
  // gate_up, down at 3, 2, 1, 2 items: 121 registers, no spill, 1.416 ms per token; 4, 2, 2, 1:
  // 128 registers and a spill, 1.508 ms; RESULTS phase 16).
  const uint64_t budget = wg == 1024 ? 8 : 9;
  const auto per_round = [&](int64_t items, int64_t cols, uint64_t rows_per_item, uint64_t units) {
    const uint64_t cap = std::max<uint64_t>(1, std::min<uint64_t>(8, units / units_per_lane(cols)) / rows_per_item);
    return uint32_t(std::clamp<uint64_t>(detail::ceil_div(uint64_t(items), ts), 1, cap));
  };
  auto st = detail::scale_type(d.qkv->scale_dtype);
  if (!st.ok()) return std::move(st).take_error();
  auto pipe = ctx.pipelines().get(
      kDecodeLayer, {wg, uint32_t(hd), uint32_t(*st), uint32_t(d.qkv->group_size), uint32_t(d.n_heads / nkv),
                     units_per_lane(std::max(H, QD)), units_per_lane(F), per_round(d.qkv->rows, H, 1, budget),
                     per_round(H, QD, 1, budget), per_round(F, H, 2, 2 * units_per_lane(H)),
                     per_round(H, F, 1, std::max<uint64_t>(budget, 2 * units_per_lane(F))),
                     uint32_t(std::max({H, QD, F}) / 32)});
  if (!pipe.ok()) return std::move(pipe).take_error();
  DecodeLayerPush pc{uint32_t(H), uint32_t(QD), uint32_t(d.qkv->rows), uint32_t(F), uint32_t(d.n_heads), uint32_t(nkv),
                     uint32_t(d.rot_dim / 2), uint32_t(d.kv.block_size), uint32_t(d.kv.block_stride),
                     uint32_t(d.kv.head_stride), uint32_t(d.p.window), d.eps, d.p.scale, uint32_t(d.layer), 1u << 20};
  const GpuWeight &q = *d.qkv, &o = *d.o, &g = *d.gate_up, &dn = *d.down;
  return cl.dispatch(**pipe,
                     {q.data, q.scales, q.biases, o.data, o.scales, o.biases, g.data, g.scales, g.biases, dn.data,
                      dn.scales, dn.biases, d.attn_norm, d.mlp_norm, d.x, d.qkv_out, d.attn, d.gu, d.kv.k, d.kv.v,
                      d.cos, d.sin, d.slots, d.meta, d.tables, d.sync},
                     pc, groups);
}

Status rope_store(CommandList& cl, const BufferSlice& qkv, int64_t n, int64_t stride, int n_heads, int rot_dim,
                  const BufferSlice& cos, const BufferSlice& sin, const BufferSlice& slots, const GpuKv& kv) {
  if (n <= 0) return Status::Ok();
  const int hd = kv.head_dim, half = rot_dim / 2;
  if (hd <= 0 || hd % 2 || rot_dim < 0 || rot_dim > hd || half % 2)
    return errorf("vulkan rope_store: head_dim %d and rot_dim %d must be even, rot_dim a multiple of 4", hd, rot_dim);
  if (kv.dtype != DType::f16 && kv.dtype != DType::f32) return errorf("vulkan rope_store: KV dtype %s", dtype_name(kv.dtype));
  if (kv.dtype == DType::f16 && (kv.head_stride % 2 || kv.block_stride % 2))
    return errorf("vulkan rope_store: f16 KV needs even strides");
  const int64_t heads = n_heads + 2 * int64_t(kv.n_kv_heads);
  if (stride < heads * hd || !detail::fits_u32(n * stride) || !detail::fits_u32(kv.head_stride))
    return errorf("vulkan rope_store: qkv stride %lld for %lld heads of %d", (long long)stride, (long long)heads, hd);
  PENSIEVE_TRY(detail::need("rope_store", "qkv", qkv, uint64_t((n - 1) * stride + heads * hd) * 4));
  PENSIEVE_TRY(detail::need("rope_store", "cos", cos, uint64_t(n * std::max(half, 1)) * 4));
  PENSIEVE_TRY(detail::need("rope_store", "sin", sin, uint64_t(n * std::max(half, 1)) * 4));
  PENSIEVE_TRY(detail::need("rope_store", "slots", slots, uint64_t(n) * 4));
  Context& ctx = cl.context();
  if (uint64_t(n) > ctx.info().max_workgroup_count[1]) return errorf("vulkan rope_store: %lld tokens exceed the grid", (long long)n);
  const uint32_t wg = 128;
  auto pipe = ctx.pipelines().get(kRopeStore, {wg, kv.dtype == DType::f16 ? 1u : 0u});
  if (!pipe.ok()) return std::move(pipe).take_error();
  RopeStorePush pc{uint32_t(stride), uint32_t(n_heads), uint32_t(kv.n_kv_heads), uint32_t(hd), uint32_t(half),
                   uint32_t(kv.head_stride)};
  return cl.dispatch(**pipe, {qkv, cos, sin, slots, kv.k, kv.v}, pc,
                     uint32_t(detail::ceil_div(uint64_t(heads * hd / 2), wg)), uint32_t(n));
}

Status gather_rows(CommandList& cl, const BufferSlice& out, const BufferSlice& x, const BufferSlice& idx, int64_t n,
                   int64_t dim) {
  if (n <= 0 || dim <= 0) return Status::Ok();
  PENSIEVE_TRY(detail::need("gather_rows", "idx", idx, uint64_t(n) * 4));
  PENSIEVE_TRY(detail::need("gather_rows", "out", out, uint64_t(n * dim) * 4));
  if (!detail::fits_u32(uint64_t(x.size / 4))) return errorf("vulkan gather_rows: x too large");
  Context& ctx = cl.context();
  if (uint64_t(n) > ctx.info().max_workgroup_count[1]) return errorf("vulkan gather_rows: too many rows");
  const uint32_t wg = 128;
  auto pipe = ctx.pipelines().get(kGather, {wg});
  if (!pipe.ok()) return std::move(pipe).take_error();
  return cl.dispatch(**pipe, {x, idx, out}, GatherPush{uint32_t(dim)}, uint32_t(detail::ceil_div(uint64_t(dim), wg)),
                     uint32_t(n));
}

}  // namespace pensieve::vulkan::ops
