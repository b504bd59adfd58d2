// The scalar reference kernels: the spec every other variant is tested against.
// Signatures and maths: kernels/kernels.h.
#pragma once

#include "kernels/kernels.h"

namespace pensieve {

// Any W, f32 activations (the table's matmul_dense entry for "ref", and the spec of matmul_q).
void matmul_ref(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w,
                int64_t r0, int64_t r1);
void prepare_act_ref(ActF32& a, const float* x, int64_t ldx, int64_t t0, int64_t t1);
void matmul_q_ref(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t r1);
void quantize_act_ref(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1);
void matmul_act8_ref(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1);
void rmsnorm_ref(float* y, const float* x, const float* w, int64_t dim, float eps, int64_t r0, int64_t r1);
void rope_ref(float* x, int64_t stride, int n_heads, int head_dim, int rot_dim, const float* cos, const float* sin,
              int64_t t0, int64_t t1);
void attention_ref(float* out, const float* q, const AttnSeq& seq, const KvLayer& kv, const AttnParams& p, int kh0, int kh1,
                   int64_t i0, int64_t i1);
void silu_mul_ref(float* out, const float* gu, int64_t ffn, int64_t t0, int64_t t1);
void add_ref(float* y, const float* x, int64_t i0, int64_t i1);
void f16_to_f32_ref(float* dst, const uint16_t* src, int64_t i0, int64_t i1);
void f32_to_f16_ref(uint16_t* dst, const float* src, int64_t i0, int64_t i1);
void bf16_to_f32_ref(float* dst, const uint16_t* src, int64_t i0, int64_t i1);
void f32_to_bf16_ref(uint16_t* dst, const float* src, int64_t i0, int64_t i1);


// Scalar helpers for the SIMD kernels' tails (kernels/ref/tails.cpp), each in element order.
float sum_squares_ref(const float* x, int64_t i0, int64_t i1);                                // Σ x[i]²
void rmsnorm_scale_ref(float* y, const float* x, const float* w, float inv, int64_t i0, int64_t i1);  // y = x·inv·w
void rope_pairs_ref(float* v, const float* c, const float* s, int half, int i0, int i1);      // rope_ref's pairs i0..i1
void silu_mul_range_ref(float* out, const float* g, const float* u, int64_t i0, int64_t i1);  // silu(g)·u
float dot_dense_ref(const void* w, DType dtype, const float* x, int64_t i0, int64_t i1);      // Σ w[i]·x[i]
void load_f32_ref(float* dst, const void* src, DType dtype, int64_t i0, int64_t i1);         // dst[i] = (float) src[i]

}  // namespace pensieve
