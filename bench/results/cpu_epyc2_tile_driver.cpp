// Times the AVX-512 int8 q4 kernel's 2 x 4 tiles (slabs, bias terms, reduction) directly, one
// thread, cycling over `rows` rows of `cols` q4 values (group 64, f16 scales) against 4 tokens:
// 4 rows stay in L1, 256 rows in L2. Timing only: the inputs are arbitrary bytes. It includes a
// copy of the kernel source, so parts of that copy can be removed with macros
// (bench/results/cpu_epyc2_tile_ablation.patch: -DNOBIAS, -DNOHSUM, -DNOPFW, -DNOPFS) and timed
// the same way. (Calling `slab` alone in a loop is not a fair measure: its per-token pointers are
// then recomputed per call, which the tile's loop hoists; that costs ~20%.)
//
//   cp kernels/x86/matmul_act8_avx512.cpp /tmp/k.cpp
//   g++ -O3 -DNDEBUG -ffp-contract=off -std=c++20 -mavx512f -mavx512bw -mavx512vl -mavx512vnni \
//       -mavx512bf16 -mfma -mf16c -I. -DVARIANT='"/tmp/k.cpp"' \
//       bench/results/cpu_epyc2_tile_driver.cpp -o /tmp/drv
//   /tmp/drv 3072 4     # 2 x 4 tiles over 4 rows x 3072 (L1); also 6144 4, and 3072 256 (L2)
#include VARIANT
#include <chrono>
#include <cstdio>
#include <vector>
using namespace pensieve;
int main(int argc, char** argv) {
  const int64_t cols = argc > 1 ? atoll(argv[1]) : 3072, rows = argc > 2 ? atoll(argv[2]) : 4;
  constexpr int R = 2, T = 4;
  std::vector<uint8_t> wb(rows * cols / 2 + 64);
  uint8_t* wbuf = reinterpret_cast<uint8_t*>((uintptr_t(wb.data()) + 63) & ~uintptr_t(63));
  std::vector<int8_t> xq(T * cols + 64);
  std::vector<float> d(T * cols / 32, 0.01f), g(T * cols / 64, 0.5f), y(T * rows);
  std::vector<uint16_t> sc(rows * cols / 64, 0x2000), bi(rows * cols / 64, 0x2000);
  for (int64_t i = 0; i < rows * cols / 2; ++i) wbuf[i] = uint8_t(i * 37);
  for (size_t i = 0; i < xq.size(); ++i) xq[i] = int8_t(i * 11);
  WeightMatrix w;
  w.dtype = DType::q4; w.rows = rows; w.cols = cols; w.data = wbuf; w.scales = sc.data(); w.biases = bi.data();
  w.scale_dtype = DType::f16; w.group_size = 64;
  ActQ8 a{xq.data(), d.data(), g.data(), T, cols, 4, 64};
  Lanes ln;  // as matmul_impl sets it up for q4, group 64
  ln.groups = cols / 64; ln.group = 64; ln.gshift = 6; ln.blocks = cols / 32;
  alignas(64) int32_t sg[16], gi[16], bx[16];
  for (int p = 0; p < 16; ++p) { sg[p] = slab_block(p) * 32 / 64; gi[p] = 8 * p / 64; bx[p] = 8 * p / 32; }
  ln.slab_group_idx = _mm512_load_si512(sg);
  ln.group_idx = _mm512_load_si512(gi);
  ln.block_idx = _mm512_load_si512(bx);
  ln.slab_group_mask = first_lanes16(8);
  const long iters = 2000000L * 3072 / cols;
  double best = 1e9;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < iters; ++i) tile<4, DType::f16, R, T>(y.data(), rows, a, w, (i * R) % rows, 0, ln);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double dp = cols / 64.0 * R * T;  // vpdpbusd per tile
  printf("tile<%d,%d> cols %ld rows %ld: %.1f ns each, %.3f vpdpbusd/ns (%g)\n", R, T, long(cols), long(rows),
         best / iters * 1e9, iters * dp / best * 1e-9, y[0]);
}
