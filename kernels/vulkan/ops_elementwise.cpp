// silu_mul, add, embed (shaders/silu_mul.comp, add.comp, embed.comp).
#include "kernels/vulkan/ops_util.h"

namespace pensieve::vulkan::ops {
namespace {

struct SiluPush {
  uint32_t ffn;
};
// Bindings: 0 gu, 1 out (written).
const KernelDesc kSiluMul{"silu_mul", 2, sizeof(SiluPush), 1u << 1, false, false};

struct AddPush {
  uint32_t n;
};
// Bindings: 0 y (read and written), 1 x.
const KernelDesc kAdd{"add", 2, sizeof(AddPush), 1u << 0, false, false};

struct EmbedPush {
  uint32_t rows, cols, row_words, groups_per_row;
};
static_assert(sizeof(EmbedPush) <= 128);
// Bindings: 0 ids, 1 W, 2 scales, 3 biases, 4 out (written).
const KernelDesc kEmbed{"embed", 5, sizeof(EmbedPush), 1u << 4, false, false};

}  // namespace

Status silu_mul(CommandList& cl, const BufferSlice& out, const BufferSlice& gu, int64_t n, int64_t ffn) {
  if (n <= 0 || ffn <= 0) return Status::Ok();
  if (!detail::fits_u32(n * 2 * ffn)) return errorf("vulkan silu_mul: [%lld, %lld] too large", (long long)n, (long long)ffn);
  PENSIEVE_TRY(detail::need("silu_mul", "gu", gu, uint64_t(n * 2 * ffn) * 4));
  PENSIEVE_TRY(detail::need("silu_mul", "out", out, uint64_t(n * ffn) * 4));
  const uint32_t wg = 256;
  auto pipe = cl.context().pipelines().get(kSiluMul, {wg});
  if (!pipe.ok()) return std::move(pipe).take_error();
  if (uint64_t(n) > cl.context().info().max_workgroup_count[1])
    return errorf("vulkan silu_mul: %lld tokens exceed the grid", (long long)n);
  return cl.dispatch(**pipe, {gu, out}, SiluPush{uint32_t(ffn)}, uint32_t(detail::ceil_div(uint64_t(ffn), wg)),
                     uint32_t(n));
}

Status add(CommandList& cl, const BufferSlice& y, const BufferSlice& x, int64_t n) {
  if (n <= 0) return Status::Ok();
  if (!detail::fits_u32(n)) return errorf("vulkan add: %lld elements too many", (long long)n);
  PENSIEVE_TRY(detail::need("add", "y", y, uint64_t(n) * 4));
  PENSIEVE_TRY(detail::need("add", "x", x, uint64_t(n) * 4));
  const uint32_t wg = 256;
  auto pipe = cl.context().pipelines().get(kAdd, {wg});
  if (!pipe.ok()) return std::move(pipe).take_error();
  // Grid-stride: at most 4096 workgroups (1M invocations), enough to fill any GPU.
  uint32_t groups = uint32_t(std::min<uint64_t>(detail::ceil_div(uint64_t(n), wg), 4096));
  return cl.dispatch(**pipe, {y, x}, AddPush{uint32_t(n)}, groups);
}

Status embed(CommandList& cl, const BufferSlice& out, const BufferSlice& ids, int64_t n, const GpuWeight& table) {
  if (n <= 0) return Status::Ok();
  auto wt = detail::weight_type(table.dtype);
  if (!wt.ok()) return std::move(wt).take_error();
  ScaleType st = kStF16;
  uint32_t units = uint32_t(table.cols), row_words = 0, gpr = 0, group = 32;
  if (table.quantized()) {
    auto s = detail::scale_type(table.scale_dtype);
    if (!s.ok()) return std::move(s).take_error();
    st = *s;
    PENSIEVE_TRY(check_quant_params(table.bits(), table.group_size, table.scale_dtype, table.rows, table.cols));
    row_words = uint32_t(table.cols * table.bits() / 32);
    units = row_words;
    gpr = uint32_t(table.cols / table.group_size);
    group = uint32_t(table.group_size);
  }
  if (!detail::fits_u32(n * table.cols) || !detail::fits_u32(table.rows * table.cols))
    return errorf("vulkan embed: table [%lld, %lld] x %lld ids too large", (long long)table.rows,
                  (long long)table.cols, (long long)n);
  PENSIEVE_TRY(detail::need("embed", "ids", ids, uint64_t(n) * 4));
  PENSIEVE_TRY(detail::need("embed", "out", out, uint64_t(n * table.cols) * 4));
  const BufferSlice& sc = table.quantized() ? table.scales : table.data;
  const BufferSlice& bi = table.quantized() ? table.biases : table.data;
  const uint32_t wg = 128;
  auto pipe = cl.context().pipelines().get(kEmbed, {wg, 0, 0, *wt, st, group});
  if (!pipe.ok()) return std::move(pipe).take_error();
  if (uint64_t(n) > cl.context().info().max_workgroup_count[1])
    return errorf("vulkan embed: %lld tokens exceed the grid", (long long)n);
  EmbedPush pc{uint32_t(table.rows), uint32_t(table.cols), row_words, gpr};
  return cl.dispatch(**pipe, {ids, table.data, sc, bi, out}, pc, uint32_t(detail::ceil_div(units, wg)),
                     uint32_t(n));
}

}  // namespace pensieve::vulkan::ops
