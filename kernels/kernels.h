// CPU kernels: one signature per op, and a table (CpuKernels) filled once per ISA.
//
// Each entry computes a slice of its op (a row range, or one attention work item) on the calling
// thread; kernels/ops.h splits ops across the thread pool and is what the model calls. Every ISA
// variant must agree with the `_ref` one (kernels/ref/) within the tolerance its test states, and
// every variant must compute each output element from its own inputs only, in a fixed order, so
// results never depend on the batch size, on a row's place in the batch, or on the thread count.
//
// Naming: <op>_<variant>_<isa>, e.g. matmul_q4_avx512, rmsnorm_ref. The ISA files (x86/, arm/)
// are compiled with their own flags; this header only declares, so baseline code stays baseline.
#pragma once

#include <cstdint>

#include "quant/format.h"

namespace pensieve {

// Activations prepared once per matmul call for the quantized-weight kernels, by the same table
// whose matmul then reads them, for weights of one (bits, group_size). Inside each row the values
// are in the order that table's SIMD lanes decode the packed weights in (e.g. AVX2 splits a
// 32-byte load of q4 words into low and high nibbles, so its int8 row holds each 64 values as the
// 32 even ones then the 32 odd ones; the AVX-512 file describes its slabs of 512): preparing is
// O(n·cols), so reordering there is free.
// The reference tables keep natural order. Tests always run a table's prepare with its own matmul.
//
// exact: f32 activations.  x[t, :] permuted and, where a table decodes nibble j of a word as
// q·16^j (an AND without shift), pre-scaled by 16^-j so the product is unchanged (powers of two
// are exact); gsum[t, g] = Σ of x[t, c] over weight group g (for the bias term).
struct ActF32 {
  float* x = nullptr;     // [n, cols]
  float* gsum = nullptr;  // [n, cols / group_size]
  int64_t n = 0, cols = 0;
  int bits = 4, group_size = 64;
};

// fast: int8 activations per block of kActBlock values (as llama.cpp's q8_0):
//   d[t, b] = max|x[t, block b]| / 127,  q[t, c] = round_half_even(x[t, c] · (1/d))  in [-127, 127]
//   (d = 0 gives q = 0), every table bit for bit as the reference,
//   gsum[t, g] = Σ_{blocks b in group g} d[t, b] · Σ_{c in b} q[t, c]   (for the bias term).
// gsum is in natural group order; q and d are permuted within each row as the table prefers (the
// AVX-512 table keeps each 512-value slab's bytes and block scales in its int32 lanes' order).
inline constexpr int kActBlock = 32;
struct ActQ8 {
  int8_t* q = nullptr;    // [n, cols]
  float* d = nullptr;     // [n, cols / kActBlock]
  float* gsum = nullptr;  // [n, cols / group_size]
  int64_t n = 0, cols = 0;
  int bits = 4, group_size = 64;
};

// Largest head_dim the attention kernels accept (Phi and Llama models use 64..128).
inline constexpr int kMaxHeadDim = 256;

// One layer's view of the paged KV cache. Element (block b, kv head h, slot s, dim i) of K (V)
// is at k[b * block_stride + h * head_stride + s * head_dim + i]; dtype is f16 or f32.
struct KvLayer {
  const void* k = nullptr;
  const void* v = nullptr;
  DType dtype = DType::f16;
  int64_t block_stride = 0;
  int64_t head_stride = 0;
  int block_size = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
};

// One sequence's queries in an attention call: q rows [q_begin, q_begin + n_q) hold positions
// pos0 .. pos0 + n_q - 1, and the cache already holds its keys/values for positions
// 0 .. pos0 + n_q - 1 (position p lives in block block_table[p / block_size], slot p % block_size).
struct AttnSeq {
  int64_t q_begin = 0;
  int64_t n_q = 0;
  int64_t pos0 = 0;
  const int32_t* block_table = nullptr;
};

// Parameters shared by all work items of one attention call.
struct AttnParams {
  int n_heads = 0;          // query heads; query head h reads kv head h / (n_heads / n_kv_heads)
  float scale = 0;          // usually 1 / sqrt(head_dim)
  int64_t window = 0;       // > 0: query at position p sees keys at positions > p - window
  int64_t q_stride = 0;     // floats between query rows (head h at offset h * head_dim)
  int64_t out_stride = 0;   // floats between output rows
};

struct CpuKernels {
  const char* name;  // "ref", "avx2", "avx512", "neon", "dotprod"

  // y[t, r] = Σ_c x[t, c] · W[r, c] for t < n, r0 <= r < r1.  x: [n, ldx] f32, y: [n, ldy] f32.
  // matmul_dense: W dense (f32 / f16 / bf16).
  void (*matmul_dense)(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w,
                       int64_t r0, int64_t r1);
  // The "exact" precision for quantized W (q4 / q8, any group and scale type):
  //   W[r, c] = scale[r, g] · q[r, c] + bias[r, g] (g = c / group_size) and f32 activations, i.e.
  //   y[t, r] = Σ_g scale[r, g] · Σ_{c in g} q[r, c] · x[t, c]  +  bias[r, g] · gsum[t, g].
  // prepare_act fills rows [t0, t1) of a (a.cols, a.bits, a.group_size set by the caller).
  void (*prepare_act)(ActF32& a, const float* x, int64_t ldx, int64_t t0, int64_t t1);
  void (*matmul_q)(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t r1);
  // The "fast" precision: the same with int8 activations and integer dot products per block:
  //   y[t, r] = Σ_g scale[r, g] · Σ_{b in g} d[t, b] · (Σ_{c in b} q[r, c] · qx[t, c])  +  bias[r, g] · gsum[t, g].
  void (*quantize_act)(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1);
  void (*matmul_act8)(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1);

  // y[r, :] = x[r, :] · w / sqrt(mean(x[r, :]²) + eps) for r in [r0, r1).  x, y: [rows, dim]
  void (*rmsnorm)(float* y, const float* x, const float* w, int64_t dim, float eps, int64_t r0, int64_t r1);

  // Rotate-half RoPE in place on tokens [t0, t1): for each head h < n_heads of row t,
  //   v = x[t, h*head_dim ...], half = rot_dim / 2, c = cos[t, i], s = sin[t, i], i < half:
  //   v[i] ← v[i]·c − v[i+half]·s,   v[i+half] ← v[i+half]·c + v[i]·s;  v[rot_dim:] unchanged.
  // cos/sin: [n, half], attention factor already folded in.  x: [n, stride].
  void (*rope)(float* x, int64_t stride, int n_heads, int head_dim, int rot_dim, const float* cos,
               const float* sin, int64_t t0, int64_t t1);

  // Causal attention for queries [i0, i1) of one sequence and every query head h that reads a kv
  // head in [kh0, kh1) (h = kh·g .. kh·g + g − 1, g = n_heads / n_kv_heads), online softmax, f32
  // accumulation:  out[t, h] = Σ_j softmax_j(scale · q[t, h]·k[j]) · v[j]  over the visible keys j.
  // The heads of a call run together so their keys and values are read once, in cache order.
  void (*attention)(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p,
                    int kh0, int kh1, int64_t i0, int64_t i1);

  // out[t, i] = silu(gu[t, i]) · gu[t, ffn + i] for t in [t0, t1), i < ffn; silu(g) = g / (1 + e^-g).
  void (*silu_mul)(float* out, const float* gu, int64_t ffn, int64_t t0, int64_t t1);
  // y[i] += x[i] for i in [i0, i1).
  void (*add)(float* y, const float* x, int64_t i0, int64_t i1);
  // Conversions for i in [i0, i1): exact widening, round-to-nearest-even narrowing (tensor/dtype.h).
  void (*f16_to_f32)(float* dst, const uint16_t* src, int64_t i0, int64_t i1);
  void (*f32_to_f16)(uint16_t* dst, const float* src, int64_t i0, int64_t i1);
  void (*bf16_to_f32)(float* dst, const uint16_t* src, int64_t i0, int64_t i1);
  void (*f32_to_bf16)(uint16_t* dst, const float* src, int64_t i0, int64_t i1);
};

// The reference table (scalar, the spec) and the best table this CPU runs.
const CpuKernels& cpu_kernels_ref();
const CpuKernels& cpu_kernels();
// Every table this CPU can run, reference first (for tests and benchmarks).
int cpu_kernel_tables(const CpuKernels** out, int max);
// Table by name ("ref", "avx2", ...) or nullptr if unknown or not runnable here.
const CpuKernels* cpu_kernels_by_name(const char* name);

}  // namespace pensieve
