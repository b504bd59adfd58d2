// What a model directory holds: config.json, safetensors weights (one file, or shards listed by
// model.safetensors.index.json), tokenizer files. Used to decide whether a cached snapshot is
// complete and to describe models in `pensieve list`.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tensor/result.h"

namespace pensieve {

struct WeightIndex {
  std::vector<std::string> files;                  // weight files, relative to the dir, sorted
  std::map<std::string, std::string> weight_map;   // tensor -> file; empty without an index
  bool has_index = false;
};

// The weight files of `dir`: those named by model.safetensors.index.json if present (validated:
// a JSON object with a "weight_map" of tensor -> file, files plain relative names), else the
// model*.safetensors files, else every *.safetensors file. Error if there are none.
Result<WeightIndex> model_weight_files(const std::string& dir);

// A loadable model directory: config.json parses as a JSON object and every weight file exists.
Status check_model_dir(const std::string& dir);

// "MLX 4-bit (group 64)", "bf16 safetensors", "f16 safetensors", "f32 safetensors", or what is
// missing ("no config.json", "no weights").
std::string describe_model_format(const std::string& dir);

}  // namespace pensieve
