#include "kernels/vulkan/command.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "kernels/vulkan/device.h"

namespace pensieve::vulkan {

// Descriptor pool size: sets per pool (a Phi decode step records a few hundred dispatches; more
// pools are chained when one runs out).
static constexpr uint32_t kSetsPerPool = 512;
static constexpr uint32_t kQueryCapacity = 8192;
static constexpr int kSpinUs = 10000;  // see init()

Result<std::unique_ptr<CommandList>> CommandList::create(Context& ctx) { return create(ctx, ctx.options().profile); }

Result<std::unique_ptr<CommandList>> CommandList::create(Context& ctx, bool profile) {
  std::unique_ptr<CommandList> cl(new CommandList(ctx));
  PENSIEVE_TRY(cl->init(profile));
  return cl;
}

Status CommandList::init(bool profile) {
  const VkApi& vk = ctx_.vk();
  VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pci.queueFamilyIndex = ctx_.info().queue_family;
  PENSIEVE_VK_CHECK(vk.vkCreateCommandPool(ctx_.device(), &pci, nullptr, &pool_));
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  PENSIEVE_VK_CHECK(vk.vkAllocateCommandBuffers(ctx_.device(), &ai, &cb_));
  VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  PENSIEVE_VK_CHECK(vk.vkCreateFence(ctx_.device(), &fci, nullptr, &fence_));
  // Without profiling, two timestamps (start and end of the list) still time each submission.
  const bool timestamps = ctx_.info().timestamp_period_ns > 0;
  profiling_ = profile && timestamps;
  if (timestamps) {
    VkQueryPoolCreateInfo qci{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    qci.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qci.queryCount = profiling_ ? kQueryCapacity : 2;
    PENSIEVE_VK_CHECK(vk.vkCreateQueryPool(ctx_.device(), &qci, nullptr, &queries_));
    query_capacity_ = qci.queryCount;
  }
  // wait() polls the fence before it blocks: a blocking wait sleeps, and waking the thread costs
  // ~0.1 ms per submission (8% of a one-token decode step on the H200, bench/RESULTS.md phase 13).
  // Up to kSpinUs, so a short step returns as soon as the GPU is done while a long one (a prefill
  // chunk, tens of ms) still sleeps after that; never on a CPU device (lavapipe), whose threads
  // need the cores the poll would take. PENSIEVE_VK_SPIN_US sets the limit (0: block at once).
  spin_us_ = ctx_.info().type == VK_PHYSICAL_DEVICE_TYPE_CPU ? 0 : kSpinUs;
  if (const char* e = std::getenv("PENSIEVE_VK_SPIN_US")) spin_us_ = std::max(0, std::atoi(e));
  return Status::Ok();
}

CommandList::~CommandList() {
  const VkApi& vk = ctx_.vk();
  VkDevice dev = ctx_.device();
  if (pending_) vk.vkWaitForFences(dev, 1, &fence_, VK_TRUE, UINT64_MAX);
  if (queries_) vk.vkDestroyQueryPool(dev, queries_, nullptr);
  for (VkDescriptorPool p : desc_pools_) vk.vkDestroyDescriptorPool(dev, p, nullptr);
  if (fence_) vk.vkDestroyFence(dev, fence_, nullptr);
  if (pool_) vk.vkDestroyCommandPool(dev, pool_, nullptr);  // frees cb_
}

// Every access a dispatch or copy makes, made visible to every later dispatch or copy.
static void full_barrier(const VkApi& vk, VkCommandBuffer cb, VkPipelineStageFlags dst_extra = 0,
                         VkAccessFlags dst_access_extra = 0) {
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                     VK_ACCESS_TRANSFER_WRITE_BIT | dst_access_extra;
  VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  vk.vkCmdPipelineBarrier(cb, stages | VK_PIPELINE_STAGE_HOST_BIT, stages | dst_extra, 0, 1, &mb, 0, nullptr, 0,
                          nullptr);
}

Status CommandList::begin() {
  const VkApi& vk = ctx_.vk();
  if (pending_) PENSIEVE_TRY(wait());
  if (recording_) vk.vkEndCommandBuffer(cb_);
  PENSIEVE_VK_CHECK(vk.vkResetCommandBuffer(cb_, 0));
  for (VkDescriptorPool p : desc_pools_) vk.vkResetDescriptorPool(ctx_.device(), p, 0);
  desc_pool_cur_ = 0;
  reads_.clear();
  writes_.clear();
  labels_.clear();
  scope_.clear();
  barriers_ = 0;
  recorded_ = false;
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  PENSIEVE_VK_CHECK(vk.vkBeginCommandBuffer(cb_, &bi));
  recording_ = true;
  // Writes of the previous submission (and of the host) are visible to this one.
  full_barrier(vk, cb_);
  if (queries_) {
    vk.vkCmdResetQueryPool(cb_, queries_, 0, query_capacity_);
    vk.vkCmdWriteTimestamp(cb_, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, queries_, 0);
  }
  return Status::Ok();
}

Result<VkDescriptorSet> CommandList::allocate_set(VkDescriptorSetLayout layout) {
  const VkApi& vk = ctx_.vk();
  for (;;) {
    if (desc_pool_cur_ == desc_pools_.size()) {
      VkDescriptorPoolSize ps{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerPool * kMaxBindings};
      VkDescriptorPoolCreateInfo ci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
      ci.maxSets = kSetsPerPool;
      ci.poolSizeCount = 1;
      ci.pPoolSizes = &ps;
      VkDescriptorPool p;
      PENSIEVE_VK_CHECK(vk.vkCreateDescriptorPool(ctx_.device(), &ci, nullptr, &p));
      desc_pools_.push_back(p);
    }
    VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    ai.descriptorPool = desc_pools_[desc_pool_cur_];
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &layout;
    VkDescriptorSet set;
    VkResult r = vk.vkAllocateDescriptorSets(ctx_.device(), &ai, &set);
    if (r == VK_SUCCESS) return set;
    if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL)
      return errorf("vkAllocateDescriptorSets: %s", vk_result_name(r));
    ++desc_pool_cur_;  // this pool is full: next (or a new) one
  }
}

bool CommandList::overlaps(const std::vector<Range>& v, const Range& r) {
  for (const Range& x : v)
    if (x.buf == r.buf && x.begin < r.end && r.begin < x.end) return true;
  return false;
}

void CommandList::barrier() {
  full_barrier(ctx_.vk(), cb_);
  reads_.clear();
  writes_.clear();
  ++barriers_;
}

// Between two dispatches only: shader writes made visible to later shader reads and writes. Every
// copy, fill and the start of the list are fenced by full barriers, so a hazard dispatch() finds is
// always between compute shaders. (PENSIEVE_VK_FULL_BARRIERS=1 uses full barriers here too: A/B.)
void CommandList::compute_barrier() {
  static const bool full = [] {
    const char* e = std::getenv("PENSIEVE_VK_FULL_BARRIERS");
    return e && *e == '1';
  }();
  if (full) return barrier();
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
  ctx_.vk().vkCmdPipelineBarrier(cb_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1,
                                 &mb, 0, nullptr, 0, nullptr);
  reads_.clear();
  writes_.clear();
  ++barriers_;
}

Status CommandList::dispatch(const Pipeline& p, std::initializer_list<BufferSlice> buffers, const void* push,
                             uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz) {
  if (!recording_) return errorf("vulkan %s: dispatch outside begin()/end()", p.label.c_str());
  const DeviceInfo& info = ctx_.info();
  if (buffers.size() != p.desc->n_buffers)
    return errorf("vulkan %s: %zu buffers bound, kernel has %u", p.label.c_str(), buffers.size(), p.desc->n_buffers);
  if (push_bytes != p.desc->push_bytes)
    return errorf("vulkan %s: %u push-constant bytes, kernel has %u", p.label.c_str(), push_bytes,
                  p.desc->push_bytes);
  if (gx == 0 || gy == 0 || gz == 0) return Status::Ok();  // nothing to do
  if (gx > info.max_workgroup_count[0] || gy > info.max_workgroup_count[1] || gz > info.max_workgroup_count[2])
    return errorf("vulkan %s: grid %ux%ux%u exceeds the device's %ux%ux%u", p.label.c_str(), gx, gy, gz,
                  info.max_workgroup_count[0], info.max_workgroup_count[1], info.max_workgroup_count[2]);

  // Hazards against dispatches since the last barrier.
  std::vector<Range> mine;
  bool need_barrier = false;
  uint32_t i = 0;
  for (const BufferSlice& b : buffers) {
    if (!b.valid()) return errorf("vulkan %s: binding %u is empty", p.label.c_str(), i);
    if (b.offset % info.min_storage_buffer_offset_alignment)
      return errorf("vulkan %s: binding %u offset %llu is not a multiple of %llu", p.label.c_str(), i,
                    (unsigned long long)b.offset, (unsigned long long)info.min_storage_buffer_offset_alignment);
    if (b.offset + b.size > b.buffer_size || b.size > info.max_storage_buffer_range)
      return errorf("vulkan %s: binding %u range [%llu, +%llu) outside its buffer (%llu) or over the device "
                    "limit", p.label.c_str(), i, (unsigned long long)b.offset, (unsigned long long)b.size,
                    (unsigned long long)b.buffer_size);
    Range r{b.handle, b.offset, b.offset + b.size};
    bool writes = (p.desc->write_mask >> i) & 1;
    need_barrier |= overlaps(writes_, r) || (writes && overlaps(reads_, r));
    mine.push_back(r);
    ++i;
  }
  if (need_barrier) compute_barrier();

  auto set = allocate_set(p.set_layout);
  if (!set.ok()) return std::move(set).take_error();
  VkDescriptorBufferInfo infos[kMaxBindings];
  VkWriteDescriptorSet writes[kMaxBindings];
  i = 0;
  for (const BufferSlice& b : buffers) {
    infos[i] = {b.handle, b.offset, b.size};
    writes[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    writes[i].dstSet = *set;
    writes[i].dstBinding = i;
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &infos[i];
    ++i;
  }
  const VkApi& vk = ctx_.vk();
  vk.vkUpdateDescriptorSets(ctx_.device(), i, writes, 0, nullptr);
  vk.vkCmdBindPipeline(cb_, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
  vk.vkCmdBindDescriptorSets(cb_, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &*set, 0, nullptr);
  if (push_bytes) vk.vkCmdPushConstants(cb_, p.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  vk.vkCmdDispatch(cb_, gx, gy, gz);
  labels_.push_back(scope_.empty() ? p.label : scope_ + "/" + p.label);
  if (profiling_ && labels_.size() < query_capacity_)
    vk.vkCmdWriteTimestamp(cb_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries_, uint32_t(labels_.size()));

  i = 0;
  for (const Range& r : mine) {
    ((p.desc->write_mask >> i) & 1 ? writes_ : reads_).push_back(r);
    ++i;
  }
  return Status::Ok();
}

Status CommandList::copy(const BufferSlice& src, const BufferSlice& dst) {
  if (!recording_) return errorf("vulkan copy: outside begin()/end()");
  if (src.size != dst.size || src.offset + src.size > src.buffer_size ||
      dst.offset + dst.size > dst.buffer_size)
    return errorf("vulkan copy: bad ranges (%llu vs %llu bytes)", (unsigned long long)src.size,
                  (unsigned long long)dst.size);
  barrier();
  VkBufferCopy c{src.offset, dst.offset, src.size};
  ctx_.vk().vkCmdCopyBuffer(cb_, src.handle, dst.handle, 1, &c);
  barrier();
  return Status::Ok();
}

Status CommandList::fill(const BufferSlice& dst, uint32_t value) {
  if (!recording_) return errorf("vulkan fill: outside begin()/end()");
  if (dst.size % 4 || dst.offset % 4 || dst.offset + dst.size > dst.buffer_size)
    return errorf("vulkan fill: bad range");
  barrier();
  ctx_.vk().vkCmdFillBuffer(cb_, dst.handle, dst.offset, dst.size, value);
  barrier();
  return Status::Ok();
}

Status CommandList::end() {
  if (!recording_) return errorf("vulkan: end() without begin()");
  // Results visible to the host once the fence signals.
  full_barrier(ctx_.vk(), cb_, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
  if (queries_ && !profiling_) ctx_.vk().vkCmdWriteTimestamp(cb_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries_, 1);
  recording_ = false;
  PENSIEVE_VK_CHECK(ctx_.vk().vkEndCommandBuffer(cb_));
  recorded_ = true;
  return Status::Ok();
}

Status CommandList::submit() {
  if (!recorded_) return errorf("vulkan: submit() before end()");
  if (pending_) PENSIEVE_TRY(wait());
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cb_;
  PENSIEVE_VK_CHECK(ctx_.vk().vkQueueSubmit(ctx_.queue(), 1, &si, fence_));
  pending_ = true;
  return Status::Ok();
}

Status CommandList::wait() {
  if (!pending_) return Status::Ok();
  const VkApi& vk = ctx_.vk();
  VkResult r = VK_NOT_READY;
  if (spin_us_ > 0) {  // poll first (see init())
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
    do r = vk.vkGetFenceStatus(ctx_.device(), fence_);
    while (r == VK_NOT_READY && std::chrono::steady_clock::now() < until);
  }
  if (r == VK_NOT_READY) r = vk.vkWaitForFences(ctx_.device(), 1, &fence_, VK_TRUE, UINT64_MAX);
  pending_ = false;
  vk.vkResetFences(ctx_.device(), 1, &fence_);
  if (r != VK_SUCCESS) return errorf("vulkan: waiting for the GPU: %s", vk_result_name(r));
  return Status::Ok();
}

Status CommandList::submit_and_wait() {
  PENSIEVE_TRY(submit());
  return wait();
}

Result<double> CommandList::gpu_ms() const {
  if (!queries_) return errorf("vulkan: the device has no timestamps");
  if (pending_ || !recorded_) return errorf("vulkan: gpu_ms() needs a completed submission");
  const uint32_t last = profiling_ ? uint32_t(std::min<size_t>(labels_.size(), query_capacity_ - 1)) : 1;
  uint64_t t0 = 0, t1 = 0;
  const VkApi& vk = ctx_.vk();
  PENSIEVE_VK_CHECK(vk.vkGetQueryPoolResults(ctx_.device(), queries_, 0, 1, 8, &t0, 8, VK_QUERY_RESULT_64_BIT));
  PENSIEVE_VK_CHECK(vk.vkGetQueryPoolResults(ctx_.device(), queries_, last, 1, 8, &t1, 8, VK_QUERY_RESULT_64_BIT));
  return double(t1 - t0) * ctx_.info().timestamp_period_ns * 1e-6;
}

Result<std::vector<OpTime>> CommandList::profile() const {
  if (!profiling_) return errorf("vulkan: profiling is off (ContextOptions::profile, or no timestamps)");
  if (pending_ || !recorded_) return errorf("vulkan: profile() needs a completed submission");
  uint32_t n = uint32_t(std::min<size_t>(labels_.size() + 1, query_capacity_));
  std::vector<uint64_t> ts(n);
  PENSIEVE_VK_CHECK(ctx_.vk().vkGetQueryPoolResults(ctx_.device(), queries_, 0, n, n * sizeof(uint64_t), ts.data(),
                                                    sizeof(uint64_t), VK_QUERY_RESULT_64_BIT));
  std::vector<OpTime> out;
  double period = ctx_.info().timestamp_period_ns;
  for (uint32_t i = 1; i < n; ++i) out.push_back({labels_[i - 1], double(ts[i] - ts[i - 1]) * period * 1e-6});
  return out;
}

}  // namespace pensieve::vulkan
