// rmsnorm (shaders/rmsnorm.comp) and rope (shaders/rope.comp).
#include "kernels/vulkan/ops_util.h"

namespace pensieve::vulkan::ops {
namespace {

struct RmsPush {
  uint32_t dim;
  float eps;
};
static_assert(sizeof(RmsPush) <= 128);
// Bindings: 0 x, 1 w, 2 y (written).
const KernelDesc kRmsnorm{"rmsnorm", 3, sizeof(RmsPush), 1u << 2, true, false};

struct RopePush {
  uint32_t stride, n_heads, head_dim, half_rot;
};
static_assert(sizeof(RopePush) <= 128);
// Bindings: 0 x (read and written in place), 1 cos, 2 sin.
const KernelDesc kRope{"rope", 3, sizeof(RopePush), 1u << 0, false, false};

}  // namespace

Status rmsnorm(CommandList& cl, const BufferSlice& y, const BufferSlice& x, const BufferSlice& w, int64_t rows,
               int64_t dim, float eps, bool y_bf16) {
  if (rows <= 0) return Status::Ok();
  if (dim <= 0 || !detail::fits_u32(rows * dim)) return errorf("vulkan rmsnorm: bad shape [%lld, %lld]", (long long)rows, (long long)dim);
  PENSIEVE_TRY(detail::need("rmsnorm", "x", x, uint64_t(rows * dim) * 4));
  PENSIEVE_TRY(detail::need("rmsnorm", "y", y, uint64_t(rows * dim) * (y_bf16 ? 2 : 4)));
  PENSIEVE_TRY(detail::need("rmsnorm", "w", w, uint64_t(dim) * 4));
  if (y_bf16 && (dim % 2 || (y.handle == x.handle && y.offset < x.offset + x.size && x.offset < y.offset + y.size)))
    return errorf("vulkan rmsnorm: a bf16 y needs an even dim and its own memory (dim %lld)", (long long)dim);
  // 256 invocations: a 3072-wide row is 12 coalesced loads each; rows are the parallelism.
  auto pipe = cl.context().pipelines().get(kRmsnorm, {256, y_bf16 ? 1u : 0u});
  if (!pipe.ok()) return std::move(pipe).take_error();
  if (uint64_t(rows) > cl.context().info().max_workgroup_count[0])
    return errorf("vulkan rmsnorm: %lld rows exceed the grid", (long long)rows);
  return cl.dispatch(**pipe, {x, w, y}, RmsPush{uint32_t(dim), eps}, uint32_t(rows));
}

Status rope(CommandList& cl, const BufferSlice& x, int64_t n, int64_t stride, int n_heads, int head_dim,
            int rot_dim, const BufferSlice& cos, const BufferSlice& sin) {
  if (n <= 0 || n_heads <= 0) return Status::Ok();
  if (rot_dim <= 0 || rot_dim % 2 || rot_dim > head_dim || int64_t(n_heads) * head_dim > stride ||
      !detail::fits_u32(n * stride))
    return errorf("vulkan rope: bad shape (n %lld, stride %lld, heads %d, head_dim %d, rot_dim %d)", (long long)n,
                  (long long)stride, n_heads, head_dim, rot_dim);
  const int64_t half = rot_dim / 2;
  PENSIEVE_TRY(detail::need("rope", "x", x, uint64_t((n - 1) * stride + int64_t(n_heads) * head_dim) * 4));
  PENSIEVE_TRY(detail::need("rope", "cos", cos, uint64_t(n * half) * 4));
  PENSIEVE_TRY(detail::need("rope", "sin", sin, uint64_t(n * half) * 4));
  const uint32_t wg = 128;
  auto pipe = cl.context().pipelines().get(kRope, {wg});
  if (!pipe.ok()) return std::move(pipe).take_error();
  if (uint64_t(n) > cl.context().info().max_workgroup_count[1])
    return errorf("vulkan rope: %lld tokens exceed the grid", (long long)n);
  RopePush pc{uint32_t(stride), uint32_t(n_heads), uint32_t(head_dim), uint32_t(half)};
  return cl.dispatch(**pipe, {x, cos, sin}, pc, uint32_t(detail::ceil_div(uint64_t(n_heads * half), wg)),
                     uint32_t(n));
}

}  // namespace pensieve::vulkan::ops
