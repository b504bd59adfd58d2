// llama2.c tokenizers (tokenizer.bin / tok512.bin) as tokenizer.json.
//
// llama2.c's format: int32 max_token_length, then per token: float32 score, int32 byte length,
// bytes. Tokens 0..2 are <unk>, BOS ("\n<s>\n"), EOS ("\n</s>\n"); 3..258 are the byte tokens
// <0x00>..<0xFF>; the rest are SentencePiece pieces with "▁" already turned into " ".
//
// llama2.c's encode() prepends " " to non-empty text, maps each UTF-8 character to its piece (or
// to its bytes' byte tokens), then repeatedly merges the adjacent pair whose concatenation is the
// piece with the highest score (leftmost on ties), and puts BOS first. The equivalent
// tokenizer.json is SentencePiece-style BPE with byte fallback whose merges are ranked by the
// score of the merged piece:
//   normalizer      Prepend "▁", Replace " " -> "▁"   (the " " prefix and llama2.c's spaces)
//   model           BPE, byte_fallback, fuse_unk, merges: every split a+b of a piece into two
//                   pieces, by descending score of the piece
//   post_processor  TemplateProcessing "<s> $A": BOS is added by encode(), as llama2.c does
//   decoder         "▁" -> " ", byte fallback, fuse, strip one leading space: with
//                   skip_special, the space after BOS goes, as in llama2.c's decode()
//   added_tokens    <unk>, <s>, </s> (special)
// Differences (documented, tested): "<s>" written in the text is the BOS token unless encoded
// with special_as_text; a literal "▁" (U+2581) in the text reads as a space; invalid byte runs
// decode to U+FFFD instead of raw bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "tensor/result.h"

namespace pensieve {

// tokenizer.json text for the llama2.c tokenizer file at `path`.
// expected_vocab_size (the checkpoint's vocab_size), if > 0, must equal the token count.
Result<std::string> tokenizer_json_from_llama2c(const std::string& path,
                                                int32_t expected_vocab_size = 0);
// The same from the file's bytes; `origin` names it in errors.
Result<std::string> tokenizer_json_from_llama2c_bytes(std::span<const uint8_t> bytes,
                                                      const std::string& origin,
                                                      int32_t expected_vocab_size = 0);

}  // namespace pensieve
