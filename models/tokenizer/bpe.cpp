#include "models/tokenizer/bpe.h"

#include <cstdio>
#include <queue>

#include <nlohmann/json.hpp>

#include "models/tokenizer/utf8.h"

namespace pensieve::tok {

using nlohmann::json;

namespace {

constexpr uint64_t kEmpty = ~uint64_t{0};  // (-1, -1): never a real pair of ids
constexpr int32_t kMaxVocabId =
    1 << 24;                             // bounds the id -> token table a file can make us allocate
constexpr uint32_t kMetaspace = 0x2581;  // "▁", SentencePiece's word boundary marker

uint64_t hash64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;  // murmur3 finalizer: spreads adjacent ids over the table
  k ^= k >> 33;
  return k;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// MergeTable

void MergeTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;  // load factor <= 0.5 keeps linear probing short
  keys_.assign(cap, kEmpty);
  vals_.assign(cap, Merge{0, 0});
  mask_ = cap - 1;
  count_ = 0;
}

void MergeTable::grow() {
  std::vector<uint64_t> old_keys = std::move(keys_);
  std::vector<Merge> old_vals = std::move(vals_);
  reserve(old_keys.size());  // doubles: reserve() sizes for 2x the requested count
  for (size_t i = 0; i < old_keys.size(); ++i)
    if (old_keys[i] != kEmpty)
      put(static_cast<int32_t>(old_keys[i] >> 32), static_cast<int32_t>(old_keys[i] & 0xffffffffu),
          old_vals[i]);
}

void MergeTable::put(int32_t a, int32_t b, Merge m) {
  if (keys_.empty() || (count_ + 1) * 2 > keys_.size()) grow();
  const uint64_t k = key(a, b);
  for (uint64_t i = hash64(k) & mask_;; i = (i + 1) & mask_) {
    if (keys_[i] == kEmpty) {
      keys_[i] = k;
      vals_[i] = m;
      ++count_;
      return;
    }
    if (keys_[i] == k) {
      vals_[i] = m;
      return;
    }
  }
}

const MergeTable::Merge* MergeTable::find(int32_t a, int32_t b) const {
  if (count_ == 0) return nullptr;
  const uint64_t k = key(a, b);
  for (uint64_t i = hash64(k) & mask_;; i = (i + 1) & mask_) {
    if (keys_[i] == k) return &vals_[i];
    if (keys_[i] == kEmpty) return nullptr;
  }
}

// ---------------------------------------------------------------------------------------------
// TokenIndex

namespace {
constexpr uint64_t kFree = ~uint64_t{0};
}

void TokenIndex::build(const std::vector<std::string>& tokens, const std::vector<bool>& present) {
  size_t n = 0;
  for (bool p : present) n += p;
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  slots_.assign(cap, kFree);
  mask_ = cap - 1;
  count_ = 0;
}

bool TokenIndex::insert(const std::vector<std::string>& tokens, int32_t id) {
  const uint64_t h = std::hash<std::string_view>()(tokens[id]);
  const uint64_t tag = h & 0xffffffff00000000ULL;
  for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
    if (slots_[i] == kFree) {
      slots_[i] = tag | static_cast<uint32_t>(id);
      ++count_;
      return true;
    }
    if ((slots_[i] & 0xffffffff00000000ULL) == tag &&
        tokens[static_cast<uint32_t>(slots_[i])] == tokens[id])
      return false;
  }
}

int32_t TokenIndex::find(const std::vector<std::string>& tokens, std::string_view s) const {
  if (slots_.empty()) return -1;
  const uint64_t h = std::hash<std::string_view>()(s);
  const uint64_t tag = h & 0xffffffff00000000ULL;
  for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
    const uint64_t v = slots_[i];
    if (v == kFree) return -1;
    if ((v & 0xffffffff00000000ULL) == tag && tokens[static_cast<uint32_t>(v)] == s)
      return static_cast<int32_t>(static_cast<uint32_t>(v));
  }
}

// ---------------------------------------------------------------------------------------------
// Loading

Result<BpeModel> BpeModel::build(const json& m,
                                 std::vector<std::pair<std::string, int64_t>>&& vocab,
                                 std::vector<std::pair<std::string, std::string>>&& merges) {
  const char* op = "model";
  if (!m.is_object()) return errorf("%s: expected an object", op);
  const std::string type = m.value("type", std::string("BPE"));
  if (type != "BPE")
    return errorf(
        "%s.type is \"%s\", expected \"BPE\" (pensieve supports BPE tokenizers: "
        "SentencePiece-style with byte fallback, and byte-level)",
        op, type.c_str());
  if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0)
    return errorf("%s.dropout is %g: BPE dropout is random, expected null or 0", op,
                  m["dropout"].get<double>());

  BpeModel bpe;
  auto str_or_empty = [&](const char* key) -> std::string {
    return m.contains(key) && m[key].is_string() ? m[key].get<std::string>() : std::string();
  };
  auto flag = [&](const char* key) {
    return m.contains(key) && m[key].is_boolean() && m[key].get<bool>();
  };
  bpe.byte_fallback_ = flag("byte_fallback");
  bpe.fuse_unk_ = flag("fuse_unk");
  bpe.ignore_merges_ = flag("ignore_merges");
  bpe.prefix_ = str_or_empty("continuing_subword_prefix");
  bpe.suffix_ = str_or_empty("end_of_word_suffix");

  // Vocabulary: {"token": id}.
  int64_t max_id = -1;
  for (const auto& [tok, id] : vocab) {
    if (id < 0 || id >= kMaxVocabId)
      return errorf("%s.vocab[\"%s\"]: id %lld out of range [0, %d)", op, tok.c_str(),
                    static_cast<long long>(id), kMaxVocabId);
    max_id = std::max(max_id, id);
  }
  bpe.vocab_r_.assign(static_cast<size_t>(max_id + 1), std::string());
  bpe.present_.assign(static_cast<size_t>(max_id + 1), false);
  for (auto& [tok, id64] : vocab) {
    const int32_t id = static_cast<int32_t>(id64);
    if (bpe.present_[id])
      return errorf("%s.vocab: id %d is used by both \"%s\" and \"%s\"", op, id,
                    bpe.vocab_r_[id].c_str(), tok.c_str());
    bpe.vocab_r_[id] = std::move(tok);
    bpe.present_[id] = true;
  }
  // vocab_r_ does not move from here on: the index refers to its strings.
  bpe.vocab_.build(bpe.vocab_r_, bpe.present_);
  for (int32_t id = 0; id <= static_cast<int32_t>(max_id); ++id) {
    if (!bpe.present_[id]) continue;
    const std::string& tok = bpe.vocab_r_[id];
    if (!bpe.vocab_.insert(bpe.vocab_r_, id))
      return errorf("%s.vocab: token \"%s\" appears twice", op, tok.c_str());
    if (!tok.empty() && utf8_char_len(static_cast<unsigned char>(tok[0])) == tok.size()) {
      size_t i = 0;
      bpe.char_ids_.emplace(utf8_next(tok, i), id);
    }
  }

  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    bpe.byte_ids_[b] = bpe.token_to_id(name);
  }
  const std::string unk = str_or_empty("unk_token");
  if (!unk.empty()) {
    bpe.unk_id_ = bpe.token_to_id(unk);
    if (bpe.unk_id_ < 0)
      return errorf("%s.unk_token \"%s\" is not in the vocabulary", op, unk.c_str());
  }

  // Merges, rank = position in the list.
  bpe.merges_.reserve(merges.size());
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& a = merges[rank].first;
    const std::string& b = merges[rank].second;
    const int32_t ia = bpe.token_to_id(a), ib = bpe.token_to_id(b);
    if (ia < 0 || ib < 0)
      return errorf("%s.merges[%zu]: token \"%s\" is not in the vocabulary", op, rank,
                    (ia < 0 ? a : b).c_str());
    merged = a;
    const bool strip = !bpe.prefix_.empty() && b.compare(0, bpe.prefix_.size(), bpe.prefix_) == 0;
    merged.append(b, strip ? bpe.prefix_.size() : 0);
    const int32_t inew = bpe.token_to_id(merged);
    if (inew < 0)
      return errorf("%s.merges[%zu]: merged token \"%s\" is not in the vocabulary", op, rank,
                    merged.c_str());
    bpe.merges_.put(ia, ib, {static_cast<int32_t>(rank), inew});
  }

  // Cutting words before "▁" is exact when no token contains "▁" right after another character:
  // then no merge can produce a symbol that spans such a position (every merged symbol is a token).
  // Position-dependent options (prefix/suffix, whole-word lookup) rule it out.
  if (bpe.prefix_.empty() && bpe.suffix_.empty() && !bpe.ignore_merges_ &&
      bpe.char_ids_.count(kMetaspace)) {
    bool safe = true;
    for (const std::string& tok : bpe.vocab_r_) {
      if (tok.find("\xE2\x96\x81") == std::string::npos) continue;
      size_t i = 0;
      uint32_t prev = 0;
      while (i < tok.size() && safe) {
        uint32_t cp = utf8_next(tok, i);
        if (cp == kMetaspace && i > 3 && prev != kMetaspace) safe = false;
        prev = cp;
      }
      if (!safe) break;
    }
    if (safe) bpe.split_cp_ = kMetaspace;
  }
  return bpe;
}

int32_t BpeModel::token_to_id(std::string_view token) const { return vocab_.find(vocab_r_, token); }

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(vocab_r_.size()) || !present_[id]) return nullptr;
  return &vocab_r_[id];
}

int32_t BpeModel::char_id(std::string_view ch) const {
  size_t i = 0;
  auto it = char_ids_.find(utf8_next(ch, i));
  return it == char_ids_.end() ? -1 : it->second;
}

// ---------------------------------------------------------------------------------------------
// Tokenizing

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (!split_cp_ || word.size() < 64) return tokenize_chunk(word, out);
  // Cut before every "▁" that follows another character (see from_json for why this is exact).
  constexpr std::string_view kMark = "\xE2\x96\x81";
  size_t start = 0;
  for (size_t pos = word.find(kMark, 1); pos != std::string_view::npos;
       pos = word.find(kMark, pos + kMark.size())) {
    if (pos >= 3 && word.compare(pos - 3, 3, kMark) == 0) continue;  // "▁▁": not a cut point
    tokenize_chunk(word.substr(start, pos - start), out);
    start = pos;
  }
  tokenize_chunk(word.substr(start), out);
}

void BpeModel::tokenize_chunk(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const int32_t id = token_to_id(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }

  // Symbols of the word, doubly linked so merges are O(1). len == 0 marks a merged-away symbol.
  struct Sym {
    int32_t id, prev, next, len;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  auto add = [&](int32_t id, int32_t len) {
    const int32_t n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, -1, len});
    if (n > 0) syms[n - 1].next = n;
  };

  const bool affixes = !prefix_.empty() || !suffix_.empty();
  int32_t unk_len = 0;  // pending <unk> (fuse_unk joins runs of unknown characters)
  std::string s;
  for (size_t i = 0; i < word.size();) {
    const size_t clen =
        std::min(utf8_char_len(static_cast<unsigned char>(word[i])), word.size() - i);
    std::string_view ch = word.substr(i, clen);
    int32_t id;
    if (affixes) {
      s.clear();
      if (i > 0) s += prefix_;
      s += ch;
      if (i + clen == word.size()) s += suffix_;
      id = token_to_id(s);
    } else {
      id = char_id(ch);
    }
    i += clen;
    if (id >= 0) {
      if (unk_len) add(unk_id_, unk_len), unk_len = 0;
      add(id, static_cast<int32_t>(clen));
      continue;
    }
    if (byte_fallback_) {
      // HF falls back byte by byte over the (affixed) string, and only if every byte has a token.
      std::string_view bytes = affixes ? std::string_view(s) : ch;
      bool all = true;
      for (unsigned char c : bytes) all = all && byte_ids_[c] >= 0;
      if (all) {
        // As in HF, a pending <unk> is not flushed here: it lands after these bytes.
        for (unsigned char c : bytes) add(byte_ids_[c], 1);
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (unk_len && !fuse_unk_) add(unk_id_, unk_len), unk_len = 0;
      unk_len += static_cast<int32_t>(clen);
    }
    // No unk token and no byte fallback: HF drops the character.
  }
  if (unk_len) add(unk_id_, unk_len);
  if (syms.empty()) return;

  // Merge loop: a min-heap of candidate merges by (rank, position). An entry is stale when its
  // left symbol was merged away or the pair now merges into a different token (HF's exact test).
  struct Cand {
    int32_t rank, pos, new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Cand> heap_storage;
  heap_storage.reserve(syms.size());
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap(std::greater<Cand>(),
                                                                        std::move(heap_storage));
  for (size_t i = 0; i + 1 < syms.size(); ++i)
    if (const MergeTable::Merge* mg = merges_.find(syms[i].id, syms[i + 1].id))
      heap.push({mg->rank, static_cast<int32_t>(i), mg->new_id});

  while (!heap.empty()) {
    const Cand top = heap.top();
    heap.pop();
    Sym& left = syms[top.pos];
    if (left.len == 0 || left.next < 0) continue;
    Sym& right = syms[left.next];
    const MergeTable::Merge* mg = merges_.find(left.id, right.id);
    if (!mg || mg->new_id != top.new_id) continue;

    left.id = top.new_id;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (left.next >= 0) syms[left.next].prev = top.pos;

    if (left.prev >= 0)
      if (const MergeTable::Merge* p = merges_.find(syms[left.prev].id, left.id))
        heap.push({p->rank, left.prev, p->new_id});
    if (left.next >= 0)
      if (const MergeTable::Merge* n = merges_.find(left.id, syms[left.next].id))
        heap.push({n->rank, top.pos, n->new_id});
  }

  for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

}  // namespace pensieve::tok
