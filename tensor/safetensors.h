// safetensors: read-only, zero-copy access to the tensors of a .safetensors file.
//
// File layout: u64 little-endian header length N, N bytes of JSON
//   {"__metadata__": {...}, "<name>": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ...}
// then the data; offsets are relative to the first byte after the header. Everything in the
// header is untrusted: sizes are checked with 64-bit overflow-checked arithmetic against the file
// size, shapes against byte counts, and tensors may not overlap.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "tensor/mapped_file.h"
#include "tensor/result.h"
#include "tensor/tensor.h"

namespace pensieve {

struct SafetensorsEntry {
  std::string name;
  std::string dtype_name;       // as written: "F16", "U32", "I64", ...
  DType dtype = DType::u8;      // valid when known_dtype
  bool known_dtype = false;     // one of pensieve's DTypes
  std::vector<int64_t> shape;
  uint64_t offset = 0;          // from the start of the file
  uint64_t nbytes = 0;
};

// Parses and validates a header held in memory (the fuzz target calls this directly).
// `file` is the whole file (header length, header, data).
Result<std::vector<SafetensorsEntry>> parse_safetensors_header(const uint8_t* file, size_t file_size,
                                                               std::map<std::string, std::string>* metadata);

class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* find(const std::string& name) const;
  const uint8_t* data(const SafetensorsEntry& e) const { return file_.data() + e.offset; }
  // A view of a tensor of a known dtype (error names the file and tensor otherwise).
  Result<Tensor> tensor(const std::string& name) const;
  const MappedFile& mapped() const { return file_; }

 private:
  MappedFile file_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Bytes per element of a safetensors dtype name, 0 if unknown.
int safetensors_dtype_size(const std::string& name);

// Writes tensors to a .safetensors file (header padded to 8 bytes, data in the given order).
struct SafetensorsWriteEntry {
  std::string name;
  std::string dtype_name;  // "F16", "U32", ...
  std::vector<int64_t> shape;
  const void* data;
  uint64_t nbytes;
};
Status write_safetensors(const std::string& path, const std::vector<SafetensorsWriteEntry>& tensors,
                         const std::map<std::string, std::string>& metadata);

// Writes a .safetensors file one tensor at a time (converters hold one tensor, never the model):
// every name, dtype, shape and size is fixed up front, which fixes the header; then the tensors'
// bytes are appended in the order given. The file is built as path + ".tmp" and renamed to `path`
// by finish(); a writer destroyed before finish() deletes it.
class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    std::string dtype_name;  // "F16", "U32", ...
    std::vector<int64_t> shape;
    uint64_t nbytes = 0;     // must equal the shape's element count times the dtype size
  };
  static Result<SafetensorsWriter> create(const std::string& path, std::vector<Entry> entries,
                                          const std::map<std::string, std::string>& metadata);
  SafetensorsWriter() = default;
  ~SafetensorsWriter();
  SafetensorsWriter(SafetensorsWriter&& o) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&& o) noexcept;
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // The next `n` bytes of data (tensors back to back, in entry order; any chunking).
  Status write(const void* data, uint64_t n);
  // Checks that every tensor's bytes were written, flushes, closes and renames into place.
  Status finish();
  uint64_t file_size() const { return header_bytes_ + data_bytes_; }

 private:
  void discard();  // closes and deletes an unfinished file

  std::FILE* f_ = nullptr;
  std::string path_;
  uint64_t header_bytes_ = 0, data_bytes_ = 0, written_ = 0;
};

}  // namespace pensieve
