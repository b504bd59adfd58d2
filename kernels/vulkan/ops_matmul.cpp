// matmul: picks the decode matvec, the portable tiled matmul, or the cooperative-matrix matmul,
// fills the push constants (same field order as the shaders' Push blocks) and sizes the grid.
#include <algorithm>
#include <array>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/vulkan/ops_util.h"
#include "tensor/dtype.h"

namespace pensieve::vulkan {
namespace {

// shaders/matmul.comp, matmul_coopmat.comp: Push.
struct MatPush {
  uint32_t rows, cols, n, ldx, ldy;
  uint32_t row_units;       // 32-bit words per weight row (quantized)
  uint32_t groups_per_row;  // quantized: cols / group_size
  uint32_t ssq_tiles;       // mmq4_coop's norm fusion (the other shaders' Push blocks stop before)
  float eps;
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
// shaders/mvq4.comp: Push (MatvecPush's fields, then the fused output ops').
struct Mvq4Push {
  MatvecPush mv;
  uint32_t ffn;                                                      // silu pairs: rows / 2
  uint32_t n_heads, n_kv_heads, head_dim, half_rot, head_stride;     // rope
};
static_assert(sizeof(Mvq4Push) <= 128);
// The q4 kernel: the matvec's bindings (+ cos, sin, slots, K, V for the rope variant). Separate
// descriptions because the subgroup variant is chosen here (it needs a fixed subgroup size), not by
// Pipelines::get.
const KernelDesc kMvq4{"mvq4", 6, sizeof(Mvq4Push), 1u << 4, false, false};
const KernelDesc kMvq4Sg{"mvq4_sg", 6, sizeof(Mvq4Push), 1u << 4, false, false};
const KernelDesc kMvq4RopeSg{"mvq4_rope_sg", 11, sizeof(Mvq4Push), (1u << 4) | (1u << 9) | (1u << 10), false, false};
const KernelDesc kMvq4DotSg{"mvq4_dot_sg", 6, sizeof(Mvq4Push), 1u << 4, false, false};
const KernelDesc kMvq4RopeDotSg{"mvq4_rope_dot_sg", 11, sizeof(Mvq4Push), (1u << 4) | (1u << 9) | (1u << 10), false,
                                false};
const KernelDesc kMatmul{"matmul", 5, sizeof(MatPush), 1u << 4, false, false};
const KernelDesc kMatmulCoop{"matmul_coopmat", 5, sizeof(MatPush), 1u << 4, false, true};
// Bindings: 0 W, 1 scales, 2 biases, 3 x, 4 y, 5 split-K partials, 6 split-K counters, 7 sums of
// squares (norm fusion), 8 norm weight (a producer's: the next norm's), 9 bf16 y * norm weight.
constexpr uint32_t kMmq4Writes = (1u << 4) | (1u << 5) | (1u << 6) | (1u << 7) | (1u << 9);
const KernelDesc kMmq4Coop{"mmq4_coop", 10, sizeof(MatPush), kMmq4Writes, false, true};
// Its AFRAG variants (weight fragments built in registers; same bindings), and the probe of the
// fragment layout they assume (bindings: 0 a 16 x 16 f16 matrix, 1 what each lane holds).
const KernelDesc kMmq4Frag{"mmq4_frag", 10, sizeof(MatPush), kMmq4Writes, false, true};
const KernelDesc kMmq4Frag8{"mmq4_frag8", 10, sizeof(MatPush), kMmq4Writes, false, true};
const KernelDesc kCoopProbe{"coop_probe", 2, 0, 1u << 1, false, true};

// Largest token count the matvec handles in one workgroup; more tokens take several token blocks.
constexpr int64_t kMatvecMaxTokens = 8;
// Precision::fast: batches from this many tokens on take the cooperative-matrix matmul where the
// device has one (prefill); smaller ones stay on the matvec, which reads each weight once.
constexpr int64_t kCoopmatMinTokens = 64;
// ... and q4 weights from this many tokens on (mmq4_coop.comp, whose 16-token tiles read each
// weight once per step; the matvec reads it once per token, from L2 after the first).
constexpr int64_t kCoopQ4MinTokens = 5;

// PENSIEVE_VK_COOP="bm,bn,wg,wm[,min_tokens[,ku[,split[,map[,depth]]]]]" overrides mmq4_coop's tiles
// (tuning runs; 0 keeps a default; map is the shader's RMAP + 1).
struct CoopTuning {
  uint32_t bm = 0, bn = 0, wg = 0, wm = 0, min_tokens = 0, ku = 0, split = 0, map = 0, depth = 0;
};
const CoopTuning& coop_env() {
  static const CoopTuning t = [] {
    CoopTuning r;
    if (const char* e = std::getenv("PENSIEVE_VK_COOP"))
      std::sscanf(e, "%u,%u,%u,%u,%u,%u,%u,%u,%u", &r.bm, &r.bn, &r.wg, &r.wm, &r.min_tokens, &r.ku, &r.split, &r.map,
                  &r.depth);
    return r;
  }();
  return t;
}
// Split K is used until a dispatch has about this many workgroups (an H100/H200 has 132
// multiprocessors; a decode-sized grid of 48-256 tiles leaves most of them idle or latency-bound
// otherwise). More workgroups keep more loads in flight but write more partial tiles; measured on
// the H200 (bench/RESULTS.md), 512 was best at 16 tokens and 1024 at 20-32 (2048: 3-8% slower).
long long coop_wgs_env() {  // PENSIEVE_VK_COOP_WGS overrides the target (tuning runs)
  static const long long env = [] {
    const char* e = std::getenv("PENSIEVE_VK_COOP_WGS");
    return e ? std::atoll(e) : 0;
  }();
  return env;
}
uint64_t coop_target_workgroups(int64_t n) {
  if (coop_wgs_env() > 0) return uint64_t(coop_wgs_env());
  return n <= 16 ? 512 : 1024;
}
// The K split of a prefill-sized product (n > 64) on a device that reports its multiprocessors:
// each holds one 256-invocation workgroup of these (~180 registers per invocation), so a grid of g
// workgroups runs in about ceil(g / sms) waves, each about as long as one workgroup's steps plus a
// fixed cost (first loads, the split-K sum) of ~8 steps, and each split adds ~3 steps of partial
// tiles to write and sum. Among the splits that leave no multiprocessor idle, the one with the
// fewest step-times wins (ties: the smaller). Fitted to sweeps of fixed splits on the H200
// (bench/RESULTS.md, phase 11): for Phi-3-mini it picks the fastest split of each projection, qkv
// (288 tiles: 2), o_proj (96 tiles of 48 steps: 2), down (96 of 128 steps: 4) and gate_up (512:
// 1). 264 workgroups for every product, the rule before, ran qkv in three waves, the last of 24
// workgroups.
uint64_t prefill_split(uint64_t tiles, uint64_t steps, uint32_t sms) {
  constexpr double kFixedSteps = 8, kStepsPerSplit = 3;
  const uint64_t most = std::max<uint64_t>(1, std::min<uint64_t>(16, steps / 2));
  const uint64_t least = std::min(most, detail::ceil_div(uint64_t(sms), tiles));
  uint64_t best = least;
  double best_t = -1;
  for (uint64_t s = least; s <= most; ++s) {
    const double t = double(detail::ceil_div(tiles * s, uint64_t(sms))) * (double(steps) / double(s) + kFixedSteps) +
                     kStepsPerSplit * double(s);
    if (best_t < 0 || t < best_t) best = s, best_t = t;
  }
  return best;
}

int64_t coop_q4_min_tokens() { return coop_env().min_tokens ? coop_env().min_tokens : kCoopQ4MinTokens; }

// PENSIEVE_VK_FRAG: "0" turns mmq4_coop's AFRAG variant off; "nw,rf,depth,wgs,split" tunes it (0
// keeps a default): nw subgroups of rf 16-row fragments each, depth register sets, about wgs
// workgroups per dispatch, or a fixed K split.
struct FragTuning {
  bool off = false, no8 = false;  // PENSIEVE_VK_FRAG8=0: no 16 x 8 fragments
  uint32_t nw = 0, rf = 0, depth = 0, wgs = 0, split = 0;
};
const FragTuning& frag_env() {
  static const FragTuning t = [] {
    FragTuning r;
    if (const char* e = std::getenv("PENSIEVE_VK_FRAG")) {
      r.off = std::strcmp(e, "0") == 0;
      std::sscanf(e, "%u,%u,%u,%u,%u", &r.nw, &r.rf, &r.depth, &r.wgs, &r.split);
    }
    if (const char* e = std::getenv("PENSIEVE_VK_FRAG8")) r.no8 = std::strcmp(e, "0") == 0;
    return r;
  }();
  return t;
}

// Loads a 16 x 16 f16 matrix whose element (r, c) is r * 16 + c into a cooperative matrix and
// checks that every lane holds the elements shaders/mmq4_coop.comp's AFRAG variant assumes.
Result<bool> probe_coop_layout(Context& ctx) {
  std::array<uint16_t, 256> m{};
  for (int i = 0; i < 256; ++i) m[i] = f32_to_f16(float(i));
  auto in = Buffer::create(ctx, sizeof m, MemoryKind::device, "coop probe");
  if (!in.ok()) return std::move(in).take_error();
  auto out = Buffer::create(ctx, 257 * 4, MemoryKind::device, "coop probe");
  if (!out.ok()) return std::move(out).take_error();
  PENSIEVE_TRY(ctx.upload(*in, 0, m.data(), sizeof m));
  auto pipe = ctx.pipelines().get(kCoopProbe, {32});
  if (!pipe.ok()) return std::move(pipe).take_error();
  auto cl = CommandList::create(ctx, false);
  if (!cl.ok()) return std::move(cl).take_error();
  PENSIEVE_TRY((*cl)->begin());
  PENSIEVE_TRY((*cl)->dispatch(**pipe, {in->whole(), out->whole()}, static_cast<const void*>(nullptr), 0u, 1u));
  PENSIEVE_TRY((*cl)->end());
  PENSIEVE_TRY((*cl)->submit_and_wait());
  std::array<uint32_t, 257> got{};
  PENSIEVE_TRY(ctx.download(got.data(), *out, 0, sizeof got));
  if (std::getenv("PENSIEVE_VK_PROBE_DUMP")) {  // what each lane holds, as (row, column)
    std::fprintf(stderr, "coop probe: length %u\n", got[256]);
    for (uint32_t lane = 0; lane < 32 && got[256] <= 8; ++lane) {
      std::fprintf(stderr, "lane %2u:", lane);
      for (uint32_t e = 0; e < got[256]; ++e) {
        const uint32_t v = got[lane * got[256] + e];
        std::fprintf(stderr, " (%u,%u)", v / 16, v % 16);
      }
      std::fprintf(stderr, "\n");
    }
  }
  if (got[256] != 8) return false;
  for (uint32_t lane = 0; lane < 32; ++lane)
    for (uint32_t e = 0; e < 8; ++e) {
      const uint32_t r = lane / 4 + 8 * (e >> 2), c = 2 * (lane % 4) + (e & 1) + 8 * ((e >> 1) & 1);
      if (got[lane * 8 + e] != r * 16 + c) return false;
    }
  return true;
}

bool coop_frag_layout(Context& ctx) {
  int& known = ctx.coop_frag_probe();
  if (known < 0) {
    auto r = probe_coop_layout(ctx);
    if (!r.ok()) std::fprintf(stderr, "vulkan: cooperative-matrix layout probe: %s\n", r.error().c_str());
    known = r.ok() && *r ? 1 : 0;
    if (r.ok() && !*r)
      std::fprintf(stderr, "vulkan: cooperative matrices lay out their elements otherwise: mmq4_frag off\n");
  }
  return known == 1;
}

// Whether a q4 product of n tokens takes mmq4_coop's AFRAG variant: batched decode (5-32 tokens),
// f16 scales (MLX's usual), groups of whole 32-column units, whole 128-column steps (at least 2,
// for the split-K epilogue), and the fragment layout the shader assumes.
bool frag_applies(Context& ctx, int64_t n, const GpuWeight& w, ScaleType st) {
  return !frag_env().off && n >= coop_q4_min_tokens() && n <= 32 && st == kStF16 && w.group_size % 32 == 0 &&
         w.words_per_row() % 16 == 0 && w.words_per_row() >= 32 && coop_frag_layout(ctx);
}

int64_t elem_bytes(DType t) { return t == DType::f32 ? 4 : 2; }

// The matvec reads whole 32-bit weight words per row and x with vec4 (q4/q8) or vec2 (f16/bf16)
// loads, so rows must start on a word and x rows on the load size.
bool matvec_fits(int64_t ldx, const GpuWeight& w) {
  if (w.quantized()) return ldx % 4 == 0;
  if (w.dtype == DType::f32) return true;
  return w.cols % 2 == 0 && ldx % 2 == 0;
}

bool coopmat_usable(const Context& ctx) {
  return ctx.coopmat() && ctx.info().min_subgroup_size == 32 && ctx.info().max_subgroup_size == 32 &&
         ctx.info().max_storage_buffers >= 10;
}

// mmq4_coop's rows per tile at n tokens: 128 for prefill, 64 for batched decode (or the override).
// The PENSIEVE_VK_COOP override applies to the token blocks of its class: bn <= 64 tunes batched
// decode, bn > 64 prefill (a split meant for decode would not fit prefill's scratch); without bm, a
// split applies to decode.
bool coop_env_applies(int64_t n) {
  const CoopTuning& e = coop_env();
  return e.bm ? (n > 64) == (e.bn > 64) : n <= 64;
}
uint32_t coop_bm(int64_t n) { return coop_env().bm && coop_env_applies(n) ? coop_env().bm : n > 64 ? 128 : 64; }
// The norm fusion's sums of squares per token, for an output of `rows` rows: one per 64 rows
// (every tile height is a multiple of 64).
uint64_t ssq_groups(int64_t rows) { return detail::ceil_div(uint64_t(rows), 64); }

// Lanes per row group of the q4 kernel, and whether its subgroup variant applies: the subgroup
// reduction needs LPR = the subgroup size, so only devices with one fixed size use it.
struct Mvq4Lanes {
  uint32_t lpr;
  bool sg;
};
Mvq4Lanes mvq4_lanes(const Context& ctx) {
  const DeviceInfo& d = ctx.info();
  const uint32_t s = d.subgroup_size;
  if (ctx.subgroups() && d.subgroup_shuffle && d.min_subgroup_size == d.max_subgroup_size && s >= 4 && s <= 128 &&
      (s & (s - 1)) == 0)
    return {s, true};
  return {16, false};
}

// The q4 matvec (shaders/mvq4.comp): see that file for the mapping. Defaults: eight row groups per
// workgroup (WG = 8 LPR, at most 256: 256 invocations on NVIDIA); R = 4 rows per invocation for 1-2 tokens, 2
// for more (accumulators stay in registers); token blocks of 1, 2, 4 or 8. WG and LPR depend only
// on the device (and the override), never on n: a token's result does not depend on the batch.
bool mvq4_applies(const GpuWeight& w) { return w.dtype == DType::q4 && w.words_per_row() % 4 == 0; }

// Why the rope fusion cannot run for this weight and device ("" if it can).
const char* rope_unfusable(const Context& ctx, const GpuWeight& w, const RopeStoreFusion& r) {
  const GpuKv& kv = r.kv;
  const int hd = kv.head_dim, half = r.rot_dim / 2;
  if (!mvq4_lanes(ctx).sg || ctx.info().max_storage_buffers < 11) return "device";
  if (hd <= 0 || hd % 4 || half % 2 || half * 2 > hd || (hd - 2 * half) % 4) return "head_dim / rot_dim";
  if (kv.n_kv_heads <= 0 || r.n_heads % kv.n_kv_heads || w.rows != int64_t(r.n_heads + 2 * kv.n_kv_heads) * hd)
    return "rows are not q | k | v heads";
  if (kv.dtype != DType::f16 && kv.dtype != DType::f32) return "KV dtype";
  if (kv.dtype == DType::f16 && (kv.block_stride % 2 || kv.head_stride % 2)) return "KV strides";
  return "";
}

// The int8 dot-product variant (mvq4.comp IDOT): fast precision, on devices with
// VK_KHR_shader_integer_dot_product and the subgroup variant; tuning kernel 2 forces the f32
// variant, 3 the int8 one (where it can run).
bool mvq4_dot(const Context& ctx, Precision p, const MatvecTuning& tune) {
  if (!ctx.info().integer_dot_product || !mvq4_lanes(ctx).sg) return false;
  return tune.kernel == 3 || (p == Precision::fast && tune.kernel != 2);
}

Status matvec_q4(CommandList& cl, const BufferSlice& y, int64_t ldy, const BufferSlice& x, int64_t ldx, int64_t n,
                 const GpuWeight& w, ScaleType st, Precision p, const MatvecTuning& tune, const MatmulFusion& f) {
  Context& ctx = cl.context();
  const Mvq4Lanes ln = mvq4_lanes(ctx);
  const bool dot = mvq4_dot(ctx, p, tune);
  // Lanes per row group: the subgroup by default; a tuning override may take a power of two below
  // it (subgroup variant) or any power of two (plain variant).
  const uint32_t lpr = tune.unit_words ? tune.unit_words : ln.lpr;
  if ((lpr & (lpr - 1)) || lpr < 2 || (ln.sg && lpr > ln.lpr))
    return errorf("vulkan matvec (q4): %u lanes per row", lpr);
  const uint32_t mode = f.rope ? 2 : f.silu_pairs ? 1 : 0;
  if (mode) {
    if (w.rows % 4) return errorf("vulkan matvec (q4): fused output ops need a multiple of 4 rows");
    if (f.accumulate || (f.rope && f.silu_pairs) || f.silu_offset > 0)
      return errorf("vulkan matvec (q4): incompatible fusions");
    if (f.rope) {
      if (const char* why = rope_unfusable(ctx, w, *f.rope); *why)
        return errorf("vulkan matvec (q4): RoPE fusion unavailable (%s)", why);
      PENSIEVE_TRY(detail::need("matmul", "cos", f.rope->cos, uint64_t(n * (f.rope->rot_dim / 2)) * 4));
      PENSIEVE_TRY(detail::need("matmul", "sin", f.rope->sin, uint64_t(n * (f.rope->rot_dim / 2)) * 4));
      PENSIEVE_TRY(detail::need("matmul", "slots", f.rope->slots, uint64_t(n) * 4));
    }
  }
  // One token per workgroup by default: on the H200, 4-token blocks ran qkv 3.6x slower than 4
  // one-token dispatches of the same weights (the later token blocks read them from L2), batched
  // decode of 4 sequences 212 vs 698 tok/s (bench/RESULTS.md).
  const uint32_t nt = tune.tokens ? tune.tokens : 1;
  // 8 subgroups per workgroup; the RoPE-fused qkv projection 6: Phi-3's 9,216 rows then make 384
  // workgroups of 24 rows, one wave at 3 per multiprocessor on a 132-SM H100 / H200, instead of 288
  // of 32 rows at 2 per multiprocessor, 1.09 waves (measured on the H200: qkv 0.66 -> 0.54 ms per
  // decode step; gate_up, down and o_proj were slower at 6, bench/RESULTS.md). The int8 variant
  // stages a quarter of the bytes and takes 16 subgroups (at most 512 invocations) but for the
  // RoPE-fused qkv: one staging of x serves twice the rows (H200, one token: gate_up 0.546 -> 0.447
  // ms per step, down 0.378 -> 0.358, o_proj 0.243 -> 0.231; qkv slower, 0.407 -> 0.453).
  const uint32_t wg = tune.wg     ? tune.wg
                      : !ln.sg    ? 64
                      : f.rope    ? std::min<uint32_t>(6 * lpr, 256)
                      : dot       ? std::min<uint32_t>(16 * lpr, 512)
                                  : std::min<uint32_t>(8 * lpr, 256);
  uint32_t r = mode ? 4 : tune.rows ? tune.rows : nt <= 2 ? 4 : 2;
  // Short outputs (o_proj: 3072 rows) take fewer rows per invocation so the grid still
  // covers the GPU: 96 workgroups of 32 rows leave most of an H100's 132 multiprocessors idle.
  // (R does not change any output's arithmetic, see the shader.)
  // Not for long rows: each workgroup stages all of x (down_proj: 32 KiB), measured slower.
  while (!mode && !tune.rows && r > 1 && w.cols <= 4096 && detail::ceil_div(uint64_t(w.rows), uint64_t(wg / lpr) * r) < 264)
    r /= 2;
  // The int8 variant stages a quarter of the bytes (down_proj: 10 KiB), so long rows of one token
  // take 1 row per invocation too: Phi-3's down 96 -> 384 workgroups, 0.43 -> 0.38 ms per decode
  // step on the H200 (with 4 tokens R = 4 stays best: 0.54 vs 0.84 ms).
  if (dot && !mode && !tune.rows && n == 1 && w.cols > 4096) r = 1;
  if (nt < 1 || nt > 8 || (r != 1 && r != 2 && r != 4) || r * nt > 32 || wg < lpr || wg % lpr || wg % 8 ||
      wg > ctx.info().max_workgroup_invocations)
    return errorf("vulkan matvec (q4): bad tuning (wg %u, rows %u, tokens %u, lanes %u)", wg, r, nt, lpr);
  const uint64_t units = uint64_t(w.words_per_row()) / 4;
  // Shared memory: x tiles of NT tokens x TU units x 128 bytes (int8: 40 bytes), plus the
  // reduction scratch.
  const uint64_t red = ln.sg ? uint64_t(wg / lpr) * nt * 4 : uint64_t(r * nt + nt) * wg * 4;
  const uint64_t limit = std::min<uint64_t>(ctx.info().max_shared_memory, 48 * 1024);
  if (limit <= red + 1024) return errorf("vulkan matvec (q4): not enough shared memory");
  const uint64_t fit = (limit - red - 512) / (uint64_t(nt) * (dot ? 40 : 128));  // units per tile that fit
  uint64_t tu = units;
  if (units > fit) {
    // Tiles start at multiples of WG vec4s, so every tile maps x vec4 v to invocation v mod WG
    // (the order of the rmsnorm's sum of squares is then the same as with one tile).
    const uint64_t step = std::max<uint64_t>(wg / 8, 1);
    tu = fit / step * step;
    if (tu == 0) return errorf("vulkan matvec (q4): %u tokens do not fit shared memory", nt);
  }
  Mvq4Push pc{};
  MatvecPush& mp = pc.mv;
  mp.rows = uint32_t(w.rows);
  mp.cols = uint32_t(w.cols);
  mp.n = uint32_t(n);
  mp.ldx = uint32_t(ldx);
  mp.ldy = uint32_t(ldy);
  mp.row_words = uint32_t(w.words_per_row());
  mp.groups_per_row = uint32_t(w.cols / w.group_size);
  mp.ntb = uint32_t(detail::ceil_div(uint64_t(n), nt));
  mp.xoff = uint32_t(std::max<int64_t>(f.silu_offset, 0));
  mp.eps = f.eps;
  pc.ffn = uint32_t(w.rows / 2);
  uint32_t kv_f16 = 1;
  if (f.rope) {
    const GpuKv& kv = f.rope->kv;
    pc.n_heads = uint32_t(f.rope->n_heads);
    pc.n_kv_heads = uint32_t(kv.n_kv_heads);
    pc.head_dim = uint32_t(kv.head_dim);
    pc.half_rot = uint32_t(f.rope->rot_dim / 2);
    pc.head_stride = uint32_t(kv.head_stride);
    kv_f16 = kv.dtype == DType::f16 ? 1 : 0;
  }
  const uint32_t xmode = f.norm.valid() ? 1 : f.silu_offset > 0 ? 2 : 0;
  const KernelDesc& desc =
      dot ? (f.rope ? kMvq4RopeDotSg : kMvq4DotSg) : f.rope ? kMvq4RopeSg : ln.sg ? kMvq4Sg : kMvq4;
  auto pipe = ctx.pipelines().get(desc, {wg, r, nt, lpr, uint32_t(st), uint32_t(w.group_size), uint32_t(tu), xmode,
                                         f.accumulate ? 1u : 0u, mode, kv_f16});
  if (!pipe.ok()) return std::move(pipe).take_error();
  const uint64_t rows_per_wg = uint64_t(wg / lpr) * r;
  uint32_t gx, gz;
  PENSIEVE_TRY(detail::fold_grid(ctx, detail::ceil_div(uint64_t(w.rows), rows_per_wg) * mp.ntb, &gx, &gz));
  const BufferSlice& sc = w.scales;
  const BufferSlice& bi = w.biases;
  const BufferSlice& g = f.norm.valid() ? f.norm : x;
  if (f.rope) {
    const RopeStoreFusion& rs = *f.rope;
    return cl.dispatch(**pipe, {w.data, sc, bi, x, y, g, rs.cos, rs.sin, rs.slots, rs.kv.k, rs.kv.v}, pc, gx, 1, gz);
  }
  return cl.dispatch(**pipe, {w.data, sc, bi, x, y, g}, pc, gx, 1, gz);
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

int64_t coop_ssq_row(int64_t rows) { return int64_t(ssq_groups(rows) + 3) / 4 * 4; }
bool coop_epilogue_fits(const GpuWeight& w) {
  return w.dtype == DType::q4 && w.words_per_row() % 4 == 0 && w.words_per_row() >= 8;
}

const char* matmul_kernel(const Context& ctx, int64_t ldx, int64_t n, const GpuWeight& w, Precision p) {
  if (p == Precision::fast && coopmat_usable(ctx) && w.dtype == DType::q4 && w.words_per_row() % 4 == 0 &&
      ldx % 4 == 0 && n >= coop_q4_min_tokens())
    return "mmq4_coop";
  if (p == Precision::fast && n >= kCoopmatMinTokens && coopmat_usable(ctx)) return "matmul_coopmat";
  if (matvec_fits(ldx, w)) return "matvec";
  return "matmul";
}

bool matmul_fuses(const Context& ctx, int64_t ldx, int64_t n, const GpuWeight& w, Precision p, bool rope) {
  if (std::string(matmul_kernel(ctx, ldx, n, w, p)) != "matvec" || !mvq4_applies(w) || w.rows % 4) return false;
  if (!rope) return true;
  return mvq4_lanes(ctx).sg && ctx.info().max_storage_buffers >= 11;
}

// PENSIEVE_VK_MATVEC="wg,rows,tokens,unit_words,kernel" (0 = default) overrides the matvec's defaults:
// for tuning runs on a new GPU without a rebuild.
MatvecTuning env_tuning() {
  static const MatvecTuning t = [] {
    MatvecTuning r;
    if (const char* e = std::getenv("PENSIEVE_VK_MATVEC"))
      std::sscanf(e, "%u,%u,%u,%u,%u", &r.wg, &r.rows, &r.tokens, &r.unit_words, &r.kernel);
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
  if (ldx < w.cols || ldy < (f.silu_pairs ? w.rows / 2 : w.rows))
    return errorf("vulkan matmul: ldx %lld / ldy %lld smaller than cols %lld / rows %lld", (long long)ldx,
                  (long long)ldy, (long long)w.cols, (long long)w.rows);
  if (!detail::fits_u32(n * ldx) || !detail::fits_u32(n * ldy) || !detail::fits_u32(w.rows * w.cols))
    return errorf("vulkan matmul: [%lld x %lld] x [%lld tokens] exceeds 32-bit indexing", (long long)w.rows,
                  (long long)w.cols, (long long)n);
  const bool fused = f.norm.valid() || f.silu_offset > 0 || f.accumulate || f.silu_pairs || f.rope;
  const bool bf16 = f.x_bf16 || f.y_bf16 || f.xg.valid();
  const std::string kern = matmul_kernel(ctx, ldx, n, w, p);
  // mmq4_coop: accumulate (+ ssq: the norm fusion's producer) or norm with ssq (its consumer), and
  // silu_pairs where it does not accumulate.
  const bool coop_fusion = kern == "mmq4_coop" && f.silu_offset <= 0 && !f.rope &&
                           (f.norm.valid() ? f.ssq.valid() && !f.accumulate : !f.ssq.valid() || f.accumulate) &&
                           (!f.silu_pairs || (!f.accumulate && w.rows % 8 == 0));
  if (fused && kern != "matvec" && !coop_fusion)
    return errorf("vulkan matmul: fused input/output ops need the matvec kernel (mmq4_coop: accumulate, norm with "
                  "ssq, silu_pairs)");
  if (f.ssq.valid() && kern != "mmq4_coop") return errorf("vulkan matmul: the ssq norm fusion needs mmq4_coop");
  if (bf16 && (kern != "mmq4_coop" || (f.x_bf16 && ldx % 8) ||
               (f.y_bf16 && (!f.silu_pairs || ldy % 4 || (w.rows / 2) % 4)) ||
               (f.xg.valid() && (!f.accumulate || !f.ssq.valid() || w.rows % 4 || ldy % 4))))
    return errorf("vulkan matmul: bf16 activations need mmq4_coop (x: ldx a multiple of 8; y: silu pairs, "
                  "multiples of 4; xg: a producer of the norm fusion, rows a multiple of 4)");
  if (f.norm.valid() && f.silu_offset > 0) return errorf("vulkan matmul: rmsnorm and silu_mul fusions exclude each other");
  if (f.silu_offset > 0 && (w.quantized() ? f.silu_offset % 4 : 0))
    return errorf("vulkan matmul: silu_mul offset %lld not a multiple of 4", (long long)f.silu_offset);
  if (f.norm.valid()) PENSIEVE_TRY(detail::need("matmul", "norm weight", f.norm, uint64_t(w.cols) * 4));
  // The rows the sums of squares are over: y's (producer) or x's (consumer).
  const int64_t ssq_rows = f.accumulate ? w.rows : w.cols;
  if (f.ssq.valid()) PENSIEVE_TRY(detail::need("matmul", "ssq", f.ssq, uint64_t(n * coop_ssq_row(ssq_rows)) * 4));
  const uint64_t xb = f.x_bf16 ? 2 : 4, yb = f.y_bf16 ? 2 : 4;
  PENSIEVE_TRY(detail::need("matmul", "x", x, uint64_t((n - 1) * ldx + w.cols + std::max<int64_t>(f.silu_offset, 0)) * xb));
  PENSIEVE_TRY(detail::need("matmul", "y", y, uint64_t((n - 1) * ldy + (f.silu_pairs ? w.rows / 2 : w.rows)) * yb));
  if (f.xg.valid()) {
    PENSIEVE_TRY(detail::need("matmul", "xg", f.xg, uint64_t((n - 1) * ldy + w.rows) * 2));
    PENSIEVE_TRY(detail::need("matmul", "xg norm weight", f.xg_norm, uint64_t(w.rows) * 4));
  }
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
    if (!tune.kernel) tune.kernel = env.kernel;
    if (mvq4_applies(w) && (tune.kernel != 1 || f.silu_pairs || f.rope))
      return matvec_q4(cl, y, ldy, x, ldx, n, w, st, p, tune, f);
    if (f.silu_pairs || f.rope) return errorf("vulkan matmul: fused output ops need the q4 matvec (see matmul_fuses)");
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
  if (which == "mmq4_coop") {
    const uint64_t units = uint64_t(w.words_per_row()) / 4;
    // The sums of squares (producer) and silu pairs are written by the split-K sum: >= 2 steps.
    const bool ssq_out = f.ssq.valid() && f.accumulate;
    pc.ssq_tiles = uint32_t(f.ssq.valid() ? ssq_groups(ssq_rows) : 0);
    pc.eps = f.eps;
    // Records the tiles of bm rows x bn tokens, grid y = token blocks x split.
    auto launch = [&](const Pipeline& pipe, uint32_t bm, uint32_t bn, uint32_t split) -> Status {
      BufferSlice partials = y, counters = y;  // bound but unused without a split
      if (split > 1) {
        auto sk = ctx.splitk_scratch();
        if (!sk.ok()) return std::move(sk).take_error();
        partials = sk->partials;
        counters = sk->counters;
      }
      uint32_t gx, gz;
      PENSIEVE_TRY(detail::fold_grid(ctx, detail::ceil_div(uint64_t(w.rows), bm), &gx, &gz));
      uint64_t gy = detail::ceil_div(uint64_t(n), bn) * split;
      if (gy > ctx.info().max_workgroup_count[1])
        return errorf("vulkan matmul: %lld tokens exceed the grid", (long long)n);
      return cl.dispatch(pipe, {w.data, sc, bi, x, y, partials, counters, f.ssq.valid() ? f.ssq : y,
                                f.norm.valid() ? f.norm : f.xg.valid() ? f.xg_norm : x, f.xg.valid() ? f.xg : y},
                         pc, gx, uint32_t(gy), gz);
    };
    auto scratch_fits = [](uint64_t tiles, uint64_t split, uint64_t bm, uint64_t bn) {
      return split == 1 ||
             (tiles <= Context::kSplitKCounters && tiles * split * bm * bn * 4 <= Context::kSplitKPartialBytes);
    };

    if (frag_applies(ctx, n, w, st)) {
      // Batched decode, weight fragments in registers (mmq4_coop.comp, AFRAG): nw subgroups of rf
      // 16-row fragments each, tiles of 16 or 32 tokens, 128-column steps (ku 4), x through shared
      // memory a step at a time; K split until the grid has about `target` workgroups.
      // Defaults measured on the H200 (bench/RESULTS.md, phase 14): eight subgroups of one
      // fragment each and one register set (87-96 registers; deeper sets or two fragments per
      // subgroup cost more in occupancy than they hide), and about 3 workgroups per
      // multiprocessor with 8- or 16-token tiles, 2.5 with 24 (65-69 registers) and 1.5 with 32.
      const FragTuning& fe = frag_env();
      const uint32_t nw = fe.nw ? fe.nw : 8, rf = fe.rf ? fe.rf : 1, depth = fe.depth ? fe.depth : 1;
      // Tokens per tile: 16 or 32 (16 x 16 fragments), or 8 and 24 where the device also has 16 x 8
      // ones (N8: less of the tile left empty at 5-8 and 17-24 tokens).
      const bool n8 = ctx.info().coopmat_nv_f16_16x8x16 && !fe.no8 && ((n > 16 && n <= 24) || n <= 8);
      const uint32_t wg = 32 * nw, bm = 16 * rf * nw, bn = n8 ? (n <= 8 ? 8 : 24) : n <= 16 ? 16 : 32;
      const uint64_t steps = units / 4;
      const uint64_t tiles = detail::ceil_div(uint64_t(w.rows), bm) * detail::ceil_div(uint64_t(n), bn);
      // Shared memory: two x steps of bn rows x 17 uvec4, the flags, inv_rms, the split-1 scratch.
      const uint64_t smem = uint64_t(2) * bn * 17 * 16 + 8 + uint64_t(f.norm.valid() ? bn : 1) * 4 + nw * 1024ull;
      const uint64_t sms = ctx.info().sm_count ? ctx.info().sm_count : 132;
      const uint64_t target = fe.wgs ? fe.wgs : bn <= 16 ? 3 * sms : bn <= 24 ? sms * 5 / 2 : sms * 3 / 2;
      uint64_t split = fe.split ? fe.split : detail::ceil_div(target, tiles);
      // PENSIEVE_VK_FRAG_SPLITS="gate_up,qkv,o_proj,down" fixes each projection's split (tuning
      // runs; 0 keeps the rule): told apart by their fusions and K.
      static const std::array<uint32_t, 4> ps = [] {
        std::array<uint32_t, 4> v{};
        if (const char* e = std::getenv("PENSIEVE_VK_FRAG_SPLITS"))
          std::sscanf(e, "%u,%u,%u,%u", &v[0], &v[1], &v[2], &v[3]);
        return v;
      }();
      const int kind = f.silu_pairs ? 0 : f.norm.valid() ? 1 : f.accumulate ? (steps <= 32 ? 2 : 3) : -1;
      if (kind >= 0 && ps[kind]) split = ps[kind];
      split = std::clamp<uint64_t>(split, (ssq_out || f.silu_pairs || n8) ? 2 : 1, std::min<uint64_t>(steps, 16));
      if (nw < 1 || nw > 8 || rf < 1 || rf > 2 || depth < 1 || depth > 4 || bn * 16 > 4 * wg ||
          smem > ctx.info().max_shared_memory || !scratch_fits(tiles, split, bm, bn))
        return errorf("vulkan matmul (mmq4_frag): bad tiles (nw %u, rf %u, depth %u, split %llu of %llu steps)", nw,
                      rf, depth, (unsigned long long)split, (unsigned long long)steps);
      auto pipe = ctx.pipelines().get(n8 ? kMmq4Frag8 : kMmq4Frag,
                                      {wg, bm, bn, nw, uint32_t(st), group, f.accumulate ? 1u : 0u, 4u, uint32_t(split),
                                       1u, depth, f.norm.valid() ? 1u : 0u, ssq_out ? 1u : 0u, f.silu_pairs ? 1u : 0u,
                                       f.x_bf16 ? 1u : 0u, f.y_bf16 ? 1u : 0u, f.xg.valid() ? 1u : 0u});
      if (!pipe.ok()) return std::move(pipe).take_error();
      return launch(**pipe, bm, bn, uint32_t(split));
    }

    // Tiles by token count: small blocks (batched decode) take 64-row tiles of 16/32/64 tokens,
    // prefill 128 x 128. Small grids split K over several workgroups (see the shader).
    const CoopTuning& e = coop_env();
    // Small blocks: each row's 2 units of a step are read by neighbouring lanes (rmap 1) and the
    // loads run two steps ahead (depth 2): measured on the H200, -10% time at 16-32 tokens
    // (bench/RESULTS.md); rmap 1 is also +5% at pp512. Prefill keeps one register set (its 181
    // registers are the limit).
    uint32_t bm = coop_bm(n), bn = 16, wg = 128, wm = 4, ku = 2, split = 0, rmap = 1, depth = 2;
    if (n > 64) {
      bn = 128, wg = 256, wm = 2, depth = 1;
    } else if (n > 32) {
      bn = 64, wm = 2;
    } else if (n > 16) {
      bn = 32;
    }
    // At 17-32 tokens the norm consumers reading bf16 x (qkv, gate_up; MatmulFusion::x_bf16) have
    // little to load per step: one register set leaves them 82 registers instead of 100 (5
    // workgroups per multiprocessor instead of 4), measured faster on the H200 (qkv 1.29 -> 1.12
    // ms per 32-sequence step with its split of 5 below; bench/RESULTS.md, phase 10). At 5-16
    // tokens it was ~1% slower, so two sets stay there.
    if (n > 16 && n <= 32 && f.norm.valid() && f.x_bf16) depth = 1;
    const bool tuned = coop_env_applies(n);
    if (e.bm && tuned) bn = e.bn, wg = e.wg, wm = e.wm;
    if (e.ku && tuned) ku = e.ku;
    if (e.map && tuned) rmap = e.map - 1;
    if (e.depth && tuned) depth = e.depth;
    while (units % ku) ku /= 2;
    // silu pairs without a split need an even number of 16-row fragments per subgroup (prefill's
    // 64); otherwise the split-K sum pairs the rows.
    const bool silu_in_tile = f.silu_pairs && (bm / std::max<uint32_t>(wm, 1)) % 32 == 0;
    const bool in_sum = ssq_out || (f.silu_pairs && !silu_in_tile);
    if (in_sum && !coop_epilogue_fits(w))
      return errorf("vulkan matmul: rows of %lld values are too short for the ssq / silu fusions", (long long)w.cols);
    while (in_sum && ku > 1 && units / ku < 2) ku /= 2;
    const uint64_t tiles = detail::ceil_div(uint64_t(w.rows), bm) * detail::ceil_div(uint64_t(n), bn);
    const uint64_t steps = units / ku;
    if (e.split && tuned) {
      split = e.split;
    } else {
      // Enough workgroups to fill the GPU (prefill: whole waves, above; without the multiprocessor
      // count, 264), at least 2 steps each, and within the scratch.
      const uint32_t sms = ctx.info().sm_count;
      uint64_t want = n > 64 && sms ? prefill_split(tiles, steps, sms)
                                    : detail::ceil_div(n > 64 ? 264 : coop_target_workgroups(n), tiles);
      // Measured per fused projection on the H200 (Phi-3-mini, splits 2-16 swept end to end,
      // bench/RESULTS.md): at 17-32 tokens gate_up (silu pairs) is fastest at 3, o_proj / down
      // (the residual adds) at 8 and qkv with bf16 x (one register set, above) at 5; at 5-16
      // tokens qkv (norm, no silu) at 3. The grid's waves (the
      // workgroups a multiprocessor holds depend on each variant's registers) make this uneven.
      if (!coop_wgs_env() && n <= 32 && n > 4) {
        // PENSIEVE_VK_COOP_SPLITS="silu,acc,norm" overrides the three 17-32-token choices (0: keep).
        static const std::array<uint32_t, 3> o = [] {
          std::array<uint32_t, 3> v{};
          if (const char* e = std::getenv("PENSIEVE_VK_COOP_SPLITS")) std::sscanf(e, "%u,%u,%u", &v[0], &v[1], &v[2]);
          return v;
        }();
        if (n > 16 && f.silu_pairs) want = o[0] ? o[0] : 3;
        else if (n > 16 && f.accumulate) want = o[1] ? o[1] : 8;
        else if (n > 16 && f.norm.valid() && (o[2] || f.x_bf16)) want = o[2] ? o[2] : 5;
        else if (n <= 16 && f.norm.valid() && !f.silu_pairs) want = 3;
      }
      const uint64_t by_scratch = Context::kSplitKPartialBytes / (tiles * bm * bn * 4);
      split = uint32_t(std::clamp<uint64_t>(std::min({want, steps / 2, by_scratch, uint64_t(16)}), 1, 16));
      if (tiles > Context::kSplitKCounters) split = 1;
    }
    if (in_sum && split < 2) split = 2;
    const uint32_t nw = wg / 32, wn = wm ? nw / std::max<uint32_t>(wm, 1) : 0;
    const uint64_t smem = uint64_t(bm + bn) * (ku * 4 + 1) * 16 + (split == 1 ? uint64_t(nw) * 1024 : 4) + 4;
    if (wg % 32 || wg > 256 || !wm || nw % wm || bm % (16 * wm) || bn % (16 * wn) || bm / wm > 64 || bn / wn > 64 ||
        (ku != 1 && ku != 2 && ku != 4 && ku != 8) || bm * ku > 4 * wg || bn * ku > wg || rmap > 1 || depth < 1 ||
        depth > 2 || smem > ctx.info().max_shared_memory || split < 1 || split > steps ||
        !scratch_fits(tiles, split, bm, bn))
      return errorf("vulkan matmul (mmq4_coop): bad tiles (bm %u, bn %u, wg %u, wm %u, ku %u, split %u)", bm, bn, wg,
                    wm, ku, split);
    auto pipe = ctx.pipelines().get(kMmq4Coop, {wg, bm, bn, wm, uint32_t(st), group, f.accumulate ? 1u : 0u, ku, split,
                                                rmap, depth, f.norm.valid() ? 1u : 0u, ssq_out ? 1u : 0u,
                                                f.silu_pairs ? 1u : 0u, f.x_bf16 ? 1u : 0u, f.y_bf16 ? 1u : 0u,
                                                f.xg.valid() ? 1u : 0u});
    if (!pipe.ok()) return std::move(pipe).take_error();
    return launch(**pipe, bm, bn, split);
  }
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
