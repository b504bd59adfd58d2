// MappedFile: a read-only memory map of a whole file (RAII, move-only). Weights are views into it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "tensor/result.h"

namespace pensieve {

class MappedFile {
 public:
  static Result<MappedFile> open(const std::string& path);

  MappedFile() = default;
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Hint the kernel to read the whole file ahead (used when weights are about to be streamed).
  void advise_willneed() const;

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace pensieve
