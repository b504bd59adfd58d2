// The decoder (Phi3ForCausalLM / LlamaForCausalLM) on the CPU. For T batch tokens:
//
//   h = embed[tokens]
//   for each layer:  h = h + attn(norm1(h))        attention_block
//                    h = h + mlp(norm2(h))         mlp_block
//   logits = lm_head(norm(h[rows that want logits]))
//
//   attn(x) = o_proj(attention(rope(q), rope(k), v))  with q, k, v = split(qkv_proj(x))
//   mlp(x)  = down_proj(silu(gate) * up)              with gate, up = split(gate_up_proj(x))
#include "models/forward_cpu.h"

#include <algorithm>
#include <cmath>

namespace pensieve {

AttnParams attn_params(const ModelConfig& c) {
  AttnParams p;
  p.n_heads = c.n_heads;
  p.scale = float(1.0 / std::sqrt(double(c.head_dim)));
  p.window = c.sliding_window;
  p.q_stride = c.qkv_dim();
  p.out_stride = c.q_dim();
  return p;
}

int64_t logits_rows(const std::vector<SeqChunk>& batch) {
  int64_t rows = 0;
  for (const SeqChunk& s : batch)
    rows += s.logits == SeqChunk::Logits::all ? s.n : s.logits == SeqChunk::Logits::last ? 1 : 0;
  return rows;
}

template <class T>
static T* grow(std::vector<T>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
  return v.data();
}

CpuForward::CpuForward(const ModelConfig& c, const Weights& w, KvCache& cache, KernelContext& ctx, Precision precision)
    : c_(c), w_(w), cache_(cache), ctx_(ctx), precision_(precision), rope_(c.rope) {}

// cos/sin [T, rot/2] for every token's position, attention factor folded in.
void CpuForward::rope_tables(const std::vector<SeqChunk>& batch, int64_t T) {
  const int half = c_.rope.rot_dim / 2;
  float* cs = grow(cos_, T * half);
  float* sn = grow(sin_, T * half);
  int64_t t = 0;
  for (const SeqChunk& s : batch)
    for (int64_t i = 0; i < s.n; ++i, ++t) rope_.fill(s.pos0 + i, s.long_rope, cs + t * half, sn + t * half);
}

// y[T, p.rows()] = x · pᵀ, each part writing its own column range of y.
void CpuForward::project(const Projection& p, float* y, const float* x, int64_t T) {
  int64_t ldy = p.rows(), offset = 0;
  for (const WeightMatrix& part : p.parts) {
    ops::matmul(ctx_, y + offset, x, T, part, precision_, part.cols, ldy);
    offset += part.rows;
  }
}

// Writes the roped k and the v of every batch token into its cache slot.
void CpuForward::store_kv(int l, const std::vector<SeqChunk>& batch) {
  const int64_t hd = c_.head_dim, stride = c_.qkv_dim();
  const CpuKernels& k = ctx_.k();
  int64_t t = 0;
  for (const SeqChunk& s : batch) {
    for (int64_t i = 0; i < s.n; ++i, ++t) {
      int64_t pos = s.pos0 + i;
      int32_t block = s.block_table[pos / cache_.block_size()];
      int slot = int(pos % cache_.block_size());
      for (int h = 0; h < c_.n_kv_heads; ++h) {
        const float* kr = qkv_.data() + t * stride + c_.q_dim() + h * hd;
        const float* vr = kr + c_.kv_dim();
        void* kd = cache_.k_at(block, l, h, slot);
        void* vd = cache_.v_at(block, l, h, slot);
        if (cache_.dtype() == DType::f16) {
          k.f32_to_f16(static_cast<uint16_t*>(kd), kr, 0, hd);
          k.f32_to_f16(static_cast<uint16_t*>(vd), vr, 0, hd);
        } else {
          std::copy(kr, kr + hd, static_cast<float*>(kd));
          std::copy(vr, vr + hd, static_cast<float*>(vd));
        }
      }
    }
  }
}

void CpuForward::attention_block(int l, const std::vector<SeqChunk>& batch, int64_t T) {
  const LayerWeights& L = w_.layers[size_t(l)];
  ops::rmsnorm(ctx_, xn_.data(), x_.data(), L.attn_norm.data(), T, c_.hidden, float(c_.rms_eps));
  project(L.qkv, qkv_.data(), xn_.data(), T);
  // RoPE on the q heads and the k heads (k follows q in each row).
  ops::rope(ctx_, qkv_.data(), T, c_.qkv_dim(), c_.n_heads + c_.n_kv_heads, c_.head_dim, c_.rope.rot_dim,
            cos_.data(), sin_.data());
  store_kv(l, batch);

  ops::attention(ctx_, attn_.data(), qkv_.data(), seqs_.data(), int(seqs_.size()), cache_.layer(l), attn_params(c_));

  ops::matmul(ctx_, proj_.data(), attn_.data(), T, L.o, precision_);
  ops::add(ctx_, x_.data(), proj_.data(), T * c_.hidden);
}

void CpuForward::mlp_block(int l, int64_t T) {
  const LayerWeights& L = w_.layers[size_t(l)];
  ops::rmsnorm(ctx_, xn_.data(), x_.data(), L.mlp_norm.data(), T, c_.hidden, float(c_.rms_eps));
  project(L.gate_up, gu_.data(), xn_.data(), T);
  ops::silu_mul(ctx_, act_.data(), gu_.data(), T, c_.ffn);
  ops::matmul(ctx_, proj_.data(), act_.data(), T, L.down, precision_);
  ops::add(ctx_, x_.data(), proj_.data(), T * c_.hidden);
}

Status CpuForward::run(const std::vector<SeqChunk>& batch, float* logits) {
  int64_t T = 0;
  seqs_.clear();
  for (const SeqChunk& s : batch) {
    if (s.n <= 0 || s.pos0 < 0 || !s.tokens || !s.block_table)
      return errorf("forward: empty or malformed chunk (n %lld, pos0 %lld)", (long long)s.n, (long long)s.pos0);
    for (int64_t i = 0; i < s.n; ++i)
      if (s.tokens[i] < 0 || s.tokens[i] >= c_.vocab)
        return errorf("forward: token id %d is outside the vocabulary [0, %lld)", s.tokens[i], (long long)c_.vocab);
    AttnSeq a;
    a.q_begin = T;
    a.n_q = s.n;
    a.pos0 = s.pos0;
    a.block_table = s.block_table;
    seqs_.push_back(a);
    T += s.n;
  }
  if (T == 0) return Status::Ok();

  grow(x_, T * c_.hidden);
  grow(xn_, T * c_.hidden);
  grow(qkv_, T * c_.qkv_dim());
  grow(attn_, T * c_.q_dim());
  grow(proj_, T * c_.hidden);
  grow(gu_, T * 2 * c_.ffn);
  grow(act_, T * c_.ffn);
  rope_tables(batch, T);

  int64_t t = 0;
  for (const SeqChunk& s : batch) {
    ops::embed(ctx_, x_.data() + t * c_.hidden, s.tokens, s.n, w_.embed);
    t += s.n;
  }
  for (int l = 0; l < c_.n_layers; ++l) {
    attention_block(l, batch, T);
    mlp_block(l, T);
  }

  // Gather the rows that want logits, then final norm and lm_head on those only.
  int64_t rows = 0;
  t = 0;
  for (const SeqChunk& s : batch) {
    int64_t first = s.logits == SeqChunk::Logits::all ? 0 : s.logits == SeqChunk::Logits::last ? s.n - 1 : s.n;
    for (int64_t i = first; i < s.n; ++i, ++rows)
      std::copy_n(x_.data() + (t + i) * c_.hidden, c_.hidden, xn_.data() + rows * c_.hidden);
    t += s.n;
  }
  if (rows == 0) return Status::Ok();
  ops::rmsnorm(ctx_, proj_.data(), xn_.data(), w_.final_norm.data(), rows, c_.hidden, float(c_.rms_eps));
  ops::matmul(ctx_, logits, proj_.data(), rows, w_.lm_head, precision_);
  return Status::Ok();
}

}  // namespace pensieve
