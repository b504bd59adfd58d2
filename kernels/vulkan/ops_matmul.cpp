// matmul: picks the decode matvec, the portable tiled matmul, or the cooperative-matrix matmul,
// fills the push constants (same field order as the shaders' Push blocks) and sizes the grid.
#include <algorithm>
#include <cstring>

#include "kernels/vulkan/ops_util.h"

namespace pensieve::vulkan {
namespace {

// shaders/matvec.comp, matmul.comp, matmul_coopmat.comp: Push.
struct MatPush {
  uint32_t rows, cols, n, ldx, ldy;
  uint32_t row_units;       // 32-bit words per weight row (quantized; matvec also dense)
  uint32_t groups_per_row;  // quantized: cols / group_size
};
static_assert(sizeof(MatPush) <= 128);

// Bindings: 0 W, 1 scales, 2 biases, 3 x, 4 y (written).
const KernelDesc kMatvec{"matvec", 5, sizeof(MatPush), 1u << 4, true, false};
const KernelDesc kMatmul{"matmul", 5, sizeof(MatPush), 1u << 4, false, false};
const KernelDesc kMatmulCoop{"matmul_coopmat", 5, sizeof(MatPush), 1u << 4, false, true};

// Largest token count the matvec handles in one workgroup (its registers hold NT x-slices).
constexpr int64_t kMatvecMaxTokens = 8;

int64_t elem_bytes(DType t) { return t == DType::f32 ? 4 : 2; }

// The matvec reads whole 32-bit weight words per row and x with vec4 (q4/q8) or vec2 (f16/bf16)
// loads, so rows must start on a word and x rows on the load size.
bool matvec_fits(int64_t ldx, int64_t n, const GpuWeight& w) {
  if (n > kMatvecMaxTokens) return false;
  if (w.quantized()) return ldx % 4 == 0;
  if (w.dtype == DType::f32) return true;
  return w.cols % 2 == 0 && ldx % 2 == 0;
}

bool coopmat_usable(const Context& ctx) {
  return ctx.coopmat() && ctx.info().min_subgroup_size == 32 && ctx.info().max_subgroup_size == 32;
}

}  // namespace

Result<WeightPlaneBytes> weight_plane_bytes(const WeightMatrix& w) {
  WeightPlaneBytes b;
  if (w.quantized()) {
    PENSIEVE_TRY(check_quant_params(w.bits(), w.group_size, w.scale_dtype, w.rows, w.cols));
    b.data = uint64_t(w.rows * w.words_per_row() * 4);
    b.scales = b.biases = uint64_t(w.rows * w.groups_per_row()) * dtype_size(w.scale_dtype);
  } else {
    if (w.dtype != DType::f32 && w.dtype != DType::f16 && w.dtype != DType::bf16)
      return errorf("vulkan: weight dtype %s is not supported", dtype_name(w.dtype));
    b.data = uint64_t(w.rows * w.cols) * dtype_size(w.dtype);
  }
  return b;
}

Result<GpuWeightBuffers> upload_weight(Context& ctx, const WeightMatrix& w) {
  auto bytes = weight_plane_bytes(w);
  if (!bytes.ok()) return std::move(bytes).take_error();
  GpuWeightBuffers g;
  auto d = Buffer::create(ctx, bytes->data, MemoryKind::device, "weight");
  if (!d.ok()) return std::move(d).take_error();
  g.data = std::move(*d);
  PENSIEVE_TRY(ctx.upload(g.data, 0, w.data, bytes->data));
  g.w.dtype = w.dtype;
  g.w.rows = w.rows;
  g.w.cols = w.cols;
  g.w.data = g.data.slice(0, (bytes->data + 3) / 4 * 4);
  if (w.quantized()) {
    auto s = Buffer::create(ctx, bytes->scales, MemoryKind::device, "weight scales");
    if (!s.ok()) return std::move(s).take_error();
    auto b = Buffer::create(ctx, bytes->biases, MemoryKind::device, "weight biases");
    if (!b.ok()) return std::move(b).take_error();
    g.scales = std::move(*s);
    g.biases = std::move(*b);
    PENSIEVE_TRY(ctx.upload(g.scales, 0, w.scales, bytes->scales));
    PENSIEVE_TRY(ctx.upload(g.biases, 0, w.biases, bytes->biases));
    g.w.scale_dtype = w.scale_dtype;
    g.w.group_size = w.group_size;
    // Rounded to whole words: the shaders read 16-bit planes as 32-bit words (buffers are padded).
    g.w.scales = g.scales.slice(0, (bytes->scales + 3) / 4 * 4);
    g.w.biases = g.biases.slice(0, (bytes->biases + 3) / 4 * 4);
  }
  return g;
}

namespace ops {

const char* matmul_kernel(const Context& ctx, int64_t ldx, int64_t n, const GpuWeight& w, Precision p) {
  if (matvec_fits(ldx, n, w)) return "matvec";
  if (p == Precision::fast && n > kMatvecMaxTokens && coopmat_usable(ctx)) return "matmul_coopmat";
  return "matmul";
}

Status matmul(CommandList& cl, const BufferSlice& y, int64_t ldy, const BufferSlice& x, int64_t ldx, int64_t n,
              const GpuWeight& w, Precision p, const MatvecTuning& tune) {
  Context& ctx = cl.context();
  if (n <= 0 || w.rows <= 0) return Status::Ok();
  auto wt = detail::weight_type(w.dtype);
  if (!wt.ok()) return std::move(wt).take_error();
  ScaleType st = kStF16;
  if (w.quantized()) {
    auto s = detail::scale_type(w.scale_dtype);
    if (!s.ok()) return std::move(s).take_error();
    st = *s;
    PENSIEVE_TRY(check_quant_params(w.bits(), w.group_size, w.scale_dtype, w.rows, w.cols));
  }
  if (ldx < w.cols || ldy < w.rows)
    return errorf("vulkan matmul: ldx %lld / ldy %lld smaller than cols %lld / rows %lld", (long long)ldx,
                  (long long)ldy, (long long)w.cols, (long long)w.rows);
  if (!detail::fits_u32(n * ldx) || !detail::fits_u32(n * ldy) || !detail::fits_u32(w.rows * w.cols))
    return errorf("vulkan matmul: [%lld x %lld] x [%lld tokens] exceeds 32-bit indexing", (long long)w.rows,
                  (long long)w.cols, (long long)n);
  PENSIEVE_TRY(detail::need("matmul", "x", x, uint64_t((n - 1) * ldx + w.cols) * 4));
  PENSIEVE_TRY(detail::need("matmul", "y", y, uint64_t((n - 1) * ldy + w.rows) * 4));
  auto plane = w.quantized() ? uint64_t(w.rows * w.cols * w.bits() / 8) : uint64_t(w.rows * w.cols * elem_bytes(w.dtype));
  PENSIEVE_TRY(detail::need("matmul", "weight", w.data, plane));
  const BufferSlice& sc = w.quantized() ? w.scales : w.data;
  const BufferSlice& bi = w.quantized() ? w.biases : w.data;

  MatPush pc{};
  pc.rows = uint32_t(w.rows);
  pc.cols = uint32_t(w.cols);
  pc.n = uint32_t(n);
  pc.ldx = uint32_t(ldx);
  pc.ldy = uint32_t(ldy);
  pc.groups_per_row = w.quantized() ? uint32_t(w.cols / w.group_size) : 0;
  const uint32_t group = w.quantized() ? uint32_t(w.group_size) : 32;
  std::string which = matmul_kernel(ctx, ldx, n, w, p);

  if (which == "matvec") {
    // Defaults: 64 invocations (two NVIDIA warps, one AMD wave); rows per workgroup so that
    // ROWS * tokens stays <= 8 accumulators (rows 4 at batch 1: 4 weight rows x 2 words = 8 loads in
    // flight per invocation). All tokens in one workgroup, so each weight is read once.
    uint32_t nt = tune.tokens ? tune.tokens : uint32_t(n);
    uint32_t rows = tune.rows ? tune.rows : std::clamp<uint32_t>(8 / nt, 1, 4);
    uint32_t wg = tune.wg ? tune.wg : 64;
    if (nt < 1 || nt > 8 || rows < 1 || rows > 8 || rows * nt > 32 || (wg & (wg - 1)) || wg > 1024)
      return errorf("vulkan matvec: bad tuning (wg %u, rows %u, tokens %u)", wg, rows, nt);
    pc.row_units = uint32_t(w.quantized() ? w.words_per_row() : (w.cols * elem_bytes(w.dtype)) / 4);
    auto pipe = ctx.pipelines().get(kMatvec, {wg, rows, nt, *wt, st, group});
    if (!pipe.ok()) return std::move(pipe).take_error();
    uint32_t gx, gz;
    PENSIEVE_TRY(detail::fold_grid(ctx, detail::ceil_div(uint64_t(w.rows), rows), &gx, &gz));
    return cl.dispatch(**pipe, {w.data, sc, bi, x, y}, pc, gx, uint32_t(detail::ceil_div(uint64_t(n), nt)), gz);
  }
  pc.row_units = w.quantized() ? uint32_t(w.words_per_row()) : 0;
  bool coop = which == "matmul_coopmat";
  auto pipe = ctx.pipelines().get(coop ? kMatmulCoop : kMatmul, {coop ? 128u : 256u, 0, 0, *wt, st, group});
  if (!pipe.ok()) return std::move(pipe).take_error();
  uint32_t gx, gz;
  PENSIEVE_TRY(detail::fold_grid(ctx, detail::ceil_div(uint64_t(w.rows), 64), &gx, &gz));
  uint64_t gy = detail::ceil_div(uint64_t(n), 64);
  if (gy > ctx.info().max_workgroup_count[1]) return errorf("vulkan matmul: %lld tokens exceed the grid", (long long)n);
  return cl.dispatch(**pipe, {w.data, sc, bi, x, y}, pc, gx, uint32_t(gy), gz);
}

}  // namespace ops
}  // namespace pensieve::vulkan
