// Vulkan ops: each records one op (one or a few dispatches) into a CommandList. Shapes and maths
// are those of kernels/kernels.h and kernels/ops.h; every op is tested against the scalar
// reference (tests/test_vulkan_ops.cpp, and tests/test_ops.cpp through tests/ops_backend_vulkan.cpp).
//
// Buffers are BufferSlices (offsets meet the device's storage-buffer alignment); activations are
// f32. Each function validates shapes and device limits and returns an Error rather than record
// something the device cannot run; nothing here allocates device memory (ops that need scratch
// take a slice sized by the matching *_scratch_bytes()).
#pragma once

#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "kernels/vulkan/command.h"
#include "kernels/vulkan/device.h"
#include "kernels/vulkan/memory.h"
#include "quant/format.h"

namespace pensieve::vulkan {

// Weight type numbers shared with shaders/common/quant.glsl (spec constant WTYPE / STYPE).
enum WeightType : uint32_t { kWtQ4 = 0, kWtQ8 = 1, kWtF32 = 2, kWtF16 = 3, kWtBf16 = 4 };
enum ScaleType : uint32_t { kStF32 = 0, kStF16 = 1, kStBf16 = 2 };

// A weight matrix in device memory: WeightMatrix's planes as slices (scales/biases unused for dense).
struct GpuWeight {
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  DType scale_dtype = DType::f16;
  int group_size = 0;
  BufferSlice data, scales, biases;
  bool quantized() const { return dtype == DType::q4 || dtype == DType::q8; }
  int bits() const { return dtype == DType::q4 ? 4 : 8; }
  int64_t words_per_row() const { return cols * bits() / 32; }  // quantized only
};

// Byte sizes of a weight's planes as stored on the device (same bytes as on the host).
struct WeightPlaneBytes {
  uint64_t data = 0, scales = 0, biases = 0;
};
Result<WeightPlaneBytes> weight_plane_bytes(const WeightMatrix& w);

// Owning device copy of one weight (tests, benchmarks; a model sub-allocates one big buffer and
// fills GpuWeight views itself).
struct GpuWeightBuffers {
  Buffer data, scales, biases;
  GpuWeight w;
};
Result<GpuWeightBuffers> upload_weight(Context& ctx, const WeightMatrix& w);

// The KV cache of one layer (KvLayer with device slices). K and V must each fit one binding
// (maxStorageBufferRange, 4 GiB on NVIDIA): lay the pool out per layer on Vulkan.
struct GpuKv {
  BufferSlice k, v;
  DType dtype = DType::f16;
  int64_t block_stride = 0, head_stride = 0;  // elements
  int block_size = 0, n_kv_heads = 0, head_dim = 0;
};

// Per-sequence metadata as the attention shaders read it (one per AttnSeq); int32.
struct SeqMeta {
  int32_t q_begin, n_q, pos0, table_offset;  // table_offset: first entry in the tables slice
};
static_assert(sizeof(SeqMeta) == 16, "SeqMeta is an ivec4 in GLSL");

// The sequences of one attention call: meta = SeqMeta[n_seqs], tables = int32 block ids.
// max_n_q and max_kv_len (max of pos0 + n_q) size the grid: a recorded command buffer stays valid
// for any later contents whose values do not exceed them.
struct GpuSeqs {
  BufferSlice meta, tables;
  int n_seqs = 0;
  int64_t max_n_q = 0;
  int64_t max_kv_len = 0;
  // Decode kernel: keys per split (a multiple of 128). 0: chosen from the batch shape to fill the
  // GPU. A fixed value makes each query's result independent of the batch (splits start at fixed
  // positions, empty ones are skipped), as the model needs for batch invariance.
  uint32_t split_len = 0;
};

// Overrides for benchmarks and tuning (0 = the op's choice).
// For the q4 kernel (mvq4.comp) rows is R (rows per invocation) and unit_words the lanes per row
// group (LPR); kernel
// 1 forces the generic matvec.comp, 2 the q4 kernel.
struct MatvecTuning {
  uint32_t wg = 0, rows = 0, tokens = 0, unit_words = 0, kernel = 0;
};

// Small ops the matvec kernel applies on the fly (matmul_kernel() must be "matvec"): its input x'
// is rmsnorm(x) with weight `norm` (f32 [cols]) or silu(x[t, c]) * x[t, c + silu_offset] (the
// gate and up halves of one row), and `accumulate` adds the product to y instead of storing it.
// The qkv projection's RoPE and KV-cache store (what rope_store() does), fused into the output of
// the q4 matvec: y's rows are the q, k and v heads of head_dim rows each.
struct RopeStoreFusion {
  BufferSlice cos, sin, slots;  // as rope_store()
  GpuKv kv;
  int n_heads = 0, rot_dim = 0;
};

struct MatmulFusion {
  BufferSlice norm{};
  float eps = 0;
  int64_t silu_offset = 0;
  bool accumulate = false;
  // Output ops (the q4 matvec; silu_pairs also the tensor-core q4 matmul): silu_pairs writes
  // y[t, i] = silu(row i) * row (rows/2 + i) for i < rows/2 (the gate_up projection straight to
  // the down projection's input); rope applies RoPE to the q and k heads of y and stores k and v
  // into the cache.
  bool silu_pairs = false;
  const RopeStoreFusion* rope = nullptr;
  // The tensor-core q4 matmul's norm fusion (shaders/mmq4_coop.comp): with accumulate, ssq
  // receives each token's sums of squares of the new y per 64 rows ([n][coop_ssq_row(rows)]);
  // with norm, x is normalised from the sums in ssq (written by such a producer of x).
  BufferSlice ssq{};
  // bf16 activations between those matmuls (batched decode and prefill; why in shaders/mmq4_coop.comp):
  // x_bf16: x is bf16 [n, ldx] (ldx a multiple of 8), with norm already times the norm weight as
  // xg below writes it; y_bf16 (with silu_pairs): y is written as bf16; xg (a producer: accumulate
  // with ssq): y * xg_norm (the next rmsnorm's weight) is also written to xg as bf16 [n, ldy].
  bool x_bf16 = false;
  bool y_bf16 = false;
  BufferSlice xg{};
  BufferSlice xg_norm{};
};

namespace ops {

// y[t, r] = sum_c x[t, c] W[r, c] (t < n): the matvec (any n: blocks of up to 8 tokens, each
// weight read once per block) when the layout allows, else the tiled matmul; Precision::fast lets
// n >= 64 use f16 cooperative matrices (f32 accumulation) where the device has them. The matvec is
// batch-invariant (a token's result does not depend on n); the cooperative-matrix path is not the
// same arithmetic. x: [n, ldx], y: [n, ldy] f32.
Status matmul(CommandList& cl, const BufferSlice& y, int64_t ldy, const BufferSlice& x, int64_t ldx, int64_t n,
              const GpuWeight& w, Precision p, const MatvecTuning& tune = {}, const MatmulFusion& fusion = {});
// Floats per token of the norm fusion's sums of squares (one per 64 rows, rounded up to 4), for
// an output of `rows` rows computed by the tensor-core q4 matmul (the consumer of those sums
// passes the same rows).
int64_t coop_ssq_row(int64_t rows);
// Whether that matmul's split-K epilogue fusions (ssq, silu_pairs) apply to weight w (its rows
// are >= 2 steps of 32 values).
bool coop_epilogue_fits(const GpuWeight& w);
// Which kernel matmul() records for these arguments ("matvec", "matmul", "matmul_coopmat",
// "mmq4_coop"; at 5-32 tokens mmq4_coop runs as its mmq4_frag / mmq4_frag8 variants where the
// device's fragment layout allows, see shaders/mmq4_coop.comp).
const char* matmul_kernel(const Context& ctx, int64_t ldx, int64_t n, const GpuWeight& w, Precision p);
// Whether matmul() takes MatmulFusion::silu_pairs (rope = false) or ::rope (true) for these
// arguments: the q4 matvec on a device with fixed-size subgroups (the rope variant also needs 11
// storage buffers per stage).
bool matmul_fuses(const Context& ctx, int64_t ldx, int64_t n, const GpuWeight& w, Precision p, bool rope);

// y[r, :] = x[r, :] w / sqrt(mean(x[r, :]^2) + eps); y may equal x. y_bf16: y is bf16 (rounded to
// nearest even; dim even, y apart from x), for the tensor-core matmul's bf16 x.
Status rmsnorm(CommandList& cl, const BufferSlice& y, const BufferSlice& x, const BufferSlice& w, int64_t rows,
               int64_t dim, float eps, bool y_bf16 = false);

// Rotate-half RoPE in place on x [n, stride]; cos/sin [n, rot_dim / 2].
Status rope(CommandList& cl, const BufferSlice& x, int64_t n, int64_t stride, int n_heads, int head_dim,
            int rot_dim, const BufferSlice& cos, const BufferSlice& sin);

// Causal GQA attention over the paged cache (kernels.h). Few queries per sequence (max_n_q <= 4)
// take the split-K decode kernel (+ combine pass), others the tiled prefill kernel.
uint64_t attention_scratch_bytes(const Context& ctx, const GpuSeqs& s, const GpuKv& kv, const AttnParams& p);
// rope (decode with one query per sequence, f16 cache; attention_fuses_rope()): q holds the qkv
// rows as the projection wrote them, and the kernel does rope_store()'s work on the way (RoPE on
// q and the new key, the new key and value into the cache), with the same results. The cache
// written is `kv` (rope->kv is not read).
bool attention_fuses_rope(const GpuKv& kv, int rot_dim);
Status attention(CommandList& cl, const BufferSlice& out, const BufferSlice& q, const GpuSeqs& s,
                 const GpuKv& kv, const AttnParams& p, const BufferSlice& scratch,
                 const RopeStoreFusion* rope = nullptr);

// The same attention for prefill chunks on tensor cores (f16 q, k, v and probabilities, f32 scores
// and sums; Precision::fast only): 16-query tiles (shaders/attn_flash.comp) or 64-query tiles that
// share staged K / V (attn_flash_wide.comp), chosen by the grid's size unless `tiles` says.
// flash_attention_supported() says whether this device, cache layout and shape can run it.
enum class FlashTiles { automatic, narrow, wide };
bool flash_attention_supported(const Context& ctx, const GpuKv& kv, const AttnParams& p);
Status flash_attention(CommandList& cl, const BufferSlice& out, const BufferSlice& q, const GpuSeqs& s,
                       const GpuKv& kv, const AttnParams& p, FlashTiles tiles = FlashTiles::automatic);

// The decoder's RoPE + KV store in one pass: rotate-half RoPE (cos/sin [n, rot_dim / 2]) on the
// q heads of qkv [n, stride] in place, and the roped k heads and the v heads written to the cache
// of one layer, token t at element offset slots[t] (u32: block * block_stride + slot * head_dim;
// kv head h adds head_stride). Needs head_dim and rot_dim / 2 even.
Status rope_store(CommandList& cl, const BufferSlice& qkv, int64_t n, int64_t stride, int n_heads, int rot_dim,
                  const BufferSlice& cos, const BufferSlice& sin, const BufferSlice& slots, const GpuKv& kv);

// One decoder layer of a ONE-token decode step as one persistent dispatch (shaders/decode_layer.comp
// says how): x += attention and MLP of the layer, the token's k and v into the cache. The
// workgroups synchronise among themselves, so the grid is one workgroup per multiprocessor and
// the op exists only where that count is known (NVIDIA). Fast precision (int8 x, integer dot
// products). `sync` holds 1 + layer + 1 words, zero when first used (the kernel leaves its
// counter at zero); word 0 is set if a workgroup gave up waiting for the others (the layer's
// results are then garbage, and its counter is left nonzero).
struct DecodeLayer {
  const GpuWeight *qkv = nullptr, *o = nullptr, *gate_up = nullptr, *down = nullptr;  // [gate; up] rows
  BufferSlice attn_norm, mlp_norm;
  BufferSlice x, qkv_out, attn, gu;  // f32 [hidden], [qkv rows], [q_dim], [ffn]
  GpuKv kv;
  BufferSlice cos, sin, slots, meta, tables;  // as rope_store() and attention() take them (one token)
  BufferSlice sync;
  int layer = 0, n_heads = 0, rot_dim = 0;
  AttnParams p;
  float eps = 0;
};
// Keys one query may see on this path (decode_layer.comp MAXK).
inline constexpr int64_t kDecodeLayerMaxKeys = 512;
// Why decode_layer() cannot run this layer on this device ("" if it can).
std::string decode_layer_unsupported(const Context& ctx, const DecodeLayer& d);
Status decode_layer(CommandList& cl, const DecodeLayer& d);

// out[i, :] = x[idx[i], :] for i < n; idx u32, x and out f32 rows of dim.
Status gather_rows(CommandList& cl, const BufferSlice& out, const BufferSlice& x, const BufferSlice& idx, int64_t n,
                   int64_t dim);

// out[t, i] = silu(gu[t, i]) * gu[t, ffn + i].
Status silu_mul(CommandList& cl, const BufferSlice& out, const BufferSlice& gu, int64_t n, int64_t ffn);
// y[i] += x[i], i < n.
Status add(CommandList& cl, const BufferSlice& y, const BufferSlice& x, int64_t n);
// out[t, :] = dequantized row ids[t] of the table; ids int32 [n] (rows out of range give zeros).
Status embed(CommandList& cl, const BufferSlice& out, const BufferSlice& ids, int64_t n, const GpuWeight& table);

// The k largest values of each row of x [rows, n] (descending; ties to the lower index): values
// f32 [rows, k], indices u32 [rows, k]. k = 1 is argmax. k <= 256.
uint64_t topk_scratch_bytes(int64_t rows, int64_t n, int k);
Status topk(CommandList& cl, const BufferSlice& values, const BufferSlice& indices, const BufferSlice& x,
            int64_t rows, int64_t n, int k, const BufferSlice& scratch);

// Benchmark probe: reads `src` once (16-byte loads); writes one word per workgroup to `sink`
// (sink needs 4 * 1024 bytes).
Status read_probe(CommandList& cl, const BufferSlice& src, const BufferSlice& sink);

// Benchmark probe: one dispatch of `groups` workgroups (at most one per multiprocessor: they must
// all be resident) that synchronise grid-wide `rounds` times through `counter` (zeroed first);
// flags[1] becomes 1 if a workgroup gave up waiting (flags needs groups + 2 words).
Status grid_sync_probe(CommandList& cl, const BufferSlice& counter, const BufferSlice& flags, uint32_t groups,
                       uint32_t rounds);

// The device's memory read bandwidth in GB/s (10^9 bytes): read_probe over a device buffer of up
// to `bytes` (capped by one binding and a quarter of device memory), `passes` times per submission;
// the best of 3 submissions, timed on the host. The ceiling GPU decode speed is measured against.
Result<double> read_bandwidth_gbs(Context& ctx, uint64_t bytes = 1ull << 30, int passes = 8);

}  // namespace ops
}  // namespace pensieve::vulkan
