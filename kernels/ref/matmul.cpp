// Reference matmul: dequantize each weight row (quant/quantize.h, the reference dequantizer) and
// accumulate its dot product with every token in f32 — the plainest correct loop.
//   y[t, r] = Σ_c x[t, c] · W[r, c],   W[r, c] = scale[r, c/G] · q[r, c] + bias[r, c/G]  (quantized)
//   x: [n, ldx], y: [n, ldy], rows r0 <= r < r1.
#include <cmath>
#include <cstdlib>
#include <vector>

#include "quant/quantize.h"

#include "kernels/ref/ref.h"

namespace pensieve {

static inline uint32_t quant_value(const uint32_t* words, int bits, int64_t c) {
  int per_word = 32 / bits;
  return (words[c / per_word] >> ((c % per_word) * bits)) & ((1u << bits) - 1);
}

void matmul_ref(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n, const WeightMatrix& w,
                int64_t r0, int64_t r1) {
  thread_local std::vector<float> row;  // grows once per thread to the widest matrix
  row.resize(size_t(w.cols));
  for (int64_t r = r0; r < r1; ++r) {
    dequantize_row(w, r, row.data());
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * ldx;
      float acc = 0;
      for (int64_t c = 0; c < w.cols; ++c) acc += row[size_t(c)] * xt[c];
      y[t * ldy + r] = acc;
    }
  }
}

// Per block of kActBlock: d = max|x| / 127, q = round(x / d) (half away from zero), sum = d · Σq.
void quantize_act_ref(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  const int64_t blocks = a.cols / kActBlock;
  for (int64_t t = t0; t < t1; ++t) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float* xb = x + t * ldx + b * kActBlock;
      float amax = 0;
      for (int j = 0; j < kActBlock; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
      float d = amax / 127.0f;
      float id = d != 0 ? 1.0f / d : 0.0f;
      int8_t* q = a.q + t * a.cols + b * kActBlock;
      int isum = 0;
      for (int j = 0; j < kActBlock; ++j) {
        q[j] = int8_t(std::lround(xb[j] * id));
        isum += q[j];
      }
      a.d[t * blocks + b] = d;
      a.sum[t * blocks + b] = d * float(isum);
    }
  }
}

// y[t, r] = Σ_g scale_g · Σ_{b in g} d_b · (Σ_j q_w · q_x)  +  bias_g · Σ_{b in g} sum_b
void matmul_act8_ref(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  const int64_t blocks = a.cols / kActBlock;
  const int64_t groups = w.groups_per_row();
  const int blocks_per_group = w.group_size / kActBlock;
  for (int64_t r = r0; r < r1; ++r) {
    const uint32_t* words = w.row_words(r);
    for (int64_t t = 0; t < a.n; ++t) {
      const int8_t* qx = a.q + t * a.cols;
      float acc = 0;
      for (int64_t g = 0; g < groups; ++g) {
        float dot = 0, xsum = 0;
        for (int bi = 0; bi < blocks_per_group; ++bi) {
          int64_t b = g * blocks_per_group + bi;
          int32_t isum = 0;
          for (int j = 0; j < kActBlock; ++j) {
            int64_t c = b * kActBlock + j;
            isum += int32_t(quant_value(words, w.bits(), c)) * qx[c];
          }
          dot += a.d[t * blocks + b] * float(isum);
          xsum += a.sum[t * blocks + b];
        }
        acc += load_as_f32(w.scales, w.scale_dtype, r * groups + g) * dot +
               load_as_f32(w.biases, w.scale_dtype, r * groups + g) * xsum;
      }
      y[t * ldy + r] = acc;
    }
  }
}

}  // namespace pensieve
