#include "tensor/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>
#include <nlohmann/json.hpp>

namespace pensieve {

using json = nlohmann::json;

// The header must fit in memory comfortably; real files have headers of a few hundred KB.
static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

int safetensors_dtype_size(const std::string& name) {
  static const std::pair<const char*, int> kSizes[] = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
      {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},   {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  for (auto& [n, s] : kSizes)
    if (name == n) return s;
  return 0;
}

Result<std::vector<SafetensorsEntry>> parse_safetensors_header(const uint8_t* file, size_t file_size,
                                                               std::map<std::string, std::string>* metadata) {
  if (file_size < 8) return errorf("safetensors: file is %zu bytes, too short for the 8-byte header length", file_size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[i];
  if (n > kMaxHeaderBytes) return errorf("safetensors: header length %llu exceeds the %llu-byte limit",
                                         (unsigned long long)n, (unsigned long long)kMaxHeaderBytes);
  if (n > file_size - 8) return errorf("safetensors: header length %llu runs past the end of the %zu-byte file (truncated?)",
                                       (unsigned long long)n, file_size);
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = file_size - data_start;

  json header = json::parse(file + 8, file + 8 + n, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return errorf("safetensors: header is not valid JSON");
  if (!header.is_object()) return errorf("safetensors: header is not a JSON object");

  std::vector<SafetensorsEntry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return errorf("safetensors: __metadata__ is not an object");
      if (metadata)
        for (auto m = v.begin(); m != v.end(); ++m)
          if (m.value().is_string()) (*metadata)[m.key()] = m.value().get<std::string>();
      continue;
    }
    if (!v.is_object()) return errorf("safetensors: tensor \"%s\" is not an object", name.c_str());
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) return errorf("safetensors: tensor \"%s\" has no string dtype", name.c_str());
    if (sh == v.end() || !sh->is_array()) return errorf("safetensors: tensor \"%s\" has no shape array", name.c_str());
    if (off == v.end() || !off->is_array() || off->size() != 2)
      return errorf("safetensors: tensor \"%s\" needs data_offsets [begin, end]", name.c_str());

    SafetensorsEntry e;
    e.name = name;
    e.dtype_name = dt->get<std::string>();
    int elem = safetensors_dtype_size(e.dtype_name);
    if (elem == 0) return errorf("safetensors: tensor \"%s\" has unknown dtype \"%s\"", name.c_str(), e.dtype_name.c_str());
    e.known_dtype = dtype_from_safetensors(e.dtype_name, &e.dtype);
    if (sh->size() > 8) return errorf("safetensors: tensor \"%s\" has %zu dimensions", name.c_str(), sh->size());
    uint64_t count = 1;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned()) return errorf("safetensors: tensor \"%s\" has a non-integer or negative dimension", name.c_str());
      uint64_t dim = d.get<uint64_t>();
      if (dim > (1ull << 40) || (dim != 0 && count > UINT64_MAX / dim))
        return errorf("safetensors: tensor \"%s\" shape overflows", name.c_str());
      count *= dim;
      e.shape.push_back(int64_t(dim));
    }
    if (count > UINT64_MAX / uint64_t(elem)) return errorf("safetensors: tensor \"%s\" size overflows", name.c_str());
    const json& b = (*off)[0];
    const json& en = (*off)[1];
    if (!b.is_number_unsigned() || !en.is_number_unsigned())
      return errorf("safetensors: tensor \"%s\" data_offsets are not non-negative integers", name.c_str());
    uint64_t begin = b.get<uint64_t>(), end = en.get<uint64_t>();
    if (begin > end) return errorf("safetensors: tensor \"%s\" data_offsets [%llu, %llu] are reversed", name.c_str(),
                                   (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
      return errorf("safetensors: tensor \"%s\" ends at data offset %llu but the file holds %llu data bytes (truncated?)",
                    name.c_str(), (unsigned long long)end, (unsigned long long)data_size);
    if (end - begin != count * uint64_t(elem))
      return errorf("safetensors: tensor \"%s\" is %llu bytes but its shape %s of %s needs %llu", name.c_str(),
                    (unsigned long long)(end - begin), shape_to_string(e.shape.data(), int(e.shape.size())).c_str(),
                    e.dtype_name.c_str(), (unsigned long long)(count * uint64_t(elem)));
    e.offset = data_start + begin;
    e.nbytes = end - begin;
    entries.push_back(std::move(e));
  }

  // Tensors may not overlap (zero-sized ones take no bytes).
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : entries)
    if (e.nbytes) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->offset < by_offset[i - 1]->offset + by_offset[i - 1]->nbytes)
      return errorf("safetensors: tensors \"%s\" and \"%s\" overlap", by_offset[i - 1]->name.c_str(),
                    by_offset[i]->name.c_str());
  return entries;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped) return errorf("%s", mapped.error().c_str());
  SafetensorsFile f;
  f.file_ = std::move(*mapped);
  auto entries = parse_safetensors_header(f.file_.data(), f.file_.size(), &f.metadata_);
  if (!entries) return errorf("%s: %s", path.c_str(), entries.error().c_str());
  f.entries_ = std::move(*entries);
  for (size_t i = 0; i < f.entries_.size(); ++i) f.index_[f.entries_[i].name] = i;
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Result<Tensor> SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) return errorf("%s: no tensor \"%s\"", path().c_str(), name.c_str());
  if (!e->known_dtype) return errorf("%s: tensor \"%s\" has dtype %s, which pensieve does not read", path().c_str(),
                                     name.c_str(), e->dtype_name.c_str());
  if (e->shape.size() > size_t(kMaxDims))
    return errorf("%s: tensor \"%s\" has %zu dimensions (at most %d)", path().c_str(), name.c_str(), e->shape.size(), kMaxDims);
  Tensor t;
  t.data = const_cast<uint8_t*>(data(*e));
  t.dtype = e->dtype;
  t.ndim = int(e->shape.size());
  int64_t stride = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.shape[size_t(d)] = e->shape[size_t(d)];
    t.strides[size_t(d)] = stride;
    stride *= e->shape[size_t(d)];
  }
  return t;
}

Status write_safetensors(const std::string& path, const std::vector<SafetensorsWriteEntry>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype_name}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8) h += ' ';  // data starts 8-byte aligned, as the Rust writer does
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return errorf("write_safetensors: cannot create %s", tmp.c_str());
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(h.size()) >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
  for (const auto& t : tensors)
    ok = ok && (t.nbytes == 0 || std::fwrite(t.data, 1, t.nbytes, f) == t.nbytes);
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return errorf("write_safetensors: writing %s failed", path.c_str());
  }
  return Status::Ok();
}

Result<SafetensorsWriter> SafetensorsWriter::create(const std::string& path, std::vector<Entry> entries,
                                                    const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    uint64_t count = 1;
    for (int64_t d : e.shape) count *= uint64_t(d);
    const int elem = safetensors_dtype_size(e.dtype_name);
    if (elem == 0) return errorf("SafetensorsWriter: tensor \"%s\" has unknown dtype \"%s\"", e.name.c_str(), e.dtype_name.c_str());
    if (count * uint64_t(elem) != e.nbytes)
      return errorf("SafetensorsWriter: tensor \"%s\" is %llu bytes but its shape %s of %s needs %llu", e.name.c_str(),
                    (unsigned long long)e.nbytes, shape_to_string(e.shape.data(), int(e.shape.size())).c_str(),
                    e.dtype_name.c_str(), (unsigned long long)(count * uint64_t(elem)));
    if (header.contains(e.name)) return errorf("SafetensorsWriter: tensor \"%s\" appears twice", e.name.c_str());
    header[e.name] = {{"dtype", e.dtype_name}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.nbytes}}};
    offset += e.nbytes;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8) h += ' ';  // data starts 8-byte aligned, as the Rust writer does

  SafetensorsWriter w;
  w.path_ = path;
  w.f_ = std::fopen((path + ".tmp").c_str(), "wb");
  if (!w.f_) return errorf("SafetensorsWriter: cannot create %s.tmp", path.c_str());
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(h.size()) >> (8 * i));
  if (std::fwrite(len, 1, 8, w.f_) != 8 || std::fwrite(h.data(), 1, h.size(), w.f_) != h.size())
    return errorf("SafetensorsWriter: writing the header of %s.tmp failed", path.c_str());
  w.header_bytes_ = 8 + h.size();
  w.data_bytes_ = offset;
  return w;
}

void SafetensorsWriter::discard() {
  if (f_) {
    std::fclose(std::exchange(f_, nullptr));
    std::remove((path_ + ".tmp").c_str());
  }
}

SafetensorsWriter::~SafetensorsWriter() { discard(); }

SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&& o) noexcept
    : f_(std::exchange(o.f_, nullptr)), path_(std::move(o.path_)), header_bytes_(o.header_bytes_),
      data_bytes_(o.data_bytes_), written_(o.written_) {}

SafetensorsWriter& SafetensorsWriter::operator=(SafetensorsWriter&& o) noexcept {
  if (this != &o) {
    discard();
    f_ = std::exchange(o.f_, nullptr);
    path_ = std::move(o.path_);
    header_bytes_ = o.header_bytes_;
    data_bytes_ = o.data_bytes_;
    written_ = o.written_;
  }
  return *this;
}

Status SafetensorsWriter::write(const void* data, uint64_t n) {
  if (!f_) return errorf("SafetensorsWriter: %s is not open", path_.c_str());
  if (written_ + n > data_bytes_)
    return errorf("SafetensorsWriter: %s: %llu bytes written past the %llu the header declares", path_.c_str(),
                  (unsigned long long)(written_ + n), (unsigned long long)data_bytes_);
  if (n && std::fwrite(data, 1, n, f_) != n) return errorf("SafetensorsWriter: writing %s.tmp failed (disk full?)", path_.c_str());
  written_ += n;
  return Status::Ok();
}

Status SafetensorsWriter::finish() {
  if (!f_) return errorf("SafetensorsWriter: %s is not open", path_.c_str());
  if (written_ != data_bytes_)
    return errorf("SafetensorsWriter: %s: %llu of %llu data bytes written", path_.c_str(), (unsigned long long)written_,
                  (unsigned long long)data_bytes_);
  std::FILE* f = std::exchange(f_, nullptr);
  const std::string tmp = path_ + ".tmp";
  if (std::fclose(f) != 0 || std::rename(tmp.c_str(), path_.c_str()) != 0) {
    std::remove(tmp.c_str());
    return errorf("SafetensorsWriter: finishing %s failed", path_.c_str());
  }
  return Status::Ok();
}

}  // namespace pensieve
