// Buffer allocation, memory-type choice, and host <-> device copies (staged where needed).
#include "kernels/vulkan/memory.h"

#include <algorithm>
#include <cstring>

#include "kernels/vulkan/device.h"

namespace pensieve::vulkan {

uint32_t Context::memory_type(uint32_t type_bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid) const {
  for (int pass = 0; pass < 2; ++pass)
    for (uint32_t t = 0; t < mem_props_.memoryTypeCount; ++t) {
      if (!(type_bits & (1u << t))) continue;
      VkMemoryPropertyFlags f = mem_props_.memoryTypes[t].propertyFlags;
      if ((f & want) != want) continue;
      if (pass == 0 && (f & avoid)) continue;
      return t;
    }
  return UINT32_MAX;
}

void Context::count_alloc(bool device, uint64_t bytes, int sign) {
  uint64_t& c = device ? mem_use_.device : mem_use_.host;
  c = sign > 0 ? c + bytes : c - bytes;
  mem_use_.peak_device = std::max(mem_use_.peak_device, mem_use_.device);
}

Result<Buffer> Buffer::create(Context& ctx, uint64_t bytes, MemoryKind kind, const char* what) {
  const VkApi& vk = ctx.vk();
  Buffer b;
  b.ctx_ = &ctx;
  b.kind_ = kind;
  b.size_ = std::max<uint64_t>(16, (bytes + 15) / 16 * 16);
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = b.size_;
  bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VkResult r = vk.vkCreateBuffer(ctx.device(), &bci, nullptr, &b.buf_);
  if (r != VK_SUCCESS)
    return errorf("vulkan: creating %s of %llu bytes: %s", what, (unsigned long long)bytes, vk_result_name(r));
  VkMemoryRequirements req;
  vk.vkGetBufferMemoryRequirements(ctx.device(), b.buf_, &req);

  constexpr VkMemoryPropertyFlags DL = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, HV = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT,
                                  HC = VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, CA = VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
  uint32_t type = UINT32_MAX;
  switch (kind) {
    case MemoryKind::device:
      if (ctx.info().unified_memory) type = ctx.memory_type(req.memoryTypeBits, DL | HV | HC);
      if (type == UINT32_MAX) type = ctx.memory_type(req.memoryTypeBits, DL, HV);
      break;
    case MemoryKind::input:
      if (!ctx.info().unified_memory) type = ctx.memory_type(req.memoryTypeBits, DL | HV | HC);
      if (type != UINT32_MAX) break;
      [[fallthrough]];  // no host-visible device-local memory: as upload
    case MemoryKind::upload:
      type = ctx.memory_type(req.memoryTypeBits, HV | HC, ctx.info().unified_memory ? 0 : DL);
      break;
    case MemoryKind::readback:
      type = ctx.memory_type(req.memoryTypeBits, HV | CA | HC);
      if (type == UINT32_MAX) type = ctx.memory_type(req.memoryTypeBits, HV | CA);
      if (type == UINT32_MAX) type = ctx.memory_type(req.memoryTypeBits, HV | HC);
      break;
  }
  if (type == UINT32_MAX) {
    b.release();
    return errorf("vulkan: no memory type for %s", what);
  }
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = type;
  r = vk.vkAllocateMemory(ctx.device(), &ai, nullptr, &b.mem_);
  if (r != VK_SUCCESS) {
    b.release();
    return errorf("vulkan: allocating %llu bytes for %s: %s (in use: %.1f MiB device, %.1f MiB host)",
                  (unsigned long long)req.size, what, vk_result_name(r), ctx.memory_use().device / 1048576.0,
                  ctx.memory_use().host / 1048576.0);
  }
  r = vk.vkBindBufferMemory(ctx.device(), b.buf_, b.mem_, 0);
  if (r != VK_SUCCESS) {
    b.release();
    return errorf("vkBindBufferMemory: %s", vk_result_name(r));
  }
  // Host-visible kinds (and device memory on unified devices) stay mapped for their lifetime.
  bool host_visible = kind != MemoryKind::device || ctx.info().unified_memory;
  if (host_visible) {
    uint32_t t_hv = ctx.memory_type(1u << type, HV);
    if (t_hv != UINT32_MAX) {
      r = vk.vkMapMemory(ctx.device(), b.mem_, 0, VK_WHOLE_SIZE, 0, &b.mapped_);
      if (r != VK_SUCCESS) {
        b.release();
        return errorf("vkMapMemory: %s", vk_result_name(r));
      }
      b.coherent_ = ctx.memory_type(1u << type, HC) != UINT32_MAX;
    }
  }
  ctx.count_alloc(kind == MemoryKind::device, b.size_, +1);
  b.counted_ = true;
  return b;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    ctx_ = o.ctx_;
    buf_ = o.buf_;
    mem_ = o.mem_;
    size_ = o.size_;
    kind_ = o.kind_;
    mapped_ = o.mapped_;
    coherent_ = o.coherent_;
    counted_ = o.counted_;
    o.counted_ = false;
    o.ctx_ = nullptr;
    o.buf_ = VK_NULL_HANDLE;
    o.mem_ = VK_NULL_HANDLE;
    o.mapped_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

Buffer::~Buffer() { release(); }

void Buffer::release() {
  if (!ctx_) return;
  const VkApi& vk = ctx_->vk();
  if (counted_) ctx_->count_alloc(kind_ == MemoryKind::device, size_, -1);
  counted_ = false;
  if (mapped_) vk.vkUnmapMemory(ctx_->device(), mem_);
  if (buf_) vk.vkDestroyBuffer(ctx_->device(), buf_, nullptr);
  if (mem_) vk.vkFreeMemory(ctx_->device(), mem_, nullptr);
  ctx_ = nullptr;
  buf_ = VK_NULL_HANDLE;
  mem_ = VK_NULL_HANDLE;
  mapped_ = nullptr;
}

void Buffer::flush() const {
  if (!mapped_ || coherent_) return;
  VkMappedMemoryRange r{VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE};
  r.memory = mem_;
  r.size = VK_WHOLE_SIZE;
  ctx_->vk().vkFlushMappedMemoryRanges(ctx_->device(), 1, &r);
}

void Buffer::invalidate() const {
  if (!mapped_ || coherent_) return;
  VkMappedMemoryRange r{VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE};
  r.memory = mem_;
  r.size = VK_WHOLE_SIZE;
  ctx_->vk().vkInvalidateMappedMemoryRanges(ctx_->device(), 1, &r);
}

// Staging chunk: large enough that per-submission overhead is small next to the copy.
static constexpr uint64_t kStagingBytes = 64ull << 20;

Status Context::ensure_staging(uint64_t bytes) {
  if (staging_ && staging_->size() >= bytes) return Status::Ok();
  staging_.reset();
  auto b = Buffer::create(*this, bytes, MemoryKind::upload, "staging buffer");
  if (!b.ok()) return std::move(b).take_error();
  staging_ = std::make_unique<Buffer>(std::move(*b));
  return Status::Ok();
}

Result<Context::SplitKScratch> Context::splitk_scratch() {
  if (!splitk_partials_) {
    auto p = Buffer::create(*this, kSplitKPartialBytes, MemoryKind::device, "split-K partials");
    if (!p.ok()) return std::move(p).take_error();
    auto c = Buffer::create(*this, kSplitKCounters * 4, MemoryKind::device, "split-K counters");
    if (!c.ok()) return std::move(c).take_error();
    const std::vector<uint32_t> zeros(kSplitKCounters, 0);
    PENSIEVE_TRY(upload(*c, 0, zeros.data(), zeros.size() * 4));
    splitk_partials_ = std::make_unique<Buffer>(std::move(*p));
    splitk_counters_ = std::make_unique<Buffer>(std::move(*c));
  }
  return SplitKScratch{splitk_partials_->whole(), splitk_counters_->whole()};
}

static Status check_range(const char* op, const Buffer& b, uint64_t offset, uint64_t bytes) {
  if (offset > b.size() || bytes > b.size() - offset)
    return errorf("vulkan %s: range [%llu, +%llu) outside a buffer of %llu bytes", op, (unsigned long long)offset,
                  (unsigned long long)bytes, (unsigned long long)b.size());
  return Status::Ok();
}

Status Context::upload(const Buffer& dst, uint64_t offset, const void* src, uint64_t bytes) {
  PENSIEVE_TRY(check_range("upload", dst, offset, bytes));
  if (bytes == 0) return Status::Ok();
  if (dst.mapped()) {
    std::memcpy(static_cast<uint8_t*>(dst.mapped()) + offset, src, bytes);
    dst.flush();
    return Status::Ok();
  }
  PENSIEVE_TRY(ensure_staging(std::min(bytes, kStagingBytes)));
  const uint8_t* p = static_cast<const uint8_t*>(src);
  for (uint64_t done = 0; done < bytes;) {
    uint64_t n = std::min(bytes - done, staging_->size());
    std::memcpy(staging_->mapped(), p + done, n);
    staging_->flush();
    auto cb = begin_one_shot();
    if (!cb.ok()) return std::move(cb).take_error();
    VkBufferCopy c{0, offset + done, n};
    vk_.vkCmdCopyBuffer(*cb, staging_->handle(), dst.handle(), 1, &c);
    PENSIEVE_TRY(end_one_shot(*cb));
    done += n;
  }
  return Status::Ok();
}

Status Context::download(void* dst, const Buffer& src, uint64_t offset, uint64_t bytes) {
  PENSIEVE_TRY(check_range("download", src, offset, bytes));
  if (bytes == 0) return Status::Ok();
  if (src.mapped()) {
    src.invalidate();
    std::memcpy(dst, static_cast<const uint8_t*>(src.mapped()) + offset, bytes);
    return Status::Ok();
  }
  PENSIEVE_TRY(ensure_staging(std::min(bytes, kStagingBytes)));
  uint8_t* p = static_cast<uint8_t*>(dst);
  for (uint64_t done = 0; done < bytes;) {
    uint64_t n = std::min(bytes - done, staging_->size());
    auto cb = begin_one_shot();
    if (!cb.ok()) return std::move(cb).take_error();
    VkBufferCopy c{offset + done, 0, n};
    vk_.vkCmdCopyBuffer(*cb, src.handle(), staging_->handle(), 1, &c);
    PENSIEVE_TRY(end_one_shot(*cb));
    staging_->invalidate();
    std::memcpy(p + done, staging_->mapped(), n);
    done += n;
  }
  return Status::Ok();
}

}  // namespace pensieve::vulkan
