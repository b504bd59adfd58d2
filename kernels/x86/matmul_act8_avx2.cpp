// Quantized W (q4 / q8) × int8 activations, the "fast" precision, AVX2 (vpmaddubsw: unsigned
// × signed bytes, adjacent pairs summed to int16; then vpmaddwd with ones to int32 lanes).
//
// Lanes, q4. A 32-byte load holds 64 values, byte p = values 2p (low nibble) and 2p+1 (high).
// AND 0x0F gives the even values, a 16-bit shift by 4 then AND the odd ones. quantize_act
// stores each 64-value chunk as its 32 even values then its 32 odd values (a last chunk of 32
// values: 16 + 16, in 16-byte halves), so maddubs(even) + maddubs(odd) (each pair sum <= 3810,
// no saturation) then madd(ones) give lane i = Σ q·x over values 8i..8i+7.
// q8: weights 0..255 overflow maddubs' int16 pair sums against int8 x, so w − 128 (XOR 0x80,
// a signed byte) is used: maddubs(|w − 128|, sign(x, w − 128)) <= 2·128·127 fits, lane i =
// Σ (w − 128)·x over values 4i..4i+3 (natural order, chunks of 32); the missing 128·Σx is
// added through the bias term: bias' = bias + 128·scale, since gsum holds Σ d·q per group.
// Per output and chunk: acc += cvt(isum) ⊙ (scale lanes ⊙ d lanes); at the end
// y = Σ lanes(acc) + Σ_g bias_g · gsum_g (8 groups per vector, the rest by the scalar helper).
#include "kernels/ref/ref.h"
#include "kernels/x86/simd_avx2.h"
#include "kernels/x86/x86.h"

namespace pensieve {
namespace {

// Activation bytes per token block: small enough to stay in L1 while the call's rows (<= 256,
// ~400 KiB of q4) stream from L2 once per block; larger blocks made batches L2-bound on AVX-512.
constexpr int64_t kL2Bytes = 32 * 1024;
constexpr int64_t kPrefetchBytes = 16 * 1024;  // rows are contiguous: prefetch the stream ahead

inline __m256i load_bytes(const void* p, int n) {  // n = 32, or 16 (upper half zero)
  return n == 32 ? _mm256_loadu_si256(static_cast<const __m256i*>(p))
                 : _mm256_zextsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(p)));
}

// Scale lanes of one chunk of row r: q4 lane i holds values 8i..8i+7 (group 8i / G: two groups
// per full chunk when G = 32); q8 chunks (32 values) lie inside one group.
template <int Bits, DType S>
inline __m256 scale_lanes(const WeightMatrix& w, int64_t r, int64_t c0, int m) {
  const int64_t g = r * groups_per_row(w) + c0 / w.group_size;
  if (Bits == 4 && w.group_size == 32 && m == 64)
    return _mm256_set_m128(_mm_set1_ps(load1<S>(w.scales, g + 1)), _mm_set1_ps(load1<S>(w.scales, g)));
  return _mm256_set1_ps(load1<S>(w.scales, g));
}

// d lanes of one chunk of token t: lane i is in block (values per lane · i) / 32.
template <int Bits>
inline __m256 d_lanes(const float* d, int m) {
  if (Bits == 4 && m == 64) return _mm256_set_m128(_mm_set1_ps(d[1]), _mm_set1_ps(d[0]));
  return _mm256_set1_ps(d[0]);
}

template <int Bits, DType S, int R, int T>
void tile(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t t0) {
  constexpr int P = Bits == 4 ? 64 : 32;
  const int64_t cols = w.cols, groups = groups_per_row(w), blocks = cols / kActBlock;
  const __m256i nib = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(char(0x80));
  __m256 acc[R][T];
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r)
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t c0 = 0; c0 < cols; c0 += P) {
    const int m = int(imin(P, cols - c0));
    const int half = Bits == 4 ? m / 2 : m;  // bytes per weight load
    __m256i lo[R], hi[R];
    __m256 s[R];
    PENSIEVE_UNROLL
    for (int r = 0; r < R; ++r) {
      const uint8_t* wr = row_bytes(w, r0 + r) + c0 * Bits / 8;
      _mm_prefetch(reinterpret_cast<const char*>(wr) + kPrefetchBytes, _MM_HINT_T0);  // the weight stream
      const __m256i v = load_bytes(wr, half);
      if constexpr (Bits == 4) {
        lo[r] = _mm256_and_si256(v, nib);
        hi[r] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
      } else {
        hi[r] = _mm256_xor_si256(v, flip);  // w − 128 as signed bytes
        lo[r] = _mm256_abs_epi8(hi[r]);     // |w − 128| as unsigned bytes
      }
      s[r] = scale_lanes<Bits, S>(w, r0 + r, c0, m);
    }
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const int8_t* xq = a.q + (t0 + t) * cols + c0;
      const __m256 d = d_lanes<Bits>(a.d + (t0 + t) * blocks + c0 / kActBlock, m);
      const __m256i xlo = load_bytes(xq, half);
      if constexpr (Bits == 4) {
        const __m256i xhi = load_bytes(xq + half, half);
        PENSIEVE_UNROLL
        for (int r = 0; r < R; ++r) {
          const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo[r], xlo), _mm256_maddubs_epi16(hi[r], xhi));
          const __m256i isum = _mm256_madd_epi16(p, ones);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(s[r], d), acc[r][t]);
        }
      } else {
        PENSIEVE_UNROLL
        for (int r = 0; r < R; ++r) {
          const __m256i p = _mm256_maddubs_epi16(lo[r], _mm256_sign_epi8(xlo, hi[r]));
          const __m256i isum = _mm256_madd_epi16(p, ones);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(s[r], d), acc[r][t]);
        }
      }
    }
  }
  const int64_t gv = groups / 8 * 8;
  PENSIEVE_UNROLL
  for (int r = 0; r < R; ++r) {
    const int64_t base = (r0 + r) * groups;
    // q8 computed Σ (w − 128)·x: the bias takes the 128·scale back.
    float tail_bias[8];
    const int64_t nt = groups - gv;
    for (int64_t k = 0; k < nt; ++k)
      tail_bias[k] = load1<S>(w.biases, base + gv + k) + (Bits == 8 ? 128.0f * load1<S>(w.scales, base + gv + k) : 0.0f);
    PENSIEVE_UNROLL
    for (int t = 0; t < T; ++t) {
      const float* gs = a.gsum + (t0 + t) * groups;
      __m256 bacc = _mm256_setzero_ps();
      for (int64_t k = 0; k < gv; k += 8) {
        __m256 b = load8<S>(w.biases, base + k);
        if constexpr (Bits == 8) b = _mm256_fmadd_ps(_mm256_set1_ps(128.0f), load8<S>(w.scales, base + k), b);
        bacc = _mm256_fmadd_ps(b, _mm256_loadu_ps(gs + k), bacc);
      }
      y[(t0 + t) * ldy + r0 + r] = hsum(_mm256_add_ps(acc[r][t], bacc)) + dot_dense_ref(tail_bias, DType::f32, gs + gv, 0, nt);
    }
  }
}

template <int Bits, DType S, int R, int T>
void tile_at(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r, int64_t r1, int64_t t0) {
  if (r + R <= r1) {
    tile<Bits, S, R, T>(y, ldy, a, w, r, t0);
  } else {  // the last rows one by one: each output's arithmetic does not depend on R
    for (; r < r1; ++r) tile<Bits, S, 1, T>(y, ldy, a, w, r, t0);
  }
}

template <int Bits, DType S>
void matmul_impl(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  const int64_t block = imax(2, kL2Bytes / w.cols / 2 * 2);
  for (int64_t b0 = 0; b0 < a.n; b0 += block) {
    const int64_t b1 = imin(a.n, b0 + block);
    for (int64_t r = r0; r < r1; r += 2) {
      int64_t t = b0;
      for (; t + 2 <= b1; t += 2) tile_at<Bits, S, 2, 2>(y, ldy, a, w, r, r1, t);
      if (t < b1) tile_at<Bits, S, 2, 1>(y, ldy, a, w, r, r1, t);
    }
  }
}

// Writes the 32 int8 values of one block in the table's order (see the top comment).
template <int Bits>
inline void store_block(int8_t* qd, int64_t c, int64_t cols, __m256i q0, __m256i q1, __m256i q2, __m256i q3) {
  // Pack 4 x 8 int32 (values 0..31 in order) to 32 int8 in order: packs work per 128-bit half,
  // the permute puts the halves back in order.
  const __m256i w01 = _mm256_packs_epi32(q0, q1), w23 = _mm256_packs_epi32(q2, q3);
  __m256i b = _mm256_packs_epi16(w01, w23);
  b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  alignas(32) int8_t v[32];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), b);
  if constexpr (Bits == 4) {
    const int64_t c0 = c / 64 * 64, half = imin(64, cols - c0) / 2, k = (c - c0) / 2;
    for (int i = 0; i < 16; ++i) {
      qd[c0 + k + i] = v[2 * i];
      qd[c0 + half + k + i] = v[2 * i + 1];
    }
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qd + c), b);
  }
}

template <int Bits>
void quantize_impl(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  const int64_t cols = a.cols, blocks = cols / kActBlock, groups = cols / a.group_size;
  const int bpg = a.group_size / kActBlock;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t t = t0; t < t1; ++t) {
    const float* xs = x + t * ldx;
    int8_t* qd = a.q + t * cols;
    float gsum = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      const float* xb = xs + b * kActBlock;
      __m256 v[4];
      for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(xb + 8 * i);
      const __m256 amax = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                        _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
      const float d = hmax(amax) / 127.0f;
      const __m256 id = _mm256_set1_ps(d != 0 ? 1.0f / d : 0.0f);
      __m256i q[4];  // round half to even: the MXCSR default, as the reference's lrint
      for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], id));
      a.d[t * blocks + b] = d;
      gsum += d * float(hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]))));
      if ((b + 1) % bpg == 0) {
        a.gsum[t * groups + b / bpg] = gsum;
        gsum = 0;
      }
      store_block<Bits>(qd, b * kActBlock, cols, q[0], q[1], q[2], q[3]);
    }
  }
}

}  // namespace

void quantize_act_avx2(ActQ8& a, const float* x, int64_t ldx, int64_t t0, int64_t t1) {
  if (a.bits == 4) quantize_impl<4>(a, x, ldx, t0, t1);
  else quantize_impl<8>(a, x, ldx, t0, t1);
}

void matmul_act8_avx2(float* y, int64_t ldy, const ActQ8& a, const WeightMatrix& w, int64_t r0, int64_t r1) {
  dispatch_q(w, [&]<int Bits, DType S>() { matmul_impl<Bits, S>(y, ldy, a, w, r0, r1); });
}

}  // namespace pensieve
