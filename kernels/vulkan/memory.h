// Device buffers: one VkBuffer + VkDeviceMemory each, move-only, freed by their destructor.
//
// The model allocates a few large buffers (weights, the KV pool, activation scratch) once per
// session and hands ops BufferSlices into them; decode never allocates. Kinds:
//   device    device-local. On unified-memory devices (integrated GPUs, Apple, lavapipe) it is
//             also host-visible and mapped, so uploads are a memcpy with no staging copy.
//   upload    host-visible, coherent: staging, and small per-step inputs the host writes (token
//             ids, positions, block tables) that a recorded command buffer reads.
//   readback  host-visible, cached where the device offers it: results the host reads back.
// Sizes are rounded up to 16 bytes so shaders may read whole 32-bit words (and uvec4s) of
// 16-bit planes whose element count is odd.
#pragma once

#include <cstdint>

#include "kernels/vulkan/loader.h"
#include "tensor/result.h"

namespace pensieve::vulkan {

class Context;
class Buffer;

// device: shader data (device-local); upload: host-written staging (host memory); readback:
// shader results the host reads (host-cached); input: small per-step inputs the host writes and
// every shader of the step reads (device-local and host-visible where the device has such memory,
// the BAR window of a discrete GPU, so shaders do not read them across PCIe; else as upload).
enum class MemoryKind : uint8_t { device, upload, readback, input };

// A byte range of a buffer, as bound to a shader (offset must meet the device's
// min_storage_buffer_offset_alignment). It holds the Vulkan handle, not a pointer to the Buffer
// object, so it stays valid when that object is moved; it must not outlive the buffer itself.
struct BufferSlice {
  VkBuffer handle = VK_NULL_HANDLE;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t buffer_size = 0;  // of the whole buffer, for range checks
  bool valid() const { return handle != VK_NULL_HANDLE && size > 0; }
  BufferSlice sub(uint64_t off, uint64_t bytes) const { return {handle, offset + off, bytes, buffer_size}; }
};

class Buffer {
 public:
  static Result<Buffer> create(Context& ctx, uint64_t bytes, MemoryKind kind, const char* what = "buffer");
  Buffer() = default;
  ~Buffer();
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  VkBuffer handle() const { return buf_; }
  uint64_t size() const { return size_; }
  MemoryKind kind() const { return kind_; }
  void* mapped() const { return mapped_; }  // nullptr unless host-visible
  bool coherent() const { return coherent_; }
  BufferSlice whole() const { return {buf_, 0, size_, size_}; }
  BufferSlice slice(uint64_t offset, uint64_t bytes) const { return {buf_, offset, bytes, size_}; }

  // For non-coherent host-visible memory: make host writes visible to the device / device writes
  // visible to the host. No-ops on coherent memory.
  void flush() const;
  void invalidate() const;

 private:
  void release();
  Context* ctx_ = nullptr;
  VkBuffer buf_ = VK_NULL_HANDLE;
  VkDeviceMemory mem_ = VK_NULL_HANDLE;
  uint64_t size_ = 0;
  MemoryKind kind_ = MemoryKind::device;
  void* mapped_ = nullptr;
  bool coherent_ = true;
  bool counted_ = false;  // added to the Context's MemoryUse
};

}  // namespace pensieve::vulkan
