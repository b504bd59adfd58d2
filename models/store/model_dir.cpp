#include "models/store/model_dir.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tensor/safetensors.h"

namespace pensieve {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

Result<json> read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return errorf("cannot read %s", path.c_str());
  std::ostringstream ss;
  ss << f.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return errorf("%s is not valid JSON", path.c_str());
  return j;
}

bool plain_relative_name(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.find('\\') != std::string::npos) return false;
  std::stringstream ss(name);
  std::string part;
  while (std::getline(ss, part, '/'))
    if (part.empty() || part == "." || part == "..") return false;
  return true;
}

}  // namespace

Result<WeightIndex> model_weight_files(const std::string& dir) {
  WeightIndex w;
  std::error_code ec;
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (fs::exists(index_path, ec)) {
    auto j = read_json(index_path);
    if (!j) return std::move(j).take_error();
    auto wm = j->find("weight_map");
    if (!j->is_object() || wm == j->end() || !wm->is_object())
      return errorf("%s: expected a JSON object with a \"weight_map\" object", index_path.c_str());
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string())
        return errorf("%s: weight_map[\"%s\"] is not a file name", index_path.c_str(), it.key().c_str());
      std::string file = it.value().get<std::string>();
      if (!plain_relative_name(file))
        return errorf("%s: weight_map[\"%s\"] = \"%s\" is not a file inside the model directory", index_path.c_str(),
                      it.key().c_str(), file.c_str());
      w.weight_map[it.key()] = file;
      if (std::find(w.files.begin(), w.files.end(), file) == w.files.end()) w.files.push_back(file);
    }
    if (w.files.empty()) return errorf("%s: weight_map is empty", index_path.c_str());
    w.has_index = true;
  } else {
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (it->path().extension() == ".safetensors" && fs::is_regular_file(it->path(), ec)) w.files.push_back(name);
    }
    if (ec) return errorf("cannot list %s: %s", dir.c_str(), ec.message().c_str());
    if (w.files.empty()) return errorf("%s has no *.safetensors weights", dir.c_str());
    // As mlx-lm loads them: model*.safetensors when there are such files (others, e.g.
    // consolidated.safetensors duplicates or unrelated data, are ignored).
    std::vector<std::string> model_files;
    for (const std::string& f : w.files)
      if (f.rfind("model", 0) == 0) model_files.push_back(f);
    if (!model_files.empty()) w.files = std::move(model_files);
  }
  std::sort(w.files.begin(), w.files.end());
  return w;
}

Status check_model_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return errorf("%s is not a directory", dir.c_str());
  auto config = read_json(dir + "/config.json");
  if (!config) return errorf("%s: no readable config.json (%s)", dir.c_str(), config.error().c_str());
  if (!config->is_object()) return errorf("%s/config.json is not a JSON object", dir.c_str());
  auto w = model_weight_files(dir);
  if (!w) return std::move(w).take_error();
  for (const std::string& f : w->files)
    if (!fs::is_regular_file(dir + "/" + f, ec))  // follows snapshot symlinks: a dangling one fails
      return errorf("%s: weight file %s is missing", dir.c_str(), f.c_str());
  return Status::Ok();
}

std::string describe_model_format(const std::string& dir) {
  auto config = read_json(dir + "/config.json");
  if (!config || !config->is_object()) return "no config.json";
  for (const char* key : {"quantization", "quantization_config"}) {
    auto q = config->find(key);
    if (q == config->end() || !q->is_object()) continue;
    auto bits = q->find("bits");
    auto group = q->find("group_size");
    if (bits != q->end() && bits->is_number_integer() && q->find("quant_method") == q->end()) {
      std::string s = "MLX " + std::to_string(bits->get<int>()) + "-bit";
      if (group != q->end() && group->is_number_integer()) s += " (group " + std::to_string(group->get<int>()) + ")";
      return s;
    }
    auto method = q->find("quant_method");
    if (method != q->end() && method->is_string()) return method->get<std::string>() + " (not MLX)";
  }
  auto w = model_weight_files(dir);
  if (!w) return "no weights";
  // The dtype holding the most bytes in the first weight file.
  auto f = SafetensorsFile::open(dir + "/" + w->files.front());
  if (!f) return "unreadable weights";
  std::map<std::string, uint64_t> bytes;
  for (const auto& e : f->entries()) bytes[e.dtype_name] += e.nbytes;
  if (bytes.empty()) return "empty weights";
  auto top = std::max_element(bytes.begin(), bytes.end(), [](auto& a, auto& b) { return a.second < b.second; });
  std::string dt = top->first;
  for (char& c : dt) c = char(std::tolower(static_cast<unsigned char>(c)));
  return dt + " safetensors";
}

}  // namespace pensieve
