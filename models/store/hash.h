// Streaming file digests used to verify downloads: sha256 (the hub's id of an LFS file) and the git
// blob sha1 (the id of a file stored in git: sha1("blob <size>\0" + contents)).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "tensor/result.h"

namespace pensieve {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void reset();
  void update(const void* data, size_t n);
  std::string hex_digest();  // finishes the hash; call reset() before reusing

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Hex digests of bytes in memory.
std::string sha256_hex(std::string_view data);
std::string git_blob_sha1_hex(std::string_view data);

// Hex digests of a whole file (read in 1 MiB chunks).
Result<std::string> sha256_file(const std::string& path);
Result<std::string> git_blob_sha1_file(const std::string& path);

// Lowercase hex of `n` bytes.
std::string to_hex(const uint8_t* data, size_t n);

}  // namespace pensieve
