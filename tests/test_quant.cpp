// MLX affine quantization: bit-exact against the fixtures, error bounds on random data, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "quant/quantize.h"
#include "tensor/safetensors.h"

namespace pensieve {
namespace {

const std::string kData = PENSIEVE_TEST_DATA;

SafetensorsFile open_or_die(const std::string& path) {
  auto f = SafetensorsFile::open(path);
  EXPECT_TRUE(f.ok()) << (f.ok() ? "" : f.error());
  return std::move(f).value();
}

WeightMatrix quant_view(const SafetensorsFile& f, const std::string& module, int bits, int group) {
  const SafetensorsEntry* w = f.find(module + ".weight");
  const SafetensorsEntry* s = f.find(module + ".scales");
  const SafetensorsEntry* b = f.find(module + ".biases");
  EXPECT_TRUE(w && s && b) << module;
  int64_t rows = w->shape[0], cols = w->shape[1] * 32 / bits;
  auto m = make_quant_matrix(bits, group, rows, cols, f.data(*w), int64_t(w->nbytes), f.data(*s), int64_t(s->nbytes),
                             f.data(*b), int64_t(b->nbytes), s->dtype);
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error());
  return *m;
}

// Quantizing phi3-tiny's float16 weights must give the MLX file's words, scales and biases
// byte for byte (the embedding and lm_head of the f16 file hold only their first 1024 rows).
TEST(QuantFixtures, QuantizeReproducesMlxFileExactly) {
  SafetensorsFile f16 = open_or_die(kData + "/models/phi3-tiny-f16-v1024/model.safetensors");
  SafetensorsFile q4 = open_or_die(kData + "/models/phi3-tiny/model.safetensors");
  int checked = 0;
  for (const SafetensorsEntry& e : f16.entries()) {
    const std::string suffix = ".weight";
    std::string module = e.name.substr(0, e.name.size() - suffix.size());
    if (!q4.find(module + ".scales")) continue;  // norms are not quantized
    ASSERT_EQ(e.dtype, DType::f16);
    int64_t rows = e.shape[0], cols = e.shape[1];
    auto q = quantize(f16.data(e), DType::f16, rows, cols, 4, 64, DType::f16);
    ASSERT_TRUE(q.ok()) << q.error();
    WeightMatrix ref = quant_view(q4, module, 4, 64);
    ASSERT_EQ(ref.cols, cols) << module;
    ASSERT_GE(ref.rows, rows) << module;
    EXPECT_EQ(0, std::memcmp(q->packed.data(), ref.data, size_t(rows * cols / 2))) << module << " packed words";
    EXPECT_EQ(0, std::memcmp(q->scales.data(), ref.scales, size_t(rows * cols / 64 * 2))) << module << " scales";
    EXPECT_EQ(0, std::memcmp(q->biases.data(), ref.biases, size_t(rows * cols / 64 * 2))) << module << " biases";
    ++checked;
  }
  EXPECT_EQ(checked, 2 + 2 * 4);  // embed, lm_head, 4 matrices x 2 layers
}

TEST(QuantFixtures, DequantizeMatchesGolden) {
  SafetensorsFile q4 = open_or_die(kData + "/models/phi3-tiny/model.safetensors");
  SafetensorsFile golden = open_or_die(kData + "/models/phi3-tiny/golden.safetensors");
  struct Case { std::string module, golden; int64_t rows; };
  for (const Case& c : {Case{"model.layers.0.self_attn.o_proj", "dequant.model.layers.0.self_attn.o_proj.weight", -1},
                        Case{"model.embed_tokens", "dequant.model.embed_tokens.weight.rows0_8", 8}}) {
    WeightMatrix w = quant_view(q4, c.module, 4, 64);
    auto g = golden.tensor(c.golden);
    ASSERT_TRUE(g.ok()) << g.error();
    int64_t rows = c.rows < 0 ? w.rows : c.rows;
    ASSERT_EQ(g->dim(0), rows);
    ASSERT_EQ(g->dim(1), w.cols);
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(w, r, row.data());
      for (int64_t col = 0; col < w.cols; ++col)
        ASSERT_EQ(row[size_t(col)], g->row<float>(r)[col]) << c.module << " [" << r << ", " << col << "]";
    }
  }
}

// Error bound on random data. With s0 = (max - min) / n (n = 2^bits - 1), MLX snaps the scale to
// |edge| / q0 with q0 = rint(|edge| / s0) >= 7.5 rounded (the edge of larger magnitude spans at
// least half the range), so |scale| is within a factor 1 ± 1/15 of s0: values inside the covered
// range are within |scale| / 2 of a level, and the far end can be left uncovered by up to
// n·s0/16 ≈ s0. Hence |w - dequant(w)| <= s0 (one step), plus the rounding of scale and bias to
// their storage type.
TEST(Quant, RoundTripErrorWithinHalfStep) {
  std::mt19937 rng(1234);
  for (int bits : {4, 8}) {
    for (int group : {32, 64, 128}) {
      for (DType st : {DType::f32, DType::f16, DType::bf16}) {
        const int64_t rows = 7, cols = group * 3;
        std::normal_distribution<float> nd(0.0f, 0.5f);
        std::vector<float> w(size_t(rows * cols));
        for (float& v : w) v = nd(rng);
        auto q = quantize(w.data(), DType::f32, rows, cols, bits, group, st);
        ASSERT_TRUE(q.ok()) << q.error();
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = 0; r < rows; ++r) {
          dequantize_row(q->view(), r, row.data());
          for (int64_t g = 0; g < cols / group; ++g) {
            float lo = INFINITY, hi = -INFINITY;
            for (int j = 0; j < group; ++j) {
              lo = std::min(lo, w[size_t(r * cols + g * group + j)]);
              hi = std::max(hi, w[size_t(r * cols + g * group + j)]);
            }
            float step = (hi - lo) / float((1 << bits) - 1);
            // Storage rounding of scale (relative 2^-8 for bf16, 2^-11 for f16) times |q| <= 2^bits,
            // plus bias rounding, on top of the half step.
            float rel = st == DType::bf16 ? 1.0f / 256 : st == DType::f16 ? 1.0f / 2048 : 1e-6f;
            float tol = step * 1.0001f + rel * (std::fabs(hi) + std::fabs(lo)) * 2;
            for (int j = 0; j < group; ++j) {
              int64_t c = g * group + j;
              ASSERT_NEAR(row[size_t(c)], w[size_t(r * cols + c)], tol)
                  << "bits " << bits << " group " << group << " scale " << dtype_name(st);
            }
          }
        }
      }
    }
  }
}

TEST(Quant, BadInputIsAnError) {
  std::vector<float> w(64 * 3);
  EXPECT_FALSE(quantize(w.data(), DType::f32, 3, 60, 4, 64, DType::f16).ok());   // cols % group
  EXPECT_FALSE(quantize(w.data(), DType::f32, 3, 64, 3, 64, DType::f16).ok());   // bits
  EXPECT_FALSE(quantize(w.data(), DType::f32, 3, 64, 4, 48, DType::f16).ok());   // group size
  EXPECT_FALSE(quantize(w.data(), DType::i32, 3, 64, 4, 64, DType::f16).ok());   // input type
  EXPECT_FALSE(quantize(w.data(), DType::f32, 0, 64, 4, 64, DType::f16).ok());   // empty
  uint32_t packed[32];
  uint16_t scales[4], biases[4];
  // Buffer sizes must match the shape exactly: [4, 64] at 4 bits is 128 bytes of words, 8 of scales.
  EXPECT_TRUE(make_quant_matrix(4, 64, 4, 64, packed, 128, scales, 8, biases, 8, DType::f16).ok());
  EXPECT_FALSE(make_quant_matrix(4, 64, 4, 64, packed, 124, scales, 8, biases, 8, DType::f16).ok());
  EXPECT_FALSE(make_quant_matrix(4, 64, 4, 64, packed, 128, scales, 6, biases, 8, DType::f16).ok());
  EXPECT_FALSE(make_quant_matrix(4, 64, 4, 64, packed, 128, scales, 8, biases, 10, DType::f16).ok());
  EXPECT_FALSE(make_quant_matrix(4, 64, 4, 64, nullptr, 128, scales, 8, biases, 8, DType::f16).ok());
}

TEST(HalfPrecision, ConversionsRoundToNearestEven) {
  // Every f16 value round-trips exactly through f32.
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), h) << h;
  }
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);        // ties away from the largest finite go to Inf
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);  // tie to even (down)
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);  // tie to even (up)
  EXPECT_EQ(f32_to_f16(5.9604645e-08f), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(2.9802322e-08f), 0x0000);  // half of it: tie to even, zero
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);  // tie to even
  EXPECT_EQ(f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
}

}  // namespace
}  // namespace pensieve
