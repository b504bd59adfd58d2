#include "tensor/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace pensieve {

Buffer::Buffer(size_t bytes) {
  if (bytes == 0) return;
  size_t rounded = (bytes + kTensorAlign - 1) / kTensorAlign * kTensorAlign;
  data_ = std::aligned_alloc(kTensorAlign, rounded);
  if (!data_) throw std::bad_alloc();
  std::memset(data_, 0, rounded);
  size_ = bytes;
}

Buffer::~Buffer() { std::free(data_); }

Buffer::Buffer(Buffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

Tensor Tensor::view(void* data, DType dtype, std::initializer_list<int64_t> shape) {
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.ndim = int(shape.size());
  int i = 0;
  for (int64_t d : shape) t.shape[size_t(i++)] = d;
  int64_t stride = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.strides[size_t(d)] = stride;
    stride *= t.shape[size_t(d)];
  }
  return t;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[size_t(i)];
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (strides[size_t(d)] != stride) return false;
    stride *= shape[size_t(d)];
  }
  return true;
}

std::string Tensor::shape_str() const { return shape_to_string(shape.data(), ndim); }

std::string shape_to_string(const int64_t* shape, int ndim) {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace pensieve
