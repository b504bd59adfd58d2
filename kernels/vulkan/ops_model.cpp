// Ops that exist for the decoder's recorded step: rope_store (shaders/rope_store.comp) and
// gather_rows (shaders/gather.comp).
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

}  // namespace

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
