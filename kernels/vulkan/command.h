// CommandList: record a sequence of dispatches once, submit it once (or many times).
//
// A decode step is recorded as one command buffer: every op appends a dispatch with its buffers
// and push constants; CommandList inserts a pipeline barrier only where a dispatch touches a
// byte range that an earlier dispatch (since the last barrier) wrote, or writes a range one read,
// so independent ops (q/k/v projections reading the same input, say) overlap on the GPU.
// Descriptor sets are allocated at record time and live until the next begin(), so a recorded
// list can be submitted again and again without touching the CPU-side Vulkan API: per-step
// inputs (token ids, positions, block tables) go in `upload` buffers the shaders read.
//
//   auto cl = CommandList::create(ctx);            // once
//   cl->begin();  ops::rmsnorm(*cl, ...);  ops::matmul(*cl, ...);  ...;  cl->end();
//   for each step: write inputs; cl->submit_and_wait();  read outputs
//
// With profiling on (ContextOptions::profile), a timestamp follows each dispatch and profile()
// returns per-dispatch GPU times of the last submission (dispatches that overlap share time);
// without it, gpu_ms() still gives the last submission's GPU time (two timestamps).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "kernels/vulkan/memory.h"
#include "kernels/vulkan/pipeline.h"

namespace pensieve::vulkan {

class Context;

struct OpTime {
  std::string label;
  double ms = 0;
};

class CommandList {
 public:
  static Result<std::unique_ptr<CommandList>> create(Context& ctx);
  // profile: timestamps around each dispatch (ContextOptions::profile is the default).
  static Result<std::unique_ptr<CommandList>> create(Context& ctx, bool profile);
  ~CommandList();
  CommandList(const CommandList&) = delete;
  CommandList& operator=(const CommandList&) = delete;

  Context& context() const { return ctx_; }

  // Starts (re)recording; drops earlier commands and descriptor sets (waits if still running).
  Status begin();
  // Binds `buffers` to bindings 0..n-1 of the pipeline's set, pushes `push`, dispatches groups.
  Status dispatch(const Pipeline& p, std::initializer_list<BufferSlice> buffers, const void* push,
                  uint32_t push_bytes, uint32_t gx, uint32_t gy = 1, uint32_t gz = 1);
  template <class Push>
  Status dispatch(const Pipeline& p, std::initializer_list<BufferSlice> buffers, const Push& push, uint32_t gx,
                  uint32_t gy = 1, uint32_t gz = 1) {
    static_assert(sizeof(Push) <= 128, "push constants must fit the 128 bytes every device offers");
    return dispatch(p, buffers, &push, uint32_t(sizeof(Push)), gx, gy, gz);
  }
  // A full compute/transfer barrier (the automatic ones cover dispatches; this is for callers
  // that write buffers by other means).
  void barrier();
  // The lighter barrier dispatch() inserts between dependent dispatches.
  void compute_barrier();
  Status copy(const BufferSlice& src, const BufferSlice& dst);
  Status fill(const BufferSlice& dst, uint32_t value);  // dst.size a multiple of 4
  Status end();

  Status submit();  // the recorded commands (again, after wait(), to replay them)
  Status wait();
  Status submit_and_wait();

  // Profile labels: dispatches recorded after set_scope("qkv") are labelled "qkv/<pipeline>";
  // "" restores plain pipeline labels.
  void set_scope(const std::string& scope) { scope_ = scope; }
  Result<std::vector<OpTime>> profile() const;
  // GPU time of the last submission, first command to last (timestamps; with or without profiling).
  Result<double> gpu_ms() const;
  int dispatches() const { return int(labels_.size()); }
  int barriers() const { return barriers_; }

 private:
  explicit CommandList(Context& ctx) : ctx_(ctx) {}
  Status init(bool profile);
  Result<VkDescriptorSet> allocate_set(VkDescriptorSetLayout layout);
  struct Range {
    VkBuffer buf;
    uint64_t begin, end;
  };
  static bool overlaps(const std::vector<Range>& v, const Range& r);

  Context& ctx_;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cb_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  std::vector<VkDescriptorPool> desc_pools_;
  size_t desc_pool_cur_ = 0;
  VkQueryPool queries_ = VK_NULL_HANDLE;
  uint32_t query_capacity_ = 0;
  bool profiling_ = false;
  int spin_us_ = 0;  // wait() polls the fence this long (microseconds) before it blocks
  bool recording_ = false, recorded_ = false, pending_ = false;
  std::vector<Range> reads_, writes_;  // since the last barrier
  std::vector<std::string> labels_;
  std::string scope_;
  int barriers_ = 0;
};

}  // namespace pensieve::vulkan
