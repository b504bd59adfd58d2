// The "decoder" of tokenizer.json as a streaming pipeline.
//
// HF decoders map a list of token strings to a list of strings, then join them. Each stage here
// does the same to a stream: it receives token strings one at a time and passes on what is final.
// decode(ids) runs the same code over all ids, so streaming and batch decoding agree by
// construction. Supported: Sequence, Replace (string pattern), ByteFallback, Fuse, Strip,
// ByteLevel, Metaspace; no decoder at all joins tokens with spaces, as HF does.
//
// "Fused" stages (after Fuse or ByteLevel) see one long token arriving in pieces; the stages that
// can run there are those whose result does not depend on where the pieces are cut.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tensor/result.h"

namespace pensieve::tok {

struct DecodeStage {
  enum Kind { kReplace, kByteFallback, kFuse, kStrip, kByteLevel, kMetaspace, kJoinSpace } kind;
  bool fused = false;             // input is one long token arriving in pieces
  std::string from, to;           // Replace; Metaspace: from = replacement
  std::string content;            // Strip: the character
  size_t start = 0, stop = 0;     // Strip: how many leading / trailing characters at most
  bool metaspace_prepend = true;  // Metaspace: prepend_scheme != never
};

class Decoder {
 public:
  static Result<Decoder> from_json(const nlohmann::json& j);
  const std::vector<DecodeStage>& stages() const { return stages_; }

 private:
  Status add(const nlohmann::json& j, bool& fused);
  std::vector<DecodeStage> stages_;
};

// Mutable state of one decoding stream.
class DecodeState {
 public:
  explicit DecodeState(const Decoder* d);
  // Feeds one token string; appends the text that became final to out.
  void push(std::string token, std::string& out);
  // End of the stream: appends the rest.
  void flush(std::string& out);
  void reset();

 private:
  struct StageState {
    std::string bytes;         // ByteFallback: pending run of bytes; ByteLevel: unfinished UTF-8
    bool run_invalid = false;  // ByteFallback: the pending run can no longer be valid UTF-8
    size_t count = 0;      // tokens seen (Metaspace, JoinSpace) / leading chars stripped (Strip)
    bool started = false;  // Strip: a character other than `content` has been seen
    size_t held = 0;       // Strip: trailing `content` characters held back
  };
  void feed(size_t i, std::string piece, std::string& out);
  void finish(size_t i, std::string& out);
  void end_byte_run(size_t i, std::string& out);
  const Decoder* d_;
  std::vector<StageState> st_;
};

}  // namespace pensieve::tok
