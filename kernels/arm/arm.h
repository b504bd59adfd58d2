// The aarch64 kernel variants (declarations only: bodies in *_neon.cpp / *_dotprod.cpp, each
// compiled with its own flags). Signatures and maths: kernels/kernels.h.
#pragma once

#include "kernels/kernels.h"

namespace pensieve {

void matmul_dense_neon(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w, int64_t r0,
                       int64_t r1);
void prepare_act_neon(ActF32& a, const float* x, int64_t ldx, int64_t t0, int64_t t1);
void matmul_q_neon(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t r1);
// One int8 layout for both tables: each 32-value block as its 16 even values then its 16 odd
// ones for q4 (the order a 16-byte load's low / high nibbles decode in), natural for q8.
void quantize_act_neon(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1);
void matmul_act8_neon(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1);
void matmul_act8_dotprod(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1);
void rmsnorm_neon(float* y, const float* x, const float* w, int64_t dim, float eps, int64_t r0, int64_t r1);
void rope_neon(float* x, int64_t stride, int n_heads, int head_dim, int rot_dim, const float* cos, const float* sin,
               int64_t t0, int64_t t1);
void attention_neon(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0, int kh1,
                    int64_t i0, int64_t i1);
void silu_mul_neon(float* out, const float* gu, int64_t ffn, int64_t t0, int64_t t1);
void add_neon(float* y, const float* x, int64_t i0, int64_t i1);
void f16_to_f32_neon(float* dst, const uint16_t* src, int64_t i0, int64_t i1);
void f32_to_f16_neon(uint16_t* dst, const float* src, int64_t i0, int64_t i1);
void bf16_to_f32_neon(float* dst, const uint16_t* src, int64_t i0, int64_t i1);
void f32_to_bf16_neon(uint16_t* dst, const float* src, int64_t i0, int64_t i1);

}  // namespace pensieve
