// matmul: picks the decode matvec, the portable tiled matmul, or the cooperative-matrix matmul,
// fills the push constants (same field order as the shaders' Push blocks) and sizes the grid.
#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/vulkan/ops_util.h"

namespace pensieve::vulkan {
namespace {

// shaders/matmul.comp, matmul_coopmat.comp: Push.
struct MatPush {
  uint32_t rows, cols, n, ldx, ldy;
  uint32_t row_units;       // 32-bit words per weight row (quantized)
  uint32_t groups_per_row;  // quantized: cols / group_size
};
static_assert(sizeof(MatPush) <= 128);

// shaders/matvec.comp: Push.
struct MatvecPush {
  uint32_t rows, cols, n, ldx, ldy;
  uint32_t row_words;       // 32-bit words per weight row
  uint32_t groups_per_row;  // quantized: cols / group_size
  uint32_t ntb;             // token blocks
  uint32_t xoff;            // silu_mul: gate -> up offset
  float eps;                // rmsnorm
};
static_assert(sizeof(MatvecPush) <= 128);

// Bindings: 0 W, 1 scales, 2 biases, 3 x, 4 y (written; read too when accumulating), 5 norm weight.
const KernelDesc kMatvec{"matvec", 6, sizeof(MatvecPush), 1u << 4, true, false};
const KernelDesc kMatmul{"matmul", 5, sizeof(MatPush), 1u << 4, false, false};
const KernelDesc kMatmulCoop{"matmul_coopmat", 5, sizeof(MatPush), 1u << 4, false, true};

// Largest token count the matvec handles in one workgroup; more tokens take several token blocks.
constexpr int64_t kMatvecMaxTokens = 8;
// Precision::fast: batches from this many tokens on take the cooperative-matrix matmul where the
// device has one (prefill); smaller ones stay on the matvec, which reads each weight once.
constexpr int64_t kCoopmatMinTokens = 64;

int64_t elem_bytes(DType t) { return t == DType::f32 ? 4 : 2; }

// The matvec reads whole 32-bit weight words per row and x with vec4 (q4/q8) or vec2 (f16/bf16)
// loads, so rows must start on a word and x rows on the load size.
bool matvec_fits(int64_t ldx, const GpuWeight& w) {
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
  if (p == Precision::fast && n >= kCoopmatMinTokens && coopmat_usable(ctx)) return "matmul_coopmat";
  if (matvec_fits(ldx, w)) return "matvec";
  return "matmul";
}

// PENSIEVE_VK_MATVEC="wg,rows,tokens,unit_words" (0 = default) overrides the matvec's defaults:
// for tuning runs on a new GPU without a rebuild.
MatvecTuning env_tuning() {
  static const MatvecTuning t = [] {
    MatvecTuning r;
    if (const char* e = std::getenv("PENSIEVE_VK_MATVEC"))
      std::sscanf(e, "%u,%u,%u,%u", &r.wg, &r.rows, &r.tokens, &r.unit_words);
    return r;
  }();
  return t;
}

// 16-byte units for long rows (fewer load instructions); single words for short rows (tiny
// models), so a workgroup's invocations all have work.
uint32_t matvec_unit_words(const GpuWeight& w) {
  uint64_t words = w.quantized() ? uint64_t(w.words_per_row()) : uint64_t(w.cols * elem_bytes(w.dtype)) / 4;
  return words % 4 == 0 && words >= 256 ? 4 : 1;
}

Status matmul(CommandList& cl, const BufferSlice& y, int64_t ldy, const BufferSlice& x, int64_t ldx, int64_t n,
              const GpuWeight& w, Precision p, const MatvecTuning& given, const MatmulFusion& f) {
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
  const bool fused = f.norm.valid() || f.silu_offset > 0 || f.accumulate;
  if (fused && std::string(matmul_kernel(ctx, ldx, n, w, p)) != "matvec")
    return errorf("vulkan matmul: fused input/output ops need the matvec kernel (see matmul_kernel)");
  if (f.norm.valid() && f.silu_offset > 0) return errorf("vulkan matmul: rmsnorm and silu_mul fusions exclude each other");
  if (f.silu_offset > 0 && (w.quantized() ? f.silu_offset % 4 : 0))
    return errorf("vulkan matmul: silu_mul offset %lld not a multiple of 4", (long long)f.silu_offset);
  if (f.norm.valid()) PENSIEVE_TRY(detail::need("matmul", "norm weight", f.norm, uint64_t(w.cols) * 4));
  PENSIEVE_TRY(detail::need("matmul", "x", x, uint64_t((n - 1) * ldx + w.cols + std::max<int64_t>(f.silu_offset, 0)) * 4));
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
    const MatvecTuning env = env_tuning();
    MatvecTuning tune = given;
    if (!tune.wg) tune.wg = env.wg;
    if (!tune.rows) tune.rows = env.rows;
    if (!tune.tokens) tune.tokens = env.tokens;
    if (!tune.unit_words) tune.unit_words = env.unit_words;
    // Defaults: 64 invocations (two NVIDIA warps, one AMD wave), 4 rows per workgroup (4 rows x 2
    // units = 8 loads, 128 bytes in flight per invocation), up to 8 tokens per workgroup (32
    // accumulators). The workgroup size and the unit are fixed per weight, so a token's result does
    // not depend on the batch (the other choices only change which workgroup computes it).
    // Token blocks of 1, 2, 4 or 8 (few pipeline variants). Short rows (tiny models) take smaller
    // workgroups with more rows each, so invocations are not left idle.
    uint32_t nt = tune.tokens ? tune.tokens : n >= 5 ? 8 : n >= 3 ? 4 : uint32_t(n);
    uint32_t uw = tune.unit_words ? tune.unit_words : matvec_unit_words(w);
    const uint64_t units = (w.quantized() ? uint64_t(w.words_per_row()) : uint64_t(w.cols * elem_bytes(w.dtype)) / 4) / uw;
    uint32_t wg = tune.wg ? tune.wg : units >= 128 ? 64 : std::max<uint32_t>(8, uint32_t(std::bit_ceil(units / 2)));
    uint32_t rows = tune.rows ? tune.rows : wg < 64 ? std::min<uint32_t>(8, 32 / nt) : std::clamp<uint32_t>(32 / nt, 1, 4);
    if (nt < 1 || nt > 32 || rows < 1 || rows > 16 || rows * nt > 64 || (wg & (wg - 1)) || wg < 8 || wg > 1024 ||
        (uw != 1 && uw != 4))
      return errorf("vulkan matvec: bad tuning (wg %u, rows %u, tokens %u, unit %u)", wg, rows, nt, uw);
    uint64_t row_words = w.quantized() ? uint64_t(w.words_per_row()) : uint64_t(w.cols * elem_bytes(w.dtype)) / 4;
    if (row_words % uw) return errorf("vulkan matvec: %llu words per row, unit %u", (unsigned long long)row_words, uw);
    MatvecPush mp{};
    mp.rows = pc.rows;
    mp.cols = pc.cols;
    mp.n = pc.n;
    mp.ldx = pc.ldx;
    mp.ldy = pc.ldy;
    mp.row_words = uint32_t(row_words);
    mp.groups_per_row = pc.groups_per_row;
    mp.ntb = uint32_t(detail::ceil_div(uint64_t(n), nt));
    mp.xoff = uint32_t(std::max<int64_t>(f.silu_offset, 0));
    mp.eps = f.eps;
    uint32_t xmode = f.norm.valid() ? 1 : f.silu_offset > 0 ? 2 : 0;
    auto pipe = ctx.pipelines().get(kMatvec, {wg, rows, nt, *wt, st, group, uw, xmode, f.accumulate ? 1u : 0u});
    if (!pipe.ok()) return std::move(pipe).take_error();
    uint32_t gx, gz;
    PENSIEVE_TRY(detail::fold_grid(ctx, detail::ceil_div(uint64_t(w.rows), rows) * mp.ntb, &gx, &gz));
    return cl.dispatch(**pipe, {w.data, sc, bi, x, y, f.norm.valid() ? f.norm : x}, mp, gx, 1, gz);
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
