// Fast reading of tokenizer.json. The vocabulary (200k entries for o200k) and the merges go
// straight into flat arrays through nlohmann's SAX interface; only the small rest of the
// document becomes a json DOM. A DOM of the whole 6.7 MB Phi-4 file costs ~0.5 s in std::map
// nodes alone, against ~0.08 s for the SAX pass.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/result.h"

namespace pensieve::tok {

struct TokenizerJson {
  nlohmann::json rest;  // the document, with "model" lacking "vocab" and "merges"
  bool has_vocab = false, has_merges = false;
  std::vector<std::pair<std::string, int64_t>> vocab;       // file order
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
};

// `what` names the source in errors.
Result<TokenizerJson> parse_tokenizer_json(std::string_view text, const std::string& what);

}  // namespace pensieve::tok
