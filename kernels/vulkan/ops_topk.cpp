// topk (shaders/topk.comp; k = 1: shaders/argmax.comp) and the benchmark probes (shaders/readbw.comp, gridsync.comp).
#include <algorithm>
#include <chrono>

#include "kernels/vulkan/ops_util.h"

namespace pensieve::vulkan::ops {
namespace {

struct TopkPush {
  uint32_t n, k, in_stride, out_stride;
};
// Bindings: 0 values in, 1 indices in (pairs stage), 2 values out (written), 3 indices out (written).
const KernelDesc kTopk{"topk", 4, sizeof(TopkPush), (1u << 2) | (1u << 3), false, false};

struct ArgmaxPush {
  uint32_t n;
};
// Bindings: 0 values in, 1 value out, 2 index out (both written).
const KernelDesc kArgmax{"argmax", 3, sizeof(ArgmaxPush), (1u << 1) | (1u << 2), false, false};

struct ProbePush {
  uint32_t n_vec4;
};
const KernelDesc kReadbw{"readbw", 2, sizeof(ProbePush), 1u << 1, false, false};

struct GridSyncPush {
  uint32_t rounds, max_polls;
};
// Bindings: 0 counter, 1 flags (both written).
const KernelDesc kGridSync{"gridsync", 2, sizeof(GridSyncPush), 3u, false, false};

// 256 invocations x 8 elements: a 32064-entry vocabulary row is 16 chunks.
constexpr uint32_t kWg = 256, kEpt = 8, kChunk = kWg * kEpt;
constexpr int kMaxK = 256;

}  // namespace

uint64_t topk_scratch_bytes(int64_t rows, int64_t n, int k) {
  uint64_t chunks = detail::ceil_div(uint64_t(std::max<int64_t>(n, 1)), kChunk);
  if (chunks <= 1) return 0;
  // Two ping-pong candidate sets, each a value plane and an index plane of rows x chunks x k.
  uint64_t plane = uint64_t(rows) * chunks * uint64_t(k) * 4;
  plane = (plane + 255) / 256 * 256;  // keeps every plane's offset aligned for binding
  return 4 * plane;
}

Status topk(CommandList& cl, const BufferSlice& values, const BufferSlice& indices, const BufferSlice& x,
            int64_t rows, int64_t n, int k, const BufferSlice& scratch) {
  Context& ctx = cl.context();
  if (rows <= 0) return Status::Ok();
  if (k < 1 || k > kMaxK || n < 1 || !detail::fits_u32(rows * n))
    return errorf("vulkan topk: k %d (1..%d) over rows of %lld", k, kMaxK, (long long)n);
  if (uint64_t(rows) > ctx.info().max_workgroup_count[1]) return errorf("vulkan topk: too many rows");
  PENSIEVE_TRY(detail::need("topk", "x", x, uint64_t(rows * n) * 4));
  PENSIEVE_TRY(detail::need("topk", "values", values, uint64_t(rows) * k * 4));
  PENSIEVE_TRY(detail::need("topk", "indices", indices, uint64_t(rows) * k * 4));
  if (k == 1 && n <= 65536) {  // one dispatch (shaders/argmax.comp; one workgroup per row: for longer
                                 // rows the two-stage search spreads the reads, H200: 200,064 in 29 us)
    uint32_t wg = 64;
    while (wg < 1024 && wg * 2 <= ctx.info().max_workgroup_invocations) wg *= 2;
    auto pipe = ctx.pipelines().get(kArgmax, {wg});
    if (!pipe.ok()) return std::move(pipe).take_error();
    return cl.dispatch(**pipe, {x, values, indices}, ArgmaxPush{uint32_t(n)}, 1, uint32_t(rows));
  }
  uint64_t need = topk_scratch_bytes(rows, n, k);
  if (need) PENSIEVE_TRY(detail::need("topk", "scratch", scratch, need));
  uint64_t plane = need / 4;
  BufferSlice cand_v[2] = {scratch.sub(0, plane), scratch.sub(2 * plane, plane)};
  BufferSlice cand_i[2] = {scratch.sub(plane, plane), scratch.sub(3 * plane, plane)};

  auto first = ctx.pipelines().get(kTopk, {kWg, kEpt, 0});
  if (!first.ok()) return std::move(first).take_error();
  auto pairs = ctx.pipelines().get(kTopk, {kWg, kEpt, 1});
  if (!pairs.ok()) return std::move(pairs).take_error();

  // Stage 1 over the values, then stages over candidates until one chunk per row remains.
  uint64_t len = uint64_t(n), chunks = detail::ceil_div(len, kChunk);
  uint32_t in_stride = uint32_t(n);
  int cur = -1;  // candidates in cand_*[cur]; -1: the input values
  for (;;) {
    bool last = chunks == 1;
    int dst = cur == 0 ? 1 : 0;
    uint32_t out_stride = last ? uint32_t(k) : uint32_t(chunks * uint64_t(k));
    TopkPush pc{uint32_t(len), uint32_t(k), in_stride, out_stride};
    const BufferSlice& ov = last ? values : cand_v[dst];
    const BufferSlice& oi = last ? indices : cand_i[dst];
    if (cur < 0) PENSIEVE_TRY(cl.dispatch(**first, {x, x, ov, oi}, pc, uint32_t(chunks), uint32_t(rows)));
    else PENSIEVE_TRY(cl.dispatch(**pairs, {cand_v[cur], cand_i[cur], ov, oi}, pc, uint32_t(chunks), uint32_t(rows)));
    if (last) return Status::Ok();
    cur = dst;
    len = chunks * uint64_t(k);
    in_stride = uint32_t(len);
    chunks = detail::ceil_div(len, kChunk);
  }
}

Status read_probe(CommandList& cl, const BufferSlice& src, const BufferSlice& sink) {
  if (src.size / 16 > UINT32_MAX) return errorf("vulkan read_probe: source too large");
  PENSIEVE_TRY(detail::need("read_probe", "sink", sink, 1024 * 4));
  auto pipe = cl.context().pipelines().get(kReadbw, {256});
  if (!pipe.ok()) return std::move(pipe).take_error();
  return cl.dispatch(**pipe, {src, sink}, ProbePush{uint32_t(src.size / 16)}, 1024);
}

Status grid_sync_probe(CommandList& cl, const BufferSlice& counter, const BufferSlice& flags, uint32_t groups,
                       uint32_t rounds) {
  PENSIEVE_TRY(detail::need("grid_sync_probe", "flags", flags, (uint64_t(groups) + 2) * 4));
  PENSIEVE_TRY(detail::need("grid_sync_probe", "counter", counter, 4));
  auto pipe = cl.context().pipelines().get(kGridSync, {256});
  if (!pipe.ok()) return std::move(pipe).take_error();
  return cl.dispatch(**pipe, {counter, flags}, GridSyncPush{rounds, 1u << 20}, groups);
}

Result<double> read_bandwidth_gbs(Context& ctx, uint64_t bytes, int passes) {
  bytes = std::min({bytes, ctx.info().max_storage_buffer_range, ctx.info().device_local_bytes / 4}) / 16 * 16;
  if (bytes < (1u << 20) || passes <= 0) return errorf("vulkan read_bandwidth: no room for a probe");
  auto src = Buffer::create(ctx, bytes, MemoryKind::device, "bandwidth probe");
  if (!src.ok()) return std::move(src).take_error();
  auto sink = Buffer::create(ctx, 4096, MemoryKind::device, "bandwidth probe sink");
  if (!sink.ok()) return std::move(sink).take_error();
  auto cl = CommandList::create(ctx);
  if (!cl.ok()) return std::move(cl).take_error();
  PENSIEVE_TRY((*cl)->begin());
  PENSIEVE_TRY((*cl)->fill(src->whole(), 0x3c013c02u));  // never time reads of zeros
  PENSIEVE_TRY((*cl)->end());
  PENSIEVE_TRY((*cl)->submit_and_wait());
  PENSIEVE_TRY((*cl)->begin());
  for (int i = 0; i < passes; ++i) PENSIEVE_TRY(read_probe(**cl, src->whole(), sink->whole()));
  PENSIEVE_TRY((*cl)->end());
  double best = 0;
  for (int rep = 0; rep < 4; ++rep) {  // the first submission warms the clocks up, not counted
    const auto t0 = std::chrono::steady_clock::now();
    PENSIEVE_TRY((*cl)->submit_and_wait());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0) best = std::max(best, double(bytes) * passes / s / 1e9);
  }
  return best;
}

}  // namespace pensieve::vulkan::ops
