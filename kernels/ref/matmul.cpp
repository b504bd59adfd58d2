// Reference matmuls: dequantize each weight row (quant/quantize.h, the reference dequantizer) and
// accumulate its dot product with every token in f32 — the plainest correct loops.
//   y[t, r] = Σ_c x[t, c] · W[r, c],   W[r, c] = scale[r, c/G] · q[r, c] + bias[r, c/G]  (quantized)
//   x: [n, ldx], y: [n, ldy], rows r0 <= r < r1.  Activations prepared here stay in natural order.
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

// Any W (dense or quantized): the spec for every "exact" matmul.
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

// Natural order copy; gsum[t, g] = Σ_{c in g} x[t, c] in column order.
void prepare_act_ref(ActF32& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  const int64_t groups = a.cols / a.group_size;
  for (int64_t t = t0; t < t1; ++t) {
    for (int64_t g = 0; g < groups; ++g) {
      float s = 0;
      for (int64_t c = g * a.group_size; c < (g + 1) * a.group_size; ++c) {
        a.x[t * a.cols + c] = x[t * ldx + c];
        s += x[t * ldx + c];
      }
      a.gsum[t * groups + g] = s;
    }
  }
}

void matmul_q_ref(float* y, int64_t ldy, const ActF32& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  matmul_ref(y, ldy, a.x, a.cols, a.n, w, r0, r1);
}

// Per block of kActBlock: d = max|x| / 127, q = x · (1/d) rounded half to even (what SIMD
// conversions do), so every table produces the same q and d bits.
void quantize_act_ref(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  const int64_t blocks = a.cols / kActBlock;
  const int64_t groups = a.cols / a.group_size;
  const int blocks_per_group = a.group_size / kActBlock;
  for (int64_t t = t0; t < t1; ++t) {
    for (int64_t g = 0; g < groups; ++g) {
      float gsum = 0;
      for (int bi = 0; bi < blocks_per_group; ++bi) {
        int64_t b = g * blocks_per_group + bi;
        const float* xb = x + t * ldx + b * kActBlock;
        float amax = 0;
        for (int j = 0; j < kActBlock; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        int8_t* q = a.q + t * a.cols + b * kActBlock;
        int isum = 0;
        for (int j = 0; j < kActBlock; ++j) {
          long v = std::lrint(xb[j] * id);  // |v| <= 127 for finite x
          q[j] = int8_t(v < -127 ? -127 : v > 127 ? 127 : v);
          isum += q[j];
        }
        a.d[t * blocks + b] = d;
        gsum += d * float(isum);
      }
      a.gsum[t * groups + g] = gsum;
    }
  }
}

// y[t, r] = Σ_g scale_g · Σ_{b in g} d_b · (Σ_{c in b} q_w · q_x)  +  bias_g · gsum_g
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
        float dot = 0;
        for (int bi = 0; bi < blocks_per_group; ++bi) {
          int64_t b = g * blocks_per_group + bi;
          int32_t isum = 0;
          for (int j = 0; j < kActBlock; ++j) {
            int64_t c = b * kActBlock + j;
            isum += int32_t(quant_value(words, w.bits(), c)) * qx[c];
          }
          dot += a.d[t * blocks + b] * float(isum);
        }
        acc += load_as_f32(w.scales, w.scale_dtype, r * groups + g) * dot +
               load_as_f32(w.biases, w.scale_dtype, r * groups + g) * a.gsum[t * groups + g];
      }
      y[t * ldy + r] = acc;
    }
  }
}

}  // namespace pensieve
