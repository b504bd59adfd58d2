// The paged KV cache: one pool of fixed-size blocks shared by all sequences, so sequences of
// different lengths share memory and none is limited to a slice of the context.
//
// Layout (written once, here): K and V are separate arrays of
//   [n_layers, n_blocks, n_kv_heads, block_size, head_dim]   in f16 (default) or f32,
// and a sequence's position p lives in block block_table[p / block_size], slot p % block_size.
// Layer-major, so each layer's keys (or values) are one contiguous range: a GPU backend binds a
// layer as one buffer (NVIDIA caps a binding at 4 GiB, less than a whole Phi-3 pool).
//
// Prefix reuse: a full block whose keys/values are final can be published under a hash chained
// over all tokens before it (plus the RoPE variant). A later sequence starting with the same
// tokens takes those blocks instead of recomputing them. Blocks nobody references stay cached
// (least recently used first out) until the pool needs them.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "kernels/kernels.h"
#include "models/config.h"
#include "tensor/tensor.h"

namespace pensieve {

struct KvCacheOptions {
  int block_size = 16;
  int64_t n_blocks = 0;  // 0: derive from max_bytes
  int64_t max_bytes = 0;
  DType dtype = DType::f16;
  bool host_storage = true;  // false: block bookkeeping only (a GPU backend holds the data)
};

class KvCache {
 public:
  static Result<std::unique_ptr<KvCache>> create(const ModelConfig& config, const KvCacheOptions& options);

  int block_size() const { return block_size_; }
  int64_t n_blocks() const { return n_blocks_; }
  DType dtype() const { return dtype_; }
  int64_t bytes_per_block() const { return block_bytes_; }   // K and V, all layers
  int64_t bytes() const { return block_bytes_ * n_blocks_; }  // the pool, wherever it lives
  int64_t layer_stride() const { return n_blocks_ * int64_t(n_kv_heads_) * block_size_ * head_dim_; }  // elements
  int64_t free_blocks() const { return int64_t(free_.size() + lru_.size()); }  // allocatable now
  int64_t used_blocks() const { return n_blocks_ - int64_t(free_.size()); }    // held or cached

  // The view the attention kernel reads for layer l.
  KvLayer layer(int l) const;
  // Where token slot `slot` of block b, layer l, kv head h starts (head_dim elements).
  void* k_at(int32_t b, int l, int h, int slot) { return at(k_, b, l, h, slot); }
  void* v_at(int32_t b, int l, int h, int slot) { return at(v_, b, l, h, slot); }

  // A fresh block with one reference, evicting the least recently used cached block if needed;
  // -1 when every block is in use.
  int32_t allocate();
  void retain(int32_t b) { ++refs_[size_t(b)]; }
  void release(int32_t b);

  // Prefix cache. hash_block chains a block's tokens onto the hash of everything before it.
  static uint64_t hash_block(uint64_t parent, const int32_t* tokens, int n);
  // The cached block holding exactly these tokens after `parent`, retained; -1 if none.
  int32_t lookup(uint64_t hash, uint64_t parent, const int32_t* tokens);
  // Makes a full block findable by lookup (its KV must be final).
  void publish(int32_t b, uint64_t hash, uint64_t parent, const int32_t* tokens);
  int64_t cached_blocks() const { return int64_t(by_hash_.size()); }

 private:
  void* at(Buffer& buf, int32_t b, int l, int h, int slot);
  void unpublish(int32_t b);

  int block_size_ = 0, n_layers_ = 0, n_kv_heads_ = 0, head_dim_ = 0;
  int64_t n_blocks_ = 0;
  int64_t block_bytes_ = 0;
  DType dtype_ = DType::f16;
  Buffer k_, v_;
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;                           // never published, or evicted
  std::list<int32_t> lru_;                              // published, no references; front = oldest
  std::vector<std::list<int32_t>::iterator> lru_pos_;   // valid while a block is in lru_
  struct Published {
    uint64_t hash = 0, parent = 0;
    bool valid = false;
  };
  std::vector<Published> published_;
  std::vector<int32_t> block_tokens_;                   // [n_blocks, block_size], for published blocks
  std::unordered_map<uint64_t, int32_t> by_hash_;
};

// One sequence's share of the cache: its block table and the tokens whose KV it holds.
class SeqKv {
 public:
  const std::vector<int32_t>& blocks() const { return blocks_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  int64_t n_computed() const { return n_computed_; }  // positions whose KV is in the cache
  bool long_rope() const { return long_rope_; }

  // Starts the sequence on `prompt`, taking cached full blocks for its longest cached prefix
  // (always leaving at least the last token to compute). Returns the number of reused tokens.
  int64_t start(KvCache& cache, const std::vector<int32_t>& prompt, bool long_rope, bool reuse_prefix);
  // Adds tokens to compute later (the sampled token, or more prompt).
  void append(const std::vector<int32_t>& more) { tokens_.insert(tokens_.end(), more.begin(), more.end()); }
  void append(int32_t token) { tokens_.push_back(token); }
  // Blocks needed to hold positions [0, len); false (nothing changed) if the pool is exhausted.
  bool reserve(KvCache& cache, int64_t len);
  int64_t blocks_needed(const KvCache& cache, int64_t len) const;
  // Marks positions up to n as computed and publishes blocks that became full.
  void computed(KvCache& cache, int64_t n, bool publish);
  // Drops everything computed (longrope switch): the tokens stay, to be computed again.
  void reset(KvCache& cache, bool long_rope);
  void release(KvCache& cache);

 private:
  std::vector<int32_t> blocks_;
  std::vector<int32_t> tokens_;
  std::vector<uint64_t> hashes_;  // chained hash of each full published-or-reused block
  int64_t n_computed_ = 0;
  bool long_rope_ = false;
};

}  // namespace pensieve
