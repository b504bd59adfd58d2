// The x86 kernel variants (declarations only: the bodies live in *_avx2.cpp / *_avx512.cpp,
// each compiled with its own ISA flags). Signatures and maths: kernels/kernels.h.
#pragma once

#include "kernels/kernels.h"

namespace pensieve {

#define PENSIEVE_DECLARE_X86_KERNELS(isa)                                                                          \
  void matmul_dense_##isa(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w,  \
                          int64_t r0, int64_t r1);                                                                \
  void prepare_act_##isa(ActF32& a, const float* x, int64_t ldx, int64_t t0, int64_t t1);                         \
  void matmul_q_##isa(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t r1);     \
  void quantize_act_##isa(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1);                         \
  void matmul_act8_##isa(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1);   \
  void rmsnorm_##isa(float* y, const float* x, const float* w, int64_t dim, float eps, int64_t r0, int64_t r1);   \
  void rope_##isa(float* x, int64_t stride, int n_heads, int head_dim, int rot_dim, const float* cos,             \
                  const float* sin, int64_t t0, int64_t t1);                                                      \
  void attention_##isa(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p,    \
                       int kh0, int kh1, int64_t i0, int64_t i1);                                                           \
  void silu_mul_##isa(float* out, const float* gu, int64_t ffn, int64_t t0, int64_t t1);                          \
  void add_##isa(float* y, const float* x, int64_t i0, int64_t i1);                                               \
  void f16_to_f32_##isa(float* dst, const uint16_t* src, int64_t i0, int64_t i1);                                 \
  void f32_to_f16_##isa(uint16_t* dst, const float* src, int64_t i0, int64_t i1);                                 \
  void bf16_to_f32_##isa(float* dst, const uint16_t* src, int64_t i0, int64_t i1);                                \
  void f32_to_bf16_##isa(uint16_t* dst, const float* src, int64_t i0, int64_t i1);

PENSIEVE_DECLARE_X86_KERNELS(avx2)
PENSIEVE_DECLARE_X86_KERNELS(avx512)

}  // namespace pensieve
