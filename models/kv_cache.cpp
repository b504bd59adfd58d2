#include "models/kv_cache.h"

#include <cstring>

namespace pensieve {

Result<std::unique_ptr<KvCache>> KvCache::create(const ModelConfig& c, const KvCacheOptions& o) {
  if (o.dtype != DType::f16 && o.dtype != DType::f32)
    return errorf("kv_cache: dtype %s is not supported (f16 or f32)", dtype_name(o.dtype));
  if (o.block_size <= 0 || o.block_size > 1024) return errorf("kv_cache: block size %d is out of range", o.block_size);
  auto kv = std::make_unique<KvCache>();
  kv->block_size_ = o.block_size;
  kv->n_layers_ = c.n_layers;
  kv->n_kv_heads_ = c.n_kv_heads;
  kv->head_dim_ = c.head_dim;
  kv->dtype_ = o.dtype;
  int64_t block_elems = int64_t(c.n_layers) * c.n_kv_heads * o.block_size * c.head_dim;
  int64_t block_bytes = 2 * block_elems * int64_t(dtype_size(o.dtype));
  kv->block_bytes_ = block_bytes;
  kv->n_blocks_ = o.n_blocks > 0 ? o.n_blocks : o.max_bytes / block_bytes;
  if (kv->n_blocks_ <= 0)
    return errorf("kv_cache: %lld bytes hold no block of %lld bytes", (long long)o.max_bytes, (long long)block_bytes);
  if (kv->n_blocks_ > (int64_t(1) << 30)) return errorf("kv_cache: %lld blocks is too many", (long long)kv->n_blocks_);
  if (o.host_storage) try {
    kv->k_ = Buffer(size_t(kv->n_blocks_ * block_elems) * dtype_size(o.dtype));
    kv->v_ = Buffer(size_t(kv->n_blocks_ * block_elems) * dtype_size(o.dtype));
  } catch (const std::bad_alloc&) {
    return errorf("kv_cache: cannot allocate %lld blocks (%lld MB)", (long long)kv->n_blocks_,
                  (long long)(kv->n_blocks_ * block_bytes >> 20));
  }
  kv->refs_.assign(size_t(kv->n_blocks_), 0);
  kv->lru_pos_.resize(size_t(kv->n_blocks_));
  kv->published_.resize(size_t(kv->n_blocks_));
  kv->block_tokens_.assign(size_t(kv->n_blocks_ * o.block_size), 0);
  kv->free_.reserve(size_t(kv->n_blocks_));
  for (int64_t b = kv->n_blocks_ - 1; b >= 0; --b) kv->free_.push_back(int32_t(b));
  return kv;
}

KvLayer KvCache::layer(int l) const {
  KvLayer v;
  size_t es = dtype_size(dtype_);
  int64_t layer_off = int64_t(l) * layer_stride();
  v.k = k_.as<uint8_t>() + size_t(layer_off) * es;
  v.v = v_.as<uint8_t>() + size_t(layer_off) * es;
  v.dtype = dtype_;
  v.block_stride = int64_t(n_kv_heads_) * block_size_ * head_dim_;
  v.head_stride = int64_t(block_size_) * head_dim_;
  v.block_size = block_size_;
  v.n_kv_heads = n_kv_heads_;
  v.head_dim = head_dim_;
  return v;
}

void* KvCache::at(Buffer& buf, int32_t b, int l, int h, int slot) {
  int64_t off = ((int64_t(l) * n_blocks_ + b) * n_kv_heads_ + h) * block_size_ * head_dim_ + int64_t(slot) * head_dim_;
  return buf.as<uint8_t>() + size_t(off) * dtype_size(dtype_);
}

int32_t KvCache::allocate() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.front();
    lru_.pop_front();
    unpublish(b);
  } else {
    return -1;
  }
  refs_[size_t(b)] = 1;
  return b;
}

void KvCache::release(int32_t b) {
  if (--refs_[size_t(b)] > 0) return;
  if (published_[size_t(b)].valid) {
    lru_.push_back(b);
    lru_pos_[size_t(b)] = std::prev(lru_.end());
  } else {
    free_.push_back(b);
  }
}

uint64_t KvCache::hash_block(uint64_t parent, const int32_t* tokens, int n) {
  // FNV-1a over the parent hash and the token ids, then a final mix (splitmix64).
  uint64_t h = 1469598103934665603ull ^ parent;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  for (int i = 0; i < n; ++i) mix(uint32_t(tokens[i]));
  h += 0x9e3779b97f4a7c15ull;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

int32_t KvCache::lookup(uint64_t hash, uint64_t parent, const int32_t* tokens) {
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return -1;
  int32_t b = it->second;
  // Verify the content: a hash collision must never hand out the wrong keys and values.
  const Published& p = published_[size_t(b)];
  if (p.parent != parent ||
      std::memcmp(&block_tokens_[size_t(b) * size_t(block_size_)], tokens, size_t(block_size_) * 4) != 0)
    return -1;
  if (refs_[size_t(b)] == 0) lru_.erase(lru_pos_[size_t(b)]);
  ++refs_[size_t(b)];
  return b;
}

void KvCache::publish(int32_t b, uint64_t hash, uint64_t parent, const int32_t* tokens) {
  if (published_[size_t(b)].valid || by_hash_.count(hash)) return;  // already there (another sequence's copy)
  published_[size_t(b)] = {hash, parent, true};
  std::memcpy(&block_tokens_[size_t(b) * size_t(block_size_)], tokens, size_t(block_size_) * 4);
  by_hash_[hash] = b;
}

void KvCache::unpublish(int32_t b) {
  Published& p = published_[size_t(b)];
  if (!p.valid) return;
  auto it = by_hash_.find(p.hash);
  if (it != by_hash_.end() && it->second == b) by_hash_.erase(it);
  p.valid = false;
}

// ---- SeqKv

// The root of every hash chain: distinguishes the two RoPE variants of longrope models, whose
// cached keys differ for the same tokens.
static uint64_t root_hash(bool long_rope) { return long_rope ? 0x6c6f6e67726f7065ull : 0x73686f7274726f70ull; }

int64_t SeqKv::start(KvCache& cache, const std::vector<int32_t>& prompt, bool long_rope, bool reuse_prefix) {
  release(cache);
  tokens_ = prompt;
  long_rope_ = long_rope;
  const int bs = cache.block_size();
  if (!reuse_prefix || prompt.empty()) return 0;
  // Full blocks strictly before the last token: the last one is always computed (its logits).
  int64_t max_blocks = (int64_t(prompt.size()) - 1) / bs;
  uint64_t parent = root_hash(long_rope);
  for (int64_t i = 0; i < max_blocks; ++i) {
    const int32_t* t = prompt.data() + i * bs;
    uint64_t h = KvCache::hash_block(parent, t, bs);
    int32_t b = cache.lookup(h, parent, t);
    if (b < 0) break;
    blocks_.push_back(b);
    hashes_.push_back(h);
    parent = h;
  }
  n_computed_ = int64_t(blocks_.size()) * bs;
  return n_computed_;
}

int64_t SeqKv::blocks_needed(const KvCache& cache, int64_t len) const {
  int64_t need = (len + cache.block_size() - 1) / cache.block_size();
  return need > int64_t(blocks_.size()) ? need - int64_t(blocks_.size()) : 0;
}

bool SeqKv::reserve(KvCache& cache, int64_t len) {
  int64_t add = blocks_needed(cache, len);
  if (add > cache.free_blocks()) return false;
  for (int64_t i = 0; i < add; ++i) blocks_.push_back(cache.allocate());
  return true;
}

void SeqKv::computed(KvCache& cache, int64_t n, bool publish) {
  n_computed_ = n;
  const int bs = cache.block_size();
  while (publish && int64_t(hashes_.size()) < n_computed_ / bs) {
    size_t i = hashes_.size();
    uint64_t parent = i == 0 ? root_hash(long_rope_) : hashes_[i - 1];
    const int32_t* t = tokens_.data() + i * size_t(bs);
    uint64_t h = KvCache::hash_block(parent, t, bs);
    cache.publish(blocks_[i], h, parent, t);
    hashes_.push_back(h);
  }
}

void SeqKv::reset(KvCache& cache, bool long_rope) {
  std::vector<int32_t> keep = std::move(tokens_);
  release(cache);
  tokens_ = std::move(keep);
  long_rope_ = long_rope;
}

void SeqKv::release(KvCache& cache) {
  for (int32_t b : blocks_) cache.release(b);
  blocks_.clear();
  hashes_.clear();
  tokens_.clear();
  n_computed_ = 0;
}

}  // namespace pensieve
