// Tensor: a non-owning, typed, strided view of up to 4 dimensions. Buffer: owning, 64-byte
// aligned, move-only bytes. A Tensor never owns memory: it views a Buffer, a MappedFile or a
// caller's array, which must outlive it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "tensor/dtype.h"

namespace pensieve {

inline constexpr size_t kTensorAlign = 64;
inline constexpr int kMaxDims = 4;

class Buffer {
 public:
  Buffer() = default;
  // Zero-filled, 64-byte aligned; empty if bytes == 0. Large buffers (a KV cache pool, scratch)
  // come from anonymous mmap: the kernel zeroes their pages on first touch, so memory that is
  // never used (most of a big KV pool, most of the time) is never resident.
  explicit Buffer(size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t size() const { return size_; }
  template <class T> T* as() { return static_cast<T*>(data_); }
  template <class T> const T* as() const { return static_cast<const T*>(data_); }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
};

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};    // shape[0] is the outermost dimension
  std::array<int64_t, kMaxDims> strides{};  // in elements; contiguous: strides[ndim-1] == 1

  // A contiguous row-major view of `data`.
  static Tensor view(void* data, DType dtype, std::initializer_list<int64_t> shape);
  static Tensor view(const void* data, DType dtype, std::initializer_list<int64_t> shape) {
    return view(const_cast<void*>(data), dtype, shape);
  }

  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }  // plain dtypes only
  bool is_contiguous() const;
  int64_t dim(int i) const { return shape[size_t(i)]; }
  std::string shape_str() const;  // "[3072, 8192]"

  template <class T> T* ptr() const { return static_cast<T*>(data); }
  // Row r of a 2-D (or the first index of an N-D) tensor.
  template <class T> T* row(int64_t r) const { return static_cast<T*>(data) + r * strides[0]; }
};

// "[3072, 8192]" for any shape given as a list.
std::string shape_to_string(const int64_t* shape, int ndim);

}  // namespace pensieve
