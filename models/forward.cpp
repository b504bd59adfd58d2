#include "models/forward.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace pensieve {

int64_t topk_rows(const std::vector<SeqChunk>& batch) {
  int64_t rows = 0;
  for (const SeqChunk& s : batch)
    if (s.top_k > 0) rows += s.logits == SeqChunk::Logits::all ? s.n : s.logits == SeqChunk::Logits::last ? 1 : 0;
  return rows;
}

void select_topk(const float* x, int64_t n, int k, float* values, int32_t* ids) {
  k = int(std::min<int64_t>(k, n));
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
  for (int i = 0; i < k; ++i) {
    values[i] = x[idx[size_t(i)]];
    ids[i] = idx[size_t(i)];
  }
}

Status Forward::run_topk(const std::vector<SeqChunk>& batch, float* logits, const TopK& top) {
  if (topk_rows(batch) == 0) return run(batch, logits);
  for (const SeqChunk& s : batch)
    if (s.top_k > kMaxTopK) return errorf("forward: top_k %d exceeds %d", s.top_k, kMaxTopK);
  const int64_t V = vocab();
  topk_scratch_.resize(size_t(logits_rows(batch) * V));
  PENSIEVE_TRY(run(batch, topk_scratch_.data()));
  int64_t row = 0, full = 0, tk = 0;
  for (const SeqChunk& s : batch) {
    int64_t rows = s.logits == SeqChunk::Logits::all ? s.n : s.logits == SeqChunk::Logits::last ? 1 : 0;
    for (int64_t i = 0; i < rows; ++i, ++row) {
      const float* src = topk_scratch_.data() + row * V;
      if (s.top_k > 0) {
        select_topk(src, V, s.top_k, top.values + tk * kMaxTopK, top.ids + tk * kMaxTopK);
        ++tk;
      } else {
        std::memcpy(logits + full++ * V, src, size_t(V) * sizeof(float));
      }
    }
  }
  return Status::Ok();
}

}  // namespace pensieve
