#include "models/store/hash.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace pensieve {

std::string to_hex(const uint8_t* data, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kDigits[data[i] >> 4];
    s[2 * i + 1] = kDigits[data[i] & 15];
  }
  return s;
}

struct Sha256::Impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) { reset(); }
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::reset() { EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr); }
void Sha256::update(const void* data, size_t n) { EVP_DigestUpdate(impl_->ctx, data, n); }
std::string Sha256::hex_digest() {
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(impl_->ctx, md, &len);
  return to_hex(md, len);
}

// Digest of an optional prefix followed by the file's bytes.
static Result<std::string> digest_file(const std::string& path, const EVP_MD* md, bool git_blob_header) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return errorf("open %s: %s", path.c_str(), std::strerror(errno));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, md, nullptr);
  if (git_blob_header) {
    std::fseek(f, 0, SEEK_END);
    long size = std::ftell(f);
    std::fseek(f, 0, SEEK_SET);
    std::string header = "blob " + std::to_string(size);
    EVP_DigestUpdate(ctx, header.c_str(), header.size() + 1);  // with the terminating NUL
  }
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) EVP_DigestUpdate(ctx, buf.data(), n);
  bool read_error = std::ferror(f);
  std::fclose(f);
  uint8_t out[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx, out, &len);
  EVP_MD_CTX_free(ctx);
  if (read_error) return errorf("read %s failed", path.c_str());
  return to_hex(out, len);
}

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.hex_digest();
}

std::string git_blob_sha1_hex(std::string_view data) {
  std::string header = "blob " + std::to_string(data.size());
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr);
  EVP_DigestUpdate(ctx, header.c_str(), header.size() + 1);  // with the terminating NUL
  EVP_DigestUpdate(ctx, data.data(), data.size());
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  return to_hex(md, len);
}

Result<std::string> sha256_file(const std::string& path) { return digest_file(path, EVP_sha256(), false); }
Result<std::string> git_blob_sha1_file(const std::string& path) { return digest_file(path, EVP_sha1(), true); }

}  // namespace pensieve
