#include "tensor/tensor.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace pensieve {

// Buffers from this size on are mapped (page-aligned, lazily committed) rather than malloc'd.
static constexpr size_t kMapThreshold = size_t(1) << 21;

Buffer::Buffer(size_t bytes) {
  if (bytes == 0) return;
  size_t rounded = (bytes + kTensorAlign - 1) / kTensorAlign * kTensorAlign;
  if (rounded >= kMapThreshold) {
    void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = p;
    mapped_ = true;
  } else {
    data_ = std::aligned_alloc(kTensorAlign, rounded);
    if (!data_) throw std::bad_alloc();
    std::memset(data_, 0, rounded);
  }
  size_ = bytes;
}

static void release(void* data, size_t size, bool mapped) {
  if (!data) return;
  if (mapped) {
    munmap(data, (size + kTensorAlign - 1) / kTensorAlign * kTensorAlign);
  } else {
    std::free(data);
  }
}

Buffer::~Buffer() { release(data_, size_, mapped_); }

Buffer::Buffer(Buffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), mapped_(std::exchange(o.mapped_, false)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release(data_, size_, mapped_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, false);
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
