// The decoder on a Vulkan GPU: see forward_vulkan.h for the design. In order below: setup (weights,
// cache, activations), the host side of a step (pieces, inputs, readback), and the recording.
#include "models/forward_vulkan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace pensieve {

uint32_t VulkanForward::attn_split() {
  static const uint32_t v = [] {
    const char* e = std::getenv("PENSIEVE_VK_ATTN_SPLIT");
    const long n = e ? std::atol(e) : 0;
    return n >= 128 && n % 128 == 0 ? uint32_t(n) : kAttnSplit;
  }();
  return v;
}

using vulkan::BufferSlice;
using vulkan::CommandList;
using vulkan::GpuWeight;
using vulkan::MemoryKind;

namespace {

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// A path's switch for A/B runs: the environment variable `name` set to 0 turns it off.
bool env_off(const char* name) {
  const char* e = std::getenv(name);
  return e && std::string(e) == "0";
}

Result<vulkan::Buffer> make_buffer(vulkan::Context& ctx, uint64_t bytes, MemoryKind kind, const char* what) {
  return vulkan::Buffer::create(ctx, std::max<uint64_t>(bytes, 16), kind, what);
}

int64_t rows_of(const SeqChunk& s) {
  return s.logits == SeqChunk::Logits::all ? s.n : s.logits == SeqChunk::Logits::last ? 1 : 0;
}

}  // namespace

// A part of a batch that runs as one submission: at most kMaxStepTokens tokens and kMaxStepRows
// logits rows (a chunk may be cut in several pieces; its KV cache fills in order).
struct VulkanForward::Piece {
  std::vector<SeqChunk> chunks;
  int64_t tokens = 0, full_rows = 0, top_rows = 0;
};

std::string VulkanForward::unsupported(const ModelConfig& c, const Weights& w, const KvCache& cache) {
  char buf[256];
  if (c.head_dim % 2 || (c.rope.rot_dim / 2) % 2) {
    std::snprintf(buf, sizeof buf, "head_dim %d / rotary dims %d (the fused RoPE kernel needs a multiple of 4)",
                  c.head_dim, c.rope.rot_dim);
    return buf;
  }
  if (c.head_dim > 256) return "head_dim above 256";
  if (cache.dtype() != DType::f16 && cache.dtype() != DType::f32) return "KV cache type";
  auto check = [&](const WeightMatrix& m) { return vulkan::weight_plane_bytes(m).ok(); };
  bool ok = check(w.embed) && check(w.lm_head);
  for (const LayerWeights& L : w.layers) {
    for (const auto& p : L.qkv.parts) ok = ok && check(p);
    for (const auto& p : L.gate_up.parts) ok = ok && check(p);
    ok = ok && check(L.o) && check(L.down);
  }
  if (!ok) return "a weight type the shaders do not read";
  return "";
}

VulkanForward::VulkanForward(const ModelConfig& c, const Weights& w, KvCache& cache, Precision p,
                             std::unique_ptr<vulkan::Context> ctx)
    : c_(c), w_(w), cache_(cache), precision_(p), ctx_(std::move(ctx)), rope_(c.rope) {}

VulkanForward::~VulkanForward() {
  // Command lists first (they may still be running), then buffers, then the context (member order).
  recordings_.clear();
}

Result<std::unique_ptr<VulkanForward>> VulkanForward::create(const ModelConfig& c, const Weights& w, KvCache& cache,
                                                             Precision precision, std::unique_ptr<vulkan::Context> ctx) {
  if (std::string why = unsupported(c, w, cache); !why.empty())
    return errorf("the Vulkan backend does not support this model: %s", why.c_str());
  std::unique_ptr<VulkanForward> f(new VulkanForward(c, w, cache, precision, std::move(ctx)));
  PENSIEVE_TRY(f->init());
  return f;
}

Status VulkanForward::init() {
  PENSIEVE_TRY(upload_weights());
  PENSIEVE_TRY(allocate());
  chunk_attention_ = !batch_invariant() && vulkan::ops::flash_attention_supported(*ctx_, kv_[0], attn_params(c_));
  // The persistent layer (fast precision: its projections use int8 x): PENSIEVE_VK_PERSISTENT=0
  // keeps the dispatch-per-op path (A/B runs).
  static const bool persistent_off = env_off("PENSIEVE_VK_PERSISTENT");
  persistent_ = !persistent_off && precision_ == Precision::fast && !layers_.empty() &&
                vulkan::ops::decode_layer_unsupported(*ctx_, layer_args(0)).empty();
  if (persistent_) {
    // The sync words in device-local memory the host can map where the GPU has such (the
    // give-up flag is then read in place; a copy to readback memory cost its two barriers, ~3 us
    // per step on the H200), else in device memory with a copy.
    sync_mapped_ = ctx_->info().host_visible_device_local_bytes >= (1u << 20) && !ctx_->info().unified_memory;
    auto s = make_buffer(*ctx_, uint64_t(c_.n_layers + 1) * 4, sync_mapped_ ? MemoryKind::input : MemoryKind::device,
                         "layer sync");
    if (!s.ok()) return std::move(s).take_error();
    sync_ = std::move(*s);
    if (!sync_mapped_) {
      auto r = make_buffer(*ctx_, 4, MemoryKind::readback, "layer sync readback");
      if (!r.ok()) return std::move(r).take_error();
      out_sync_ = std::move(*r);
    }
    auto cl = CommandList::create(*ctx_);
    if (!cl.ok()) return std::move(cl).take_error();
    PENSIEVE_TRY((*cl)->begin());
    PENSIEVE_TRY((*cl)->fill(sync_.whole(), 0));
    if (!sync_mapped_) PENSIEVE_TRY((*cl)->fill(out_sync_.whole(), 0));
    PENSIEVE_TRY((*cl)->end());
    PENSIEVE_TRY((*cl)->submit_and_wait());
  }
  return Status::Ok();
}

// Layer l of a one-token step as ops::decode_layer takes it (the token's inputs at row 0).
vulkan::ops::DecodeLayer VulkanForward::layer_args(int l) const {
  const Layer& L = layers_[size_t(l)];
  const int half = std::max(c_.rope.rot_dim / 2, 1);
  vulkan::ops::DecodeLayer d;
  d.qkv = &L.qkv[0];
  d.o = &L.o;
  d.gate_up = &L.gate_up[0];
  d.down = &L.down;
  d.attn_norm = L.attn_norm;
  d.mlp_norm = L.mlp_norm;
  d.x = x_.slice(0, uint64_t(c_.hidden) * 4);
  d.qkv_out = qkv_.slice(0, uint64_t(c_.qkv_dim()) * 4);
  d.attn = attn_.slice(0, uint64_t(c_.q_dim()) * 4);
  d.gu = gu_.slice(0, uint64_t(c_.ffn) * 4);
  d.kv = kv_[size_t(l)];
  d.cos = cos_.slice(0, uint64_t(half) * 4);
  d.sin = sin_.slice(0, uint64_t(half) * 4);
  d.slots = slots_.slice(0, 4);
  d.meta = meta_.slice(0, sizeof(vulkan::SeqMeta));
  d.tables = tables_.whole();
  d.sync = sync_.size() ? sync_.whole() : BufferSlice{};
  d.layer = l;
  d.n_heads = c_.n_heads;
  d.rot_dim = c_.rope.rot_dim;
  d.p = attn_params(c_);
  d.eps = float(c_.rms_eps);
  return d;
}

// ---- Setup -----------------------------------------------------------------------------------

Status VulkanForward::upload_weights() {
  vulkan::Context& ctx = *ctx_;
  std::map<const void*, GpuWeight> seen;  // tied lm_head: uploaded once
  // Uploads the parts of a projection as ONE matrix (rows concatenated: every plane is row-major),
  // so split q/k/v or gate/up run as a single fused matvec.
  auto upload = [&](const std::vector<WeightMatrix>& parts) -> Result<GpuWeight> {
    if (parts.size() == 1)
      if (auto it = seen.find(parts[0].data); it != seen.end()) return it->second;
    const WeightMatrix& p0 = parts[0];
    int64_t rows = 0;
    vulkan::WeightPlaneBytes total;
    for (const WeightMatrix& p : parts) {
      if (p.dtype != p0.dtype || p.cols != p0.cols || p.scale_dtype != p0.scale_dtype || p.group_size != p0.group_size)
        return errorf("vulkan: projection parts of different types or shapes");
      auto b = vulkan::weight_plane_bytes(p);
      if (!b.ok()) return std::move(b).take_error();
      total.data += b->data;
      total.scales += b->scales;
      total.biases += b->biases;
      rows += p.rows;
    }
    vulkan::GpuWeightBuffers g;
    auto d = make_buffer(ctx, total.data, MemoryKind::device, "weights");
    if (!d.ok()) return std::move(d).take_error();
    g.data = std::move(*d);
    if (p0.quantized()) {
      auto s = make_buffer(ctx, total.scales, MemoryKind::device, "weight scales");
      if (!s.ok()) return std::move(s).take_error();
      auto b = make_buffer(ctx, total.biases, MemoryKind::device, "weight biases");
      if (!b.ok()) return std::move(b).take_error();
      g.scales = std::move(*s);
      g.biases = std::move(*b);
    }
    vulkan::WeightPlaneBytes off;
    for (const WeightMatrix& p : parts) {
      auto b = vulkan::weight_plane_bytes(p);
      PENSIEVE_TRY(ctx.upload(g.data, off.data, p.data, b->data));
      if (p.quantized()) {
        PENSIEVE_TRY(ctx.upload(g.scales, off.scales, p.scales, b->scales));
        PENSIEVE_TRY(ctx.upload(g.biases, off.biases, p.biases, b->biases));
      }
      off.data += b->data;
      off.scales += b->scales;
      off.biases += b->biases;
    }
    g.w.dtype = p0.dtype;
    g.w.rows = rows;
    g.w.cols = p0.cols;
    g.w.data = g.data.slice(0, round_up(total.data, 4));
    if (p0.quantized()) {
      g.w.scale_dtype = p0.scale_dtype;
      g.w.group_size = p0.group_size;
      // Whole words: the shaders read 16-bit planes as 32-bit words (buffers are padded to 16 bytes).
      g.w.scales = g.scales.slice(0, round_up(total.scales, 4));
      g.w.biases = g.biases.slice(0, round_up(total.biases, 4));
    }
    GpuWeight w = g.w;
    owned_.push_back(std::move(g));
    if (parts.size() == 1) seen[parts[0].data] = w;
    return w;
  };
  auto one = [&](const WeightMatrix& m) { return upload({m}); };

  auto e = one(w_.embed);
  if (!e.ok()) return std::move(e).take_error();
  embed_ = *e;
  auto lm = one(w_.lm_head);
  if (!lm.ok()) return std::move(lm).take_error();
  lm_head_ = *lm;

  // Norm vectors: one buffer, each vector at an offset every device accepts for a binding.
  const uint64_t stride = round_up(uint64_t(c_.hidden) * 4, 256);
  auto nb = make_buffer(ctx, stride * (2 * uint64_t(c_.n_layers) + 1), MemoryKind::device, "norm weights");
  if (!nb.ok()) return std::move(nb).take_error();
  norms_ = std::move(*nb);
  const uint64_t vec = uint64_t(c_.hidden) * 4;
  for (int l = 0; l < c_.n_layers; ++l) {
    const LayerWeights& L = w_.layers[size_t(l)];
    Layer g;
    auto qkv = upload(L.qkv.parts);
    if (!qkv.ok()) return std::move(qkv).take_error();
    g.qkv = {*qkv};
    auto gu = upload(L.gate_up.parts);
    if (!gu.ok()) return std::move(gu).take_error();
    g.gate_up = {*gu};
    auto o = one(L.o);
    if (!o.ok()) return std::move(o).take_error();
    g.o = *o;
    auto down = one(L.down);
    if (!down.ok()) return std::move(down).take_error();
    g.down = *down;
    PENSIEVE_TRY(ctx.upload(norms_, stride * (2 * l), L.attn_norm.data(), vec));
    PENSIEVE_TRY(ctx.upload(norms_, stride * (2 * l + 1), L.mlp_norm.data(), vec));
    g.attn_norm = norms_.slice(stride * (2 * l), vec);
    g.mlp_norm = norms_.slice(stride * (2 * l + 1), vec);
    layers_.push_back(std::move(g));
  }
  PENSIEVE_TRY(ctx.upload(norms_, stride * 2 * c_.n_layers, w_.final_norm.data(), vec));
  final_norm_ = norms_.slice(stride * 2 * c_.n_layers, vec);
  return Status::Ok();
}

uint64_t VulkanForward::attn_scratch_per_token(uint32_t splits) const {
  return splits <= 1 ? 0 : uint64_t(c_.n_heads) * splits * (uint64_t(c_.head_dim) + 2) * 4;
}

Status VulkanForward::allocate() {
  vulkan::Context& ctx = *ctx_;
  const int64_t T = kMaxStepTokens, R = kMaxStepRows, H = c_.hidden, V = c_.vocab;
  const int64_t half = std::max(c_.rope.rot_dim / 2, 1);

  // KV cache: one K and one V buffer per layer, [n_blocks, n_kv_heads, block_size, head_dim] each.
  const uint64_t esz = dtype_size(cache_.dtype());
  const uint64_t layer_bytes = uint64_t(cache_.layer_stride()) * esz;
  for (int l = 0; l < c_.n_layers; ++l) {
    auto k = make_buffer(ctx, layer_bytes, MemoryKind::device, "KV cache (K)");
    if (!k.ok()) return std::move(k).take_error();
    auto v = make_buffer(ctx, layer_bytes, MemoryKind::device, "KV cache (V)");
    if (!v.ok()) return std::move(v).take_error();
    vulkan::GpuKv g;
    g.k = k->slice(0, layer_bytes);
    g.v = v->slice(0, layer_bytes);
    g.dtype = cache_.dtype();
    g.block_size = cache_.block_size();
    g.n_kv_heads = c_.n_kv_heads;
    g.head_dim = c_.head_dim;
    g.head_stride = int64_t(cache_.block_size()) * c_.head_dim;
    g.block_stride = g.head_stride * c_.n_kv_heads;
    k_.push_back(std::move(*k));
    v_.push_back(std::move(*v));
    kv_.push_back(g);
  }
  {  // Zeroed once: the tensor-core prefill attention multiplies unwritten slots of a block by p = 0.
    auto cl = CommandList::create(ctx);
    if (!cl.ok()) return std::move(cl).take_error();
    PENSIEVE_TRY((*cl)->begin());
    for (size_t l = 0; l < k_.size(); ++l) {
      PENSIEVE_TRY((*cl)->fill(k_[l].whole(), 0));
      PENSIEVE_TRY((*cl)->fill(v_[l].whole(), 0));
    }
    PENSIEVE_TRY((*cl)->end());
    PENSIEVE_TRY((*cl)->submit_and_wait());
  }

  struct Want {
    vulkan::Buffer* buf;
    uint64_t bytes;
    MemoryKind kind;
    const char* what;
  };
  // Attention partials: enough for a full step at the pool's longest context, capped at 256 MiB
  // (steps at very long contexts are then cut in smaller pieces).
  const int64_t max_ctx = cache_.n_blocks() * cache_.block_size();
  const uint32_t max_splits = attn_splits(max_ctx);
  attn_scratch_bytes_ = std::max(attn_scratch_per_token(max_splits),
                                 std::min<uint64_t>(attn_scratch_per_token(max_splits) * T, 256ull << 20));
  table_capacity_ = std::max<int64_t>(4096, 2 * cache_.n_blocks());
  const std::vector<Want> wants = {
      {&x_, uint64_t(T * H) * 4, MemoryKind::device, "activations"},
      {&xn_, uint64_t(T * H) * 4, MemoryKind::device, "activations"},
      {&ssq_, uint64_t(T * vulkan::ops::coop_ssq_row(H)) * 4, MemoryKind::device, "activations"},
      {&proj_, uint64_t(T * H) * 4, MemoryKind::device, "activations"},
      {&qkv_, uint64_t(T * c_.qkv_dim()) * 4, MemoryKind::device, "activations"},
      {&attn_, uint64_t(T * c_.q_dim()) * 4, MemoryKind::device, "activations"},
      {&gu_, uint64_t(T * 2 * c_.ffn) * 4, MemoryKind::device, "activations"},
      {&act_, uint64_t(T * c_.ffn) * 4, MemoryKind::device, "activations"},
      {&xl_, uint64_t(R * H) * 4, MemoryKind::device, "activations"},
      {&logits_, uint64_t(R * V) * 4, MemoryKind::device, "logits"},
      {&attn_scratch_, attn_scratch_bytes_, MemoryKind::device, "attention partials"},
      {&topv_, uint64_t(R * kMaxTopK) * 4, MemoryKind::device, "top-k"},
      {&topi_, uint64_t(R * kMaxTopK) * 4, MemoryKind::device, "top-k"},
      {&topk_scratch_, vulkan::ops::topk_scratch_bytes(R, V, kMaxTopK), MemoryKind::device, "top-k scratch"},
      {&ids_, uint64_t(T) * 4, MemoryKind::input, "step inputs"},
      {&slots_, uint64_t(T) * 4, MemoryKind::input, "step inputs"},
      {&cos_, uint64_t(T * half) * 4, MemoryKind::input, "step inputs"},
      {&sin_, uint64_t(T * half) * 4, MemoryKind::input, "step inputs"},
      {&meta_, uint64_t(2 * T) * sizeof(vulkan::SeqMeta), MemoryKind::input, "step inputs"},
      {&tables_, uint64_t(table_capacity_) * 4, MemoryKind::input, "block tables"},
      {&gidx_, uint64_t(R) * 4, MemoryKind::input, "step inputs"},
      {&out_logits_, uint64_t(R * V) * 4, MemoryKind::readback, "logits readback"},
      {&out_topv_, uint64_t(R * kMaxTopK) * 4, MemoryKind::readback, "top-k readback"},
      {&out_topi_, uint64_t(R * kMaxTopK) * 4, MemoryKind::readback, "top-k readback"},
  };
  for (const Want& w : wants) {
    auto b = make_buffer(ctx, w.bytes, w.kind, w.what);
    if (!b.ok()) return std::move(b).take_error();
    *w.buf = std::move(*b);
  }
  return Status::Ok();
}

std::string VulkanForward::describe() const {
  const vulkan::MemoryUse& m = ctx_->memory_use();
  uint64_t weights = 0, kv = 0;
  for (const auto& o : owned_) weights += o.data.size() + o.scales.size() + o.biases.size();
  for (size_t l = 0; l < k_.size(); ++l) kv += k_[l].size() + v_[l].size();
  char buf[512];
  std::snprintf(buf, sizeof buf, "vulkan: %s; device memory %.2f GiB (weights %.2f GiB, KV cache %.2f GiB, other %.0f MiB)",
                ctx_->info().summary().c_str(), m.device / 1073741824.0, weights / 1073741824.0, kv / 1073741824.0,
                (m.device - weights - kv) / 1048576.0);
  return buf;
}

bool VulkanForward::batch_invariant() const {
  vulkan::GpuWeight probe = layers_.empty() ? lm_head_ : layers_[0].qkv[0];
  const std::string k = vulkan::ops::matmul_kernel(*ctx_, probe.cols, kMaxStepTokens, probe, precision_);
  return k != "matmul_coopmat" && k != "mmq4_coop";
}

void VulkanForward::set_profiling(bool on) {
  if (on == profiling_) return;
  profiling_ = on;
  recordings_.clear();
  last_ = nullptr;
}

Result<std::vector<vulkan::OpTime>> VulkanForward::last_profile() const {
  if (!last_) return errorf("vulkan: nothing submitted yet");
  return last_->profile();
}

Result<double> VulkanForward::last_gpu_ms() const {
  if (!last_) return errorf("vulkan: nothing submitted yet");
  return last_->gpu_ms();
}

// ---- A step, host side ---------------------------------------------------------------------------

Status VulkanForward::run(const std::vector<SeqChunk>& batch, float* logits) { return run_pieces(batch, logits, nullptr); }

Status VulkanForward::run_topk(const std::vector<SeqChunk>& batch, float* logits, const TopK& top) {
  return run_pieces(batch, logits, &top);
}

Status VulkanForward::run_pieces(const std::vector<SeqChunk>& batch, float* logits, const TopK* top) {
  int64_t max_len = 1;
  for (const SeqChunk& s : batch) {
    if (s.n <= 0 || s.pos0 < 0 || !s.tokens || !s.block_table)
      return errorf("forward: empty or malformed chunk (n %lld, pos0 %lld)", (long long)s.n, (long long)s.pos0);
    if (top && s.top_k > kMaxTopK) return errorf("forward: top_k %d exceeds %d", s.top_k, kMaxTopK);
    for (int64_t i = 0; i < s.n; ++i)
      if (s.tokens[i] < 0 || s.tokens[i] >= c_.vocab)
        return errorf("forward: token id %d is outside the vocabulary [0, %lld)", s.tokens[i], (long long)c_.vocab);
    const int64_t len = s.pos0 + s.n;
    for (int64_t b = 0; b < (len + cache_.block_size() - 1) / cache_.block_size(); ++b)
      if (s.block_table[b] < 0 || s.block_table[b] >= cache_.n_blocks())
        return errorf("forward: block %d is outside the KV pool", s.block_table[b]);
    max_len = std::max(max_len, len);
  }
  // Pieces: tokens limited by the step buffers and by the attention partials at this context.
  const uint32_t splits = attn_splits(max_len);
  const uint64_t per_token = attn_scratch_per_token(splits);
  const int64_t tok_limit = per_token ? std::min<int64_t>(kMaxStepTokens, int64_t(attn_scratch_bytes_ / per_token))
                                      : kMaxStepTokens;
  if (tok_limit < 1) return errorf("forward: a context of %lld tokens exceeds the attention scratch", (long long)max_len);

  std::vector<Piece> pieces;
  Piece cur;
  auto flush = [&] {
    if (cur.tokens) pieces.push_back(std::move(cur));
    cur = Piece();
  };
  for (const SeqChunk& s : batch) {
    const bool want_top = top && s.top_k > 0;
    for (int64_t done = 0; done < s.n;) {
      int64_t take = std::min(s.n - done, tok_limit - cur.tokens);
      const int64_t room = kMaxStepRows - cur.full_rows - cur.top_rows;
      if (s.logits == SeqChunk::Logits::all) take = std::min(take, room);
      const bool last_part = done + take == s.n;
      if (take <= 0 || (s.logits == SeqChunk::Logits::last && last_part && room == 0)) {
        flush();
        continue;
      }
      SeqChunk sub = s;
      sub.tokens = s.tokens + done;
      sub.n = take;
      sub.pos0 = s.pos0 + done;
      sub.top_k = want_top ? s.top_k : 0;
      if (s.logits == SeqChunk::Logits::last && !last_part) sub.logits = SeqChunk::Logits::none;
      (want_top ? cur.top_rows : cur.full_rows) += rows_of(sub);
      cur.tokens += take;
      cur.chunks.push_back(sub);
      done += take;
    }
  }
  flush();

  TopK out = top ? *top : TopK();
  for (const Piece& p : pieces) {
    PENSIEVE_TRY(run_piece(p, logits, top ? &out : nullptr));
    if (logits) logits += p.full_rows * c_.vocab;
    out.values += p.top_rows * kMaxTopK;
    out.ids += p.top_rows * kMaxTopK;
  }
  return Status::Ok();
}

// Writes the step inputs of a piece into the upload buffers and returns its shape.
Status VulkanForward::write_inputs(const Piece& piece, Shape* shape) {
  const int64_t T = piece.tokens, bs = cache_.block_size();
  const int half = c_.rope.rot_dim / 2;
  int64_t n_table = 0;
  for (const SeqChunk& s : piece.chunks) n_table += (s.pos0 + s.n + bs - 1) / bs;
  if (n_table > table_capacity_) {
    recordings_.clear();  // they bind the old buffer
    last_ = nullptr;
    table_capacity_ = std::max(2 * table_capacity_, n_table);
    auto b = make_buffer(*ctx_, uint64_t(table_capacity_) * 4, MemoryKind::input, "block tables");
    if (!b.ok()) return std::move(b).take_error();
    tables_ = std::move(*b);
  }
  auto* ids = static_cast<int32_t*>(ids_.mapped());
  auto* slots = static_cast<uint32_t*>(slots_.mapped());
  auto* cs = static_cast<float*>(cos_.mapped());
  auto* sn = static_cast<float*>(sin_.mapped());
  auto* meta = static_cast<vulkan::SeqMeta*>(meta_.mapped());
  auto* tables = static_cast<int32_t*>(tables_.mapped());
  auto* gidx = static_cast<uint32_t*>(gidx_.mapped());
  const vulkan::GpuKv& kv = kv_[0];

  // Attention per token (meta[t]: one decode work item per query, each query's result independent
  // of the batch) or, where the step's matmuls are not batch-invariant anyway (tensor cores) and a
  // chunk has many queries (prefill), chunks of several tokens per chunk (meta[c]: the tensor-core
  // prefill kernel reads each key once per 16 queries instead of once per query; pp512 on the
  // H200: 9 ms of 48 in the per-token kernel) and single tokens (decode, whose long contexts the
  // split-K decode kernel spreads over the GPU) per token, from meta[kMaxStepTokens + i].
  int64_t max_q = 0;
  for (const SeqChunk& s : piece.chunks) max_q = std::max(max_q, s.n);
  const bool per_chunk = chunk_attention_ && max_q >= kPrefillAttnMinQ;
  int64_t t = 0, table_off = 0, max_len = 1, top_row = 0, full_row = piece.top_rows, c = 0, d = 0, chunk_q = 0;
  int k = 0;
  for (const SeqChunk& s : piece.chunks) {
    const bool as_chunk = per_chunk && s.n > 1;
    if (as_chunk) {
      meta[c++] = {int32_t(t), int32_t(s.n), int32_t(s.pos0), int32_t(table_off)};
      chunk_q = std::max(chunk_q, s.n);
    }
    const int64_t nblk = (s.pos0 + s.n + bs - 1) / bs;
    std::memcpy(tables + table_off, s.block_table, size_t(nblk) * 4);
    const int64_t first_row = s.logits == SeqChunk::Logits::all ? 0 : s.logits == SeqChunk::Logits::last ? s.n - 1 : s.n;
    if (s.top_k > 0 && first_row < s.n) k = std::max(k, s.top_k);
    for (int64_t i = 0; i < s.n; ++i, ++t) {
      const int64_t pos = s.pos0 + i;
      ids[t] = s.tokens[i];
      slots[t] = uint32_t(s.block_table[pos / bs] * kv.block_stride + (pos % bs) * c_.head_dim);
      if (!per_chunk) meta[t] = {int32_t(t), 1, int32_t(pos), int32_t(table_off)};
      else if (!as_chunk) meta[kMaxStepTokens + d++] = {int32_t(t), 1, int32_t(pos), int32_t(table_off)};
      rope_.fill(pos, s.long_rope, cs + t * half, sn + t * half);
      if (i >= first_row) gidx[s.top_k > 0 ? top_row++ : full_row++] = uint32_t(t);
    }
    table_off += nblk;
    max_len = std::max(max_len, s.pos0 + s.n);
  }
  for (vulkan::Buffer* b : {&ids_, &slots_, &cos_, &sin_, &meta_, &tables_, &gidx_}) b->flush();
  shape->tokens = T;
  shape->full_rows = piece.full_rows;
  shape->top_rows = piece.top_rows;
  shape->k = piece.top_rows ? (k <= 1 ? 1 : kMaxTopK) : 0;  // two variants: argmax, or the most any chunk asks
  shape->splits = attn_splits(max_len);
  shape->attn_seqs = per_chunk ? c : 0;
  shape->attn_max_q = per_chunk ? chunk_q : 0;
  shape->attn_decode = per_chunk ? d : 0;
  shape->persistent = persistent_ && T == 1 && !per_chunk && max_len <= vulkan::ops::kDecodeLayerMaxKeys;
  shape->one_query = max_q == 1;
  return Status::Ok();
}

Status VulkanForward::run_piece(const Piece& piece, float* logits, const TopK* top) {
  Shape shape;
  PENSIEVE_TRY(write_inputs(piece, &shape));
  auto cl = recording(shape);
  if (!cl.ok()) return std::move(cl).take_error();
  last_ = *cl;
  PENSIEVE_TRY((*cl)->submit_and_wait());
  if (shape.persistent) {
    const vulkan::Buffer& flag = sync_mapped_ ? sync_ : out_sync_;
    flag.invalidate();
    if (*static_cast<const uint32_t*>(flag.mapped()) != 0) {
      // The workgroups did not all run at once (another process on the GPU?): this step's
      // results are garbage. Rerun it, and every later one, on the dispatch-per-op path.
      std::fprintf(stderr, "pensieve: vulkan: persistent decode layers gave up waiting; using one dispatch per op\n");
      persistent_ = false;
      recordings_.clear();
      last_ = nullptr;
      return run_piece(piece, logits, top);
    }
  }
  const int64_t V = c_.vocab;
  if (shape.full_rows) {
    out_logits_.invalidate();
    std::memcpy(logits, out_logits_.mapped(), size_t(shape.full_rows * V) * 4);
  }
  if (shape.top_rows) {
    out_topv_.invalidate();
    out_topi_.invalidate();
    const auto* v = static_cast<const float*>(out_topv_.mapped());
    const auto* i = static_cast<const int32_t*>(out_topi_.mapped());
    for (int64_t r = 0; r < shape.top_rows; ++r) {
      std::memcpy(top->values + r * kMaxTopK, v + r * shape.k, size_t(shape.k) * 4);
      std::memcpy(top->ids + r * kMaxTopK, i + r * shape.k, size_t(shape.k) * 4);
    }
  }
  return Status::Ok();
}

Result<CommandList*> VulkanForward::recording(const Shape& s) {
  if (auto it = recordings_.find(s); it != recordings_.end()) return it->second.get();
  if (recordings_.size() >= 32) {  // many shapes (a busy server): start over rather than grow
    recordings_.clear();
    last_ = nullptr;
  }
  auto cl = CommandList::create(*ctx_, profiling_);
  if (!cl.ok()) return std::move(cl).take_error();
  PENSIEVE_TRY(record(**cl, s));
  CommandList* p = cl->get();
  recordings_[s] = std::move(*cl);
  return p;
}

// ---- Recording ---------------------------------------------------------------------------------

// y = x' · Wᵀ with the fusions; where the kernel for this size is not the matvec (the
// cooperative-matrix prefill path), the small ops run as their own dispatches instead.
Status VulkanForward::linear(CommandList& cl, const BufferSlice& y, int64_t ldy, const BufferSlice& x, int64_t ldx,
                             int64_t n, const std::vector<GpuWeight>& parts, const vulkan::MatmulFusion& f) {
  const GpuWeight& w = parts[0];
  const std::string kern = vulkan::ops::matmul_kernel(*ctx_, ldx, n, w, precision_);
  if (kern == "matvec") return vulkan::ops::matmul(cl, y, ldy, x, ldx, n, w, precision_, {}, f);
  if (f.norm.valid() && f.ssq.valid())  // the tensor-core matmul normalises x itself (see record())
    return vulkan::ops::matmul(cl, y, ldy, x, ldx, n, w, precision_, {},
                               {.norm = f.norm, .eps = f.eps, .silu_pairs = f.silu_pairs, .ssq = f.ssq,
                                .x_bf16 = f.x_bf16, .y_bf16 = f.y_bf16});
  BufferSlice in = x;
  int64_t ld = ldx;
  bool in_bf16 = f.x_bf16;
  if (f.norm.valid()) {  // with x_bf16 (prefill on the tensor cores) the normalised x is written as bf16
    in = xn_.slice(0, uint64_t(n * w.cols) * (f.x_bf16 ? 2 : 4));
    ld = w.cols;
    PENSIEVE_TRY(vulkan::ops::rmsnorm(cl, in, x.sub(0, uint64_t(n * w.cols) * 4), f.norm, n, w.cols, f.eps, f.x_bf16));
  } else if (f.silu_offset > 0) {
    in = act_.slice(0, uint64_t(n * w.cols) * 4);
    ld = w.cols;
    in_bf16 = false;
    PENSIEVE_TRY(vulkan::ops::silu_mul(cl, in, x, n, w.cols));
  }
  if (!f.accumulate)
    return vulkan::ops::matmul(cl, y, ldy, in, ld, n, w, precision_, {},
                               {.silu_pairs = f.silu_pairs, .x_bf16 = in_bf16, .y_bf16 = f.y_bf16});
  if (kern == "mmq4_coop") {  // it adds into y itself
    vulkan::MatmulFusion acc;
    acc.accumulate = true;
    acc.ssq = f.ssq;
    acc.x_bf16 = in_bf16;
    acc.xg = f.xg;
    acc.xg_norm = f.xg_norm;
    return vulkan::ops::matmul(cl, y, ldy, in, ld, n, w, precision_, {}, acc);
  }
  BufferSlice tmp = proj_.slice(0, uint64_t(n * w.rows) * 4);
  PENSIEVE_TRY(vulkan::ops::matmul(cl, tmp, w.rows, in, ld, n, w, precision_));
  return vulkan::ops::add(cl, y, tmp, n * w.rows);
}

Status VulkanForward::record(CommandList& cl, const Shape& s) {
  namespace ops = vulkan::ops;
  const int64_t T = s.tokens, H = c_.hidden, V = c_.vocab, QKV = c_.qkv_dim(), F = c_.ffn;
  const int half = std::max(c_.rope.rot_dim / 2, 1);
  const BufferSlice x = x_.slice(0, uint64_t(T * H) * 4);
  const BufferSlice qkv = qkv_.slice(0, uint64_t(T * QKV) * 4);
  const BufferSlice attn = attn_.slice(0, uint64_t(T * c_.q_dim()) * 4);
  const BufferSlice gu = gu_.slice(0, uint64_t(T * 2 * F) * 4);
  const BufferSlice ids = ids_.slice(0, uint64_t(T) * 4), slots = slots_.slice(0, uint64_t(T) * 4);
  const BufferSlice cs = cos_.slice(0, uint64_t(T * half) * 4), sn = sin_.slice(0, uint64_t(T * half) * 4);

  vulkan::GpuSeqs seqs;
  seqs.meta = meta_.slice(0, uint64_t(T) * sizeof(vulkan::SeqMeta));
  seqs.tables = tables_.whole();
  seqs.n_seqs = int(s.attn_seqs ? s.attn_seqs : T);  // per token (n_q = 1) or per chunk (write_inputs)
  seqs.max_n_q = s.attn_seqs ? s.attn_max_q : 1;
  seqs.max_kv_len = int64_t(s.splits) * attn_split();
  seqs.split_len = attn_split();
  vulkan::GpuSeqs decode_seqs = seqs;  // the single tokens of a step with prefill chunks
  decode_seqs.meta = meta_.slice(uint64_t(kMaxStepTokens) * sizeof(vulkan::SeqMeta), uint64_t(T) * sizeof(vulkan::SeqMeta));
  decode_seqs.n_seqs = int(s.attn_decode);
  decode_seqs.max_n_q = 1;
  const AttnParams ap = attn_params(c_);
  const float eps = float(c_.rms_eps);

  // The tensor-core path's fusions (batched decode, up to 64 tokens: there the rmsnorm and
  // silu_mul dispatches cost ~10% of a step): o_proj and down, which add into the residual stream,
  // also write its sums of squares per row tile, and the next qkv / gate_up normalise their x from
  // them; gate_up writes silu(gate) * up (shaders/mmq4_coop.comp). Layer 0's qkv reads the
  // embeddings, normalised by a dispatch.
  const auto coop = [&](int64_t ldx, const vulkan::GpuWeight& w) {
    return std::string(ops::matmul_kernel(*ctx_, ldx, T, w, precision_)) == "mmq4_coop";
  };
  static const bool coop_fusion_off = env_off("PENSIEVE_VK_COOP_FUSION");
  const bool fuse_norm = !coop_fusion_off && T <= 64 && !layers_.empty() && coop(H, layers_[0].qkv[0]) &&
                         coop(c_.q_dim(), layers_[0].o) && coop(H, layers_[0].gate_up[0]) && coop(F, layers_[0].down) &&
                         ops::coop_epilogue_fits(layers_[0].o) && ops::coop_epilogue_fits(layers_[0].down);
  const BufferSlice ssq = fuse_norm ? ssq_.slice(0, uint64_t(T * ops::coop_ssq_row(H)) * 4) : BufferSlice{};
  // With it, the activations between those projections travel as bf16 (shaders/mmq4_coop.comp):
  // o_proj and down also write the new residual stream times the next norm's weight to xg (in xn_,
  // unused on this path) for qkv and gate_up, and gate_up writes its silu(gate) * up as bf16 for
  // down. PENSIEVE_VK_COOP_BF16=0 keeps them f32 (A/B runs).
  static const bool coop_bf16_off = env_off("PENSIEVE_VK_COOP_BF16");
  const bool bf16 = fuse_norm && !coop_bf16_off && H % 8 == 0 && F % 8 == 0;
  const BufferSlice xg = bf16 ? xn_.slice(0, uint64_t(T * H) * 2) : BufferSlice{};

  // Output fusions of the q4 matvec (where this step's projections run on it): RoPE + KV store
  // into the qkv projection, silu(gate) * up into the gate_up projection (down then reads F values
  // per token). Elsewhere rope_store and the silu fused into down's input do the same.
  const int hd = c_.head_dim, rot = c_.rope.rot_dim;
  const bool fuse_rope = !layers_.empty() && hd % 4 == 0 && (hd - rot) % 4 == 0 &&
                         ops::matmul_fuses(*ctx_, H, T, layers_[0].qkv[0], precision_, true);
  // Else, in a decode step (one query per sequence) on the tensor cores, the decode attention does
  // rope_store's work (shaders/attn_dec4.comp): 32 dispatches fewer, ~4% of a 20-sequence step.
  // Not where results are batch-invariant: its RoPE is the same arithmetic as the matvec's, but
  // not necessarily the same rounding (contraction into FMAs is the compiler's choice).
  // PENSIEVE_VK_ATTN_ROPE=0 turns it off (A/B runs).
  static const bool attn_rope_off = env_off("PENSIEVE_VK_ATTN_ROPE");
  const bool attn_rope = !attn_rope_off && !fuse_rope && !layers_.empty() && s.one_query && !s.attn_seqs &&
                         !batch_invariant() && ops::attention_fuses_rope(kv_[0], rot);
  // (Last clause: prefill's tensor-core gate_up, without a split, writes silu(gate) * up from its
  // fragments.)
  const bool fuse_silu = !layers_.empty() && F % 4 == 0 &&
                         ((ops::matmul_fuses(*ctx_, H, T, layers_[0].gate_up[0], precision_, false) &&
                           std::string(ops::matmul_kernel(*ctx_, F, T, layers_[0].down, precision_)) == "matvec") ||
                          (fuse_norm && ops::coop_epilogue_fits(layers_[0].gate_up[0])) ||
                          (!coop_fusion_off && T > 64 && coop(H, layers_[0].gate_up[0]) &&
                           coop(F, layers_[0].down)));

  // Prefill on the tensor cores (no norm fusion): the rmsnorm dispatches write bf16 for qkv and
  // gate_up, and gate_up's silu(gate) * up is bf16 for down (PENSIEVE_VK_COOP_BF16=0: f32).
  const bool pre_bf16 = !coop_bf16_off && !fuse_norm && T > 64 && fuse_silu && H % 8 == 0 && F % 8 == 0 &&
                        coop(H, layers_[0].qkv[0]);

  PENSIEVE_TRY(cl.begin());
  cl.set_scope("embed");
  PENSIEVE_TRY(ops::embed(cl, x, ids, T, embed_));
  if (s.persistent) {
    cl.set_scope("layer");
    for (int l = 0; l < c_.n_layers; ++l) PENSIEVE_TRY(ops::decode_layer(cl, layer_args(l)));
    if (!sync_mapped_) PENSIEVE_TRY(cl.copy(sync_.slice(0, 4), out_sync_.slice(0, 4)));
  }
  for (int l = 0; l < (s.persistent ? 0 : c_.n_layers); ++l) {  // (done above on the persistent path)
    const Layer& L = layers_[size_t(l)];
    vulkan::MatmulFusion f;
    cl.set_scope("qkv");
    f.norm = L.attn_norm;
    f.eps = eps;
    f.ssq = l > 0 ? ssq : BufferSlice{};
    f.x_bf16 = (bf16 && l > 0) || pre_bf16;
    const BufferSlice& qkv_in = bf16 && l > 0 ? xg : x;
    vulkan::RopeStoreFusion rs{cs, sn, slots, kv_[size_t(l)], c_.n_heads, rot};
    if (fuse_rope) {
      f.rope = &rs;
      PENSIEVE_TRY(linear(cl, qkv, QKV, qkv_in, H, T, L.qkv, f));
      f.rope = nullptr;
    } else {
      PENSIEVE_TRY(linear(cl, qkv, QKV, qkv_in, H, T, L.qkv, f));
      if (!attn_rope) {
        cl.set_scope("rope_store");
        PENSIEVE_TRY(ops::rope_store(cl, qkv, T, QKV, c_.n_heads, rot, cs, sn, slots, kv_[size_t(l)]));
      }
    }
    cl.set_scope("attention");
    if (attn_rope) {
      PENSIEVE_TRY(ops::attention(cl, attn, qkv, seqs, kv_[size_t(l)], ap, attn_scratch_.whole(), &rs));
    } else if (s.attn_seqs) {
      PENSIEVE_TRY(ops::flash_attention(cl, attn, qkv, seqs, kv_[size_t(l)], ap));
      if (s.attn_decode) PENSIEVE_TRY(ops::attention(cl, attn, qkv, decode_seqs, kv_[size_t(l)], ap, attn_scratch_.whole()));
    } else {
      PENSIEVE_TRY(ops::attention(cl, attn, qkv, seqs, kv_[size_t(l)], ap, attn_scratch_.whole()));
    }
    cl.set_scope("o_proj");
    PENSIEVE_TRY(linear(cl, x, H, attn, c_.q_dim(), T, {L.o},
                        {.accumulate = true, .ssq = ssq, .xg = xg, .xg_norm = bf16 ? L.mlp_norm : BufferSlice{}}));
    cl.set_scope("gate_up");
    f.norm = L.mlp_norm;
    f.silu_pairs = fuse_silu;
    f.ssq = ssq;
    f.x_bf16 = bf16 || pre_bf16;
    f.y_bf16 = (bf16 && fuse_silu) || pre_bf16;
    PENSIEVE_TRY(linear(cl, gu, fuse_silu ? F : 2 * F, bf16 ? xg : x, H, T, L.gate_up, f));
    cl.set_scope("down");
    const BufferSlice& next_norm = l + 1 < c_.n_layers ? layers_[size_t(l) + 1].attn_norm : final_norm_;
    if (fuse_silu)
      PENSIEVE_TRY(linear(cl, x, H, gu, F, T, {L.down},
                          {.accumulate = true, .ssq = ssq, .x_bf16 = bf16 || pre_bf16, .xg = xg,
                           .xg_norm = bf16 ? next_norm : BufferSlice{}}));
    else
      PENSIEVE_TRY(linear(cl, x, H, gu, 2 * F, T, {L.down}, {.silu_offset = F, .accumulate = true, .ssq = ssq}));
  }
  // Rows that want logits: top-k rows first (their logits slice starts at offset 0, aligned for
  // binding), then full rows.
  const int64_t R = s.full_rows + s.top_rows;
  if (R > 0) {
    cl.set_scope("lm_head");
    // Every token wants logits of one kind (a decode step): the rows are x's, in order (see
    // write_inputs), so no gather. (Normalising them from the last down projection's sums of
    // squares instead of an rmsnorm dispatch measured slower: 32,064 rows normalise x per tile.)
    const bool whole = R == T && (s.full_rows == 0 || s.top_rows == 0);
    const BufferSlice xl = whole ? x : xl_.slice(0, uint64_t(R * H) * 4);
    if (!whole) PENSIEVE_TRY(ops::gather_rows(cl, xl, x, gidx_.slice(0, uint64_t(R) * 4), R, H));
    vulkan::MatmulFusion f;
    f.norm = final_norm_;
    f.eps = eps;
    PENSIEVE_TRY(linear(cl, logits_.slice(0, uint64_t(R * V) * 4), V, xl, H, R, {lm_head_}, f));
  }
  if (s.top_rows) {
    cl.set_scope("topk");
    const uint64_t n = uint64_t(s.top_rows) * s.k * 4;
    PENSIEVE_TRY(ops::topk(cl, topv_.slice(0, n), topi_.slice(0, n), logits_.slice(0, uint64_t(s.top_rows * V) * 4),
                           s.top_rows, V, s.k, topk_scratch_.whole()));
    PENSIEVE_TRY(cl.copy(topv_.slice(0, n), out_topv_.slice(0, n)));
    PENSIEVE_TRY(cl.copy(topi_.slice(0, n), out_topi_.slice(0, n)));
  }
  if (s.full_rows) {
    const uint64_t n = uint64_t(s.full_rows * V) * 4;
    PENSIEVE_TRY(cl.copy(logits_.slice(uint64_t(s.top_rows * V) * 4, n), out_logits_.slice(0, n)));
  }
  return cl.end();
}

}  // namespace pensieve
