// attention: split-K decode (shaders/attn_decode.comp + attn_combine.comp) or tiled prefill
// (shaders/attn_prefill.comp), chosen by the largest query count per sequence; flash_attention:
// the tensor-core prefill (shaders/attn_flash.comp, attn_flash_wide.comp).
#include <cstdio>
#include <cstdlib>

#include "kernels/vulkan/ops_util.h"

namespace pensieve::vulkan::ops {
namespace {

struct DecodePush {
  uint32_t n_heads, group, block_size, block_stride, head_stride, q_stride, out_stride;
  uint32_t window;
  float scale;
  uint32_t n_splits, split_len, qmax;
  uint32_t half_rot;  // attn_dec4 with the RoPE fusion only
};
static_assert(sizeof(DecodePush) <= 128);
// Bindings: 0 q, 1 k, 2 v, 3 meta, 4 tables, 5 out (written), 6 partials (written).
const KernelDesc kDecode{"attn_decode", 7, sizeof(DecodePush), (1u << 5) | (1u << 6), true, false};
// The same op with 16-byte K/V loads (same push constants); its RoPE fusion adds 7 cos, 8 sin,
// 9 slots, 10 k and 11 v (written; without the fusion, stand-ins the shader does not touch).
const KernelDesc kDecode4{"attn_dec4", 12, sizeof(DecodePush), (1u << 5) | (1u << 6) | (1u << 10) | (1u << 11), true,
                          false};

struct CombinePush {
  uint32_t n_heads, out_stride, n_splits, qmax;
};
// Bindings: 0 partials, 1 meta, 2 out (written).
const KernelDesc kCombine{"attn_combine", 3, sizeof(CombinePush), 1u << 2, false, false};

struct PrefillPush {
  uint32_t n_heads, group, block_size, block_stride, head_stride, q_stride, out_stride;
  uint32_t window;
  float scale;
};
static_assert(sizeof(PrefillPush) <= 128);
// Bindings: 0 q, 1 k, 2 v, 3 meta, 4 tables, 5 out (written).
const KernelDesc kPrefill{"attn_prefill", 6, sizeof(PrefillPush), 1u << 5, false, false};
// Tensor-core prefill (same bindings and push constants).
const KernelDesc kFlash{"attn_flash", 6, sizeof(PrefillPush), 1u << 5, false, true};
// The same with wide query tiles sharing staged K / V blocks (same bindings and push constants).
const KernelDesc kFlashWide{"attn_flash_wide", 6, sizeof(PrefillPush), 1u << 5, false, true};

constexpr uint32_t kWg = 128;

// attn_dec4's launch: invocations (= keys per tile), K loads in flight per invocation, V rows in
// flight per key lane. Measured on the H200 (bench/RESULTS.md, pensieve-vulkan-bench --attention):
// 12 K loads (a whole Phi-3 row) and 16 V rows (all of a key lane's, 13 at head_dim 96) in flight
// cut 32 sequences x 256 keys from 43 to 35 us and 20 x 4096 from 265 to 253 us against 4 and 4;
// issuing the next tile's K loads before the current tile's V (more registers) and 64- or
// 256-key tiles were each better at some batch sizes and worse at others.
// PENSIEVE_VK_ATTN="wg,kb,vb" overrides them for tuning runs (fixed per process: the tile sets the
// order of the softmax sums, so it must not change between steps).
struct Dec4Shape {
  uint32_t wg = kWg, kb = 12, vb = 16;
  bool overridden = false;
};
const Dec4Shape& dec4_shape() {
  static const Dec4Shape s = [] {
    Dec4Shape r;
    if (const char* e = std::getenv("PENSIEVE_VK_ATTN")) {
      Dec4Shape t;
      if (std::sscanf(e, "%u,%u,%u", &t.wg, &t.kb, &t.vb) == 3 && (t.wg == 64 || t.wg == 128 || t.wg == 256) &&
          t.kb >= 1 && t.kb <= 16 && t.vb >= 1 && t.vb <= 16) {
        r = t;
        r.overridden = true;
      }
    }
    return r;
  }();
  return s;
}
// With the RoPE fusion (batched decode), grids of up to 7 workgroups per multiprocessor take 8 K
// loads and 8 V rows in flight instead: the kernel then needs 72 registers instead of 95 on the
// H200, 7 workgroups fit a multiprocessor instead of 5, and such a grid runs in one wave. Measured
// (bench/RESULTS.md phase 17): 24 sequences x 32 heads 4.01 -> 3.80 ms per step, 28: 4.73 -> 4.52,
// 20: 3.71 -> 3.69, 8-16 equal or better; at 32 (1,024 workgroups, two waves either way) 4.82 ->
// 4.88, so larger grids keep the deeper loads. Loads in flight only schedule: the sums are the same.
Dec4Shape dec4_rope_shape(const Context& ctx, uint64_t workgroups) {
  Dec4Shape s = dec4_shape();
  const uint64_t sms = ctx.info().sm_count;
  if (!s.overridden && sms > 0 && workgroups <= 7 * sms) s.kb = s.vb = 8;
  return s;
}
// Sequences with at most this many queries take the decode kernel (one workgroup per query row).
constexpr int64_t kDecodeMaxQ = 4;

struct DecodePlan {
  uint32_t n_splits = 1, split_len = 0;
};

// Enough workgroups to fill a large GPU (~1000), keys per split a multiple of the tile (kWg) and
// at least 256 so the combine pass stays small next to the key reads.
DecodePlan plan_decode(const GpuSeqs& s, const AttnParams& p) {
  DecodePlan d;
  if (s.split_len > 0) {
    d.split_len = uint32_t(detail::ceil_div(s.split_len, kWg) * kWg);
    d.n_splits = uint32_t(std::max<uint64_t>(detail::ceil_div(uint64_t(std::max<int64_t>(s.max_kv_len, 1)), d.split_len), 1));
    return d;
  }
  uint64_t rows = uint64_t(s.n_seqs) * uint64_t(s.max_n_q) * uint64_t(p.n_heads);
  uint64_t len = uint64_t(std::max<int64_t>(s.max_kv_len, 1));
  uint64_t want = rows >= 1024 ? 1 : detail::ceil_div(1024, rows);
  uint64_t max_splits = detail::ceil_div(len, 256);
  d.n_splits = uint32_t(std::clamp<uint64_t>(want, 1, std::max<uint64_t>(max_splits, 1)));
  d.split_len = uint32_t(detail::ceil_div(detail::ceil_div(len, d.n_splits), kWg) * kWg);
  d.n_splits = uint32_t(detail::ceil_div(len, d.split_len));
  return d;
}

Status check(const Context& ctx, const GpuSeqs& s, const GpuKv& kv, const AttnParams& p) {
  const int hd = kv.head_dim;
  if (hd <= 0 || hd > int(2 * kWg) || hd > kMaxHeadDim)
    return errorf("vulkan attention: head_dim %d outside 1..%d", hd, int(2 * kWg));
  if (kv.n_kv_heads <= 0 || p.n_heads <= 0 || p.n_heads % kv.n_kv_heads)
    return errorf("vulkan attention: %d query heads not a multiple of %d kv heads", p.n_heads, kv.n_kv_heads);
  if (kv.dtype != DType::f16 && kv.dtype != DType::f32)
    return errorf("vulkan attention: KV dtype %s (f16 or f32 expected)", dtype_name(kv.dtype));
  if (kv.block_size <= 0 || s.n_seqs < 0 || s.max_n_q < 0 || s.max_kv_len < s.max_n_q)
    return errorf("vulkan attention: bad block size or sequence bounds");
  // f16 pairs are read as 32-bit words: offsets must be even (they are multiples of these).
  if (kv.dtype == DType::f16 && (hd % 2 || kv.block_stride % 2 || kv.head_stride % 2))
    return errorf("vulkan attention: f16 KV needs even head_dim and strides");
  uint64_t esz = kv.dtype == DType::f16 ? 2 : 4;
  if (kv.k.size / esz > UINT32_MAX || kv.v.size / esz > UINT32_MAX || !detail::fits_u32(kv.block_stride) ||
      !detail::fits_u32(kv.head_stride))
    return errorf("vulkan attention: KV binding exceeds 32-bit indexing");
  if (!detail::fits_u32(p.q_stride) || !detail::fits_u32(p.out_stride) || p.window < 0 ||
      !detail::fits_u32(p.window))
    return errorf("vulkan attention: bad strides or window");
  if (uint64_t(s.n_seqs) * uint64_t(s.max_n_q) > ctx.info().max_workgroup_count[2] ||
      uint64_t(p.n_heads) > ctx.info().max_workgroup_count[1])
    return errorf("vulkan attention: grid too large");
  PENSIEVE_TRY(detail::need("attention", "meta", s.meta, uint64_t(s.n_seqs) * sizeof(SeqMeta)));
  PENSIEVE_TRY(detail::need("attention", "tables", s.tables, 4));
  return Status::Ok();
}

// attn_dec4 runs for this head_dim and cache layout (16-byte rows).
bool dec4_fits(const GpuKv& kv) {
  const int64_t epv = kv.dtype == DType::f16 ? 8 : 4;
  return kv.head_dim % epv == 0 && kv.block_stride % epv == 0 && kv.head_stride % epv == 0 &&
         uint32_t(kv.head_dim / epv) <= dec4_shape().wg;
}

}  // namespace

bool attention_fuses_rope(const GpuKv& kv, int rot_dim) {
  return kv.dtype == DType::f16 && dec4_fits(kv) && rot_dim >= 0 && rot_dim <= kv.head_dim && rot_dim % 2 == 0;
}

uint64_t attention_scratch_bytes(const Context& ctx, const GpuSeqs& s, const GpuKv& kv, const AttnParams& p) {
  if (s.max_n_q > kDecodeMaxQ) return 0;
  DecodePlan d = plan_decode(s, p);
  if (d.n_splits == 1) return 0;
  return uint64_t(s.n_seqs) * uint64_t(s.max_n_q) * uint64_t(p.n_heads) * d.n_splits * (kv.head_dim + 2) * 4;
}

Status attention(CommandList& cl, const BufferSlice& out, const BufferSlice& q, const GpuSeqs& s, const GpuKv& kv,
                 const AttnParams& p, const BufferSlice& scratch, const RopeStoreFusion* rope) {
  Context& ctx = cl.context();
  if (s.n_seqs == 0 || s.max_n_q == 0) return Status::Ok();
  PENSIEVE_TRY(check(ctx, s, kv, p));
  const uint32_t hd = uint32_t(kv.head_dim), kv_f16 = kv.dtype == DType::f16 ? 1 : 0;
  const uint32_t group = uint32_t(p.n_heads / kv.n_kv_heads);
  if (rope) {
    const int half = rope->rot_dim / 2;
    if (!attention_fuses_rope(kv, rope->rot_dim) || rope->n_heads != p.n_heads)
      return errorf("vulkan attention: no RoPE fusion for head_dim %d, rot_dim %d, this cache", kv.head_dim, rope->rot_dim);
    if (s.max_n_q != 1) return errorf("vulkan attention: the RoPE fusion takes one query per sequence");
    if (p.q_stride < (p.n_heads + 2 * int64_t(kv.n_kv_heads)) * kv.head_dim)
      return errorf("vulkan attention: the RoPE fusion reads q, k and v heads from q's rows");
    const uint64_t rows = uint64_t(s.n_seqs);
    PENSIEVE_TRY(detail::need("attention", "cos", rope->cos, rows * std::max(half, 1) * 4));
    PENSIEVE_TRY(detail::need("attention", "sin", rope->sin, rows * std::max(half, 1) * 4));
    PENSIEVE_TRY(detail::need("attention", "slots", rope->slots, rows * 4));
  }

  if (s.max_n_q <= kDecodeMaxQ) {
    DecodePlan d = plan_decode(s, p);
    uint64_t need = attention_scratch_bytes(ctx, s, kv, p);
    if (need) PENSIEVE_TRY(detail::need("attention", "scratch", scratch, need));
    DecodePush pc{uint32_t(p.n_heads), group, uint32_t(kv.block_size), uint32_t(kv.block_stride),
                  uint32_t(kv.head_stride), uint32_t(p.q_stride), uint32_t(p.out_stride), uint32_t(p.window),
                  p.scale, d.n_splits, d.split_len, uint32_t(s.max_n_q), rope ? uint32_t(rope->rot_dim / 2) : 0u};
    // attn_dec4 reads K and V rows as 16-byte vectors: every row offset must be a multiple of 8
    // (f16) or 4 (f32) elements.
    if (d.n_splits > ctx.info().max_workgroup_count[0]) return errorf("vulkan attention: too many splits");
    const uint32_t gz = uint32_t(s.n_seqs * s.max_n_q);
    const Dec4Shape sh = rope ? dec4_rope_shape(ctx, uint64_t(d.n_splits) * uint64_t(p.n_heads) * gz) : dec4_shape();
    const bool vec = dec4_fits(kv);
    auto pipe = vec ? ctx.pipelines().get(kDecode4, {sh.wg, hd, kv_f16, sh.kb, sh.vb, rope ? 1u : 0u})
                    : ctx.pipelines().get(kDecode, {kWg, hd, kv_f16});
    if (!pipe.ok()) return std::move(pipe).take_error();
    // With one split the partials binding is unused: bind the output there too.
    const BufferSlice& part = d.n_splits > 1 ? scratch : out;
    if (!vec)
      PENSIEVE_TRY(cl.dispatch(**pipe, {q, kv.k, kv.v, s.meta, s.tables, out, part}, pc, d.n_splits,
                               uint32_t(p.n_heads), gz));
    else if (rope)
      PENSIEVE_TRY(cl.dispatch(**pipe, {q, kv.k, kv.v, s.meta, s.tables, out, part, rope->cos, rope->sin, rope->slots, kv.k, kv.v},
                               pc, d.n_splits, uint32_t(p.n_heads), gz));
    else
      PENSIEVE_TRY(cl.dispatch(**pipe, {q, kv.k, kv.v, s.meta, s.tables, out, part, s.meta, s.meta, s.meta, out, out},
                               pc, d.n_splits, uint32_t(p.n_heads), gz));
    if (d.n_splits == 1) return Status::Ok();
    auto comb = ctx.pipelines().get(kCombine, {kWg, hd});
    if (!comb.ok()) return std::move(comb).take_error();
    CombinePush cp{uint32_t(p.n_heads), uint32_t(p.out_stride), d.n_splits, uint32_t(s.max_n_q)};
    return cl.dispatch(**comb, {scratch.sub(0, need), s.meta, out}, cp, 1, uint32_t(p.n_heads), gz);
  }

  // Prefill: 16 x 16 query/key tiles when the shared memory holds them, else 8 x 8.
  uint32_t bq = 16, bk = 16;
  auto shared_bytes = [&](uint32_t a, uint32_t b) { return uint64_t((a + 2 * b) * hd + a * b + 3 * a + b) * 4; };
  if (shared_bytes(bq, bk) > ctx.info().max_shared_memory) bq = bk = 8;
  if (shared_bytes(bq, bk) > ctx.info().max_shared_memory || bq * hd > 32 * kWg)
    return errorf("vulkan attention: head_dim %u needs more shared memory than the device has", hd);
  PrefillPush pc{uint32_t(p.n_heads), group, uint32_t(kv.block_size), uint32_t(kv.block_stride),
                 uint32_t(kv.head_stride), uint32_t(p.q_stride), uint32_t(p.out_stride), uint32_t(p.window), p.scale};
  auto pipe = ctx.pipelines().get(kPrefill, {kWg, hd, kv_f16, bq, bk});
  if (!pipe.ok()) return std::move(pipe).take_error();
  uint64_t gx = detail::ceil_div(uint64_t(s.max_n_q), bq);
  if (gx > ctx.info().max_workgroup_count[0] || uint64_t(s.n_seqs) > ctx.info().max_workgroup_count[2])
    return errorf("vulkan attention: grid too large");
  return cl.dispatch(**pipe, {q, kv.k, kv.v, s.meta, s.tables, out}, pc, uint32_t(gx), uint32_t(p.n_heads),
                     uint32_t(s.n_seqs));
}

// Subgroups per query tile of the tensor-core prefill's narrow kernel (attn_flash.comp). Measured on
// the H200 (pp512, bench/RESULTS.md phase 11): attention per step 2.70 / 2.33 / 2.51 ms with 1 / 2 /
// 4 for Phi-3-mini, 3.17 / 2.31 / 2.43 for Phi-4-mini.
constexpr uint32_t kFlashSubgroups = 2;
// 16-query subgroups per workgroup of the wide kernel (attn_flash_wide.comp). Measured on the H200
// (bench/RESULTS.md phase 12): 4 against 2, Phi-3-mini pp2048 6.5 / 11.8 ms of attention per step,
// Phi-4-mini 6.7 / 9.9; 8 do not fit in 48 KiB of shared memory.
constexpr uint32_t kFlashWideSubgroups = 4;

uint64_t flash_wide_shared_bytes(int head_dim, uint32_t nsg) {
  const uint64_t q_rows = 16ull * head_dim * 2, kv_block = 16ull * (head_dim + 8) * 2;  // padded rows
  return nsg * q_rows + 4 * kv_block + nsg * (1280 + 768 + 1024 + 64);  // + per-subgroup scratch
}

bool flash_attention_supported(const Context& ctx, const GpuKv& kv, const AttnParams& p) {
  const int hd = kv.head_dim;
  return ctx.coopmat() && ctx.info().min_subgroup_size == 32 && ctx.info().max_subgroup_size == 32 &&
         kv.dtype == DType::f16 && kv.block_size == 16 && hd % 16 == 0 && hd <= 128 && kv.block_stride % 8 == 0 &&
         kv.head_stride % 8 == 0 && p.q_stride % 4 == 0 && p.n_heads > 0 && kv.n_kv_heads > 0 &&
         p.n_heads % kv.n_kv_heads == 0;
}

Status flash_attention(CommandList& cl, const BufferSlice& out, const BufferSlice& q, const GpuSeqs& s,
                       const GpuKv& kv, const AttnParams& p, FlashTiles tiles) {
  Context& ctx = cl.context();
  if (s.n_seqs == 0 || s.max_n_q == 0) return Status::Ok();
  PENSIEVE_TRY(check(ctx, s, kv, p));
  if (!flash_attention_supported(ctx, kv, p))
    return errorf("vulkan attention: the tensor-core prefill kernel does not support this device or cache layout");
  PrefillPush pc{uint32_t(p.n_heads), uint32_t(p.n_heads / kv.n_kv_heads), uint32_t(kv.block_size),
                 uint32_t(kv.block_stride), uint32_t(kv.head_stride), uint32_t(p.q_stride), uint32_t(p.out_stride),
                 uint32_t(p.window), p.scale};
  const DeviceInfo& info = ctx.info();
  // Wide tiles where their grid has a workgroup for every multiprocessor (H200, phase 12: from
  // 512-token chunks of Phi-3 and Phi-4 on they are faster, at 7,680 keys 28 ms against 46 per
  // Phi-4 step; at 64-256 queries, 32-128 workgroups, the narrow kernel is as fast or faster).
  // Without a reported count: 128. PENSIEVE_VK_FLASH_WIDE=0|1 forces either (tuning runs).
  static const int env_wide = [] {
    const char* e = std::getenv("PENSIEVE_VK_FLASH_WIDE");
    return e && *e ? std::atoi(e) : -1;
  }();
  bool wide = tiles == FlashTiles::wide;
  if (tiles == FlashTiles::automatic) {
    const uint64_t groups = detail::ceil_div(uint64_t(s.max_n_q), 16 * kFlashWideSubgroups) * p.n_heads * s.n_seqs;
    wide = env_wide >= 0 ? env_wide > 0 : groups >= (info.sm_count ? info.sm_count : 128u);
  }
  const uint64_t wide_smem = flash_wide_shared_bytes(kv.head_dim, kFlashWideSubgroups);
  if (wide && wide_smem > info.max_shared_memory) {
    if (tiles == FlashTiles::wide)
      return errorf("vulkan attention: wide tiles need %llu bytes of shared memory, the device has %u",
                    (unsigned long long)wide_smem, info.max_shared_memory);
    wide = false;
  }

  uint32_t nsg = kFlashWideSubgroups;
  if (!wide) {
    // Subgroups per query tile (each walks every nsg-th key block; shaders/attn_flash.comp), within
    // the shared memory: PENSIEVE_VK_FLASH_SG overrides (tuning runs).
    static const uint32_t env_nsg = [] {
      const char* e = std::getenv("PENSIEVE_VK_FLASH_SG");
      return e ? uint32_t(std::atoi(e)) : 0u;
    }();
    nsg = env_nsg ? env_nsg : kFlashSubgroups;
    const auto smem = [&](uint32_t n) {
      return uint64_t(16) * kv.head_dim * 2 + n * (uint64_t(16) * 16 * 4 + 16 * 16 * 2 + 16ull * kv.head_dim * 4 + 16 * 12);
    };
    while (nsg > 1 && smem(nsg) > info.max_shared_memory) nsg /= 2;
    if (nsg < 1 || nsg > 8) return errorf("vulkan attention: %u subgroups per query tile (1..8)", nsg);
  }
  auto pipe = ctx.pipelines().get(wide ? kFlashWide : kFlash, {uint32_t(kv.head_dim), nsg, 32 * nsg});
  if (!pipe.ok()) return std::move(pipe).take_error();
  // Grid: x = query heads, y = query tiles (the shader takes the last first), z = sequences.
  const uint64_t gy = detail::ceil_div(uint64_t(s.max_n_q), wide ? 16 * nsg : 16);
  if (uint64_t(p.n_heads) > info.max_workgroup_count[0] || gy > info.max_workgroup_count[1] ||
      uint64_t(s.n_seqs) > info.max_workgroup_count[2])
    return errorf("vulkan attention: grid too large");
  return cl.dispatch(**pipe, {q, kv.k, kv.v, s.meta, s.tables, out}, pc, uint32_t(p.n_heads), uint32_t(gy),
                     uint32_t(s.n_seqs));
}

}  // namespace pensieve::vulkan::ops
