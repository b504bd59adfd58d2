#version 450
// One decoder layer of a one-token decode step as ONE dispatch (a persistent kernel): one workgroup
// per multiprocessor, all resident at once, synchronising among themselves between the layer's
// stages instead of the GPU draining between dispatches. On the H200 a grid-wide sync costs 1.4 us
// and a barrier between dependent dispatches 2.9 us (bench/RESULTS.md phase 15); a layer has five
// dependent stages:
//
//   1 qkv  : Q = W_qkv (rmsnorm(x) * attn_norm)                              (q | k | v, no RoPE)
//   2 attn : per kv head: RoPE on its q heads and k; k and v into the token's cache slot;
//            A = softmax(scale * q.K) V over the visible keys
//   3 o    : x += W_o A
//   4 gu   : U = silu(gate) * up,  [gate; up] = W_gu (rmsnorm(x) * mlp_norm)
//   5 down : x += W_down U
//
// with a grid-wide sync after stages 1-4 (the dispatch boundary follows 5). A projection requests
// its weights after staging its input (requesting them before the sync measured slower: the
// input's loads then queue behind them). Attention reads its block table before the sync.
//
// The host runs this only where every workgroup can be resident: NVIDIA (multiprocessor count
// known), one workgroup per multiprocessor; and for one sequence, a context of at most MAXK keys,
// q4 weights, an f16 cache, head_dim <= 96 (ops_model.cpp says why). Elsewhere the
// dispatch-per-op path runs. A sync gives up after `max_polls` polls (Sync[0] = 1, and the rest
// of the layer's results are garbage): the host then reruns the step on that path, so a device
// that does not run the workgroups together costs time, never a hang.
//
// Arithmetic: the fast precision of the dispatch-per-op path. The projections are mvq4.comp's
// IDOT variant (x' quantized per 32-column unit to int8 with d = max|x'| / 127, a unit's row sum
// s * d * dot(xq, q) + b * d * sum xq, the norm's 1/rms applied to the total) and attention is
// attn_dec4.comp's single split (f32 scores and softmax over the f16 cache); only the order of
// some sums differs (sum x^2, the lanes of a row, the value rows), so results agree to rounding.
//
// Mapping. Projections: a row is one subgroup's (32 lanes; lane l takes units l, l + 32, ... of
// the row, UPL of them); subgroup g of the grid's TS takes items g, g + TS, ..., R at a time with
// all their loads issued at once (an item is a row, or for gate_up the pair gate i, up F + i, so
// that silu(gate) * up is formed in one place). The input x' is staged per workgroup in shared
// memory as int8 (every workgroup stages it: H floats from L2). Attention: workgroup w takes kv
// heads w, w + grid, ...: invocation t scores key t for the QG query heads of the kv head (the
// new key from shared memory, as the cache stores it), the softmax is one round (subgroup maxima
// and sums, combined by every invocation), subgroup s accumulates the values of keys s, s + NSG,
// ... (VC rows requested at once), and the NSG partial rows are summed in order through shared
// memory. Registers are the constraint: the workgroup gets 128 per invocation, and holding value
// rows across the softmax, or key rows across the sync, spilled and cost 15-35% (RESULTS phase 16).
//
// Sync: every invocation publishes its writes (memoryBarrierBuffer), then the first counts the
// workgroup in with an atomic and polls the counter with plain (volatile) loads, which do not
// queue behind other workgroups' arrivals as atomic polls do.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_EXT_spirv_intrinsics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_shuffle : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 1024;  // a multiple of 32; subgroups of 32 (host-checked)
layout(constant_id = 1) const uint HD = 96;    // head_dim: a multiple of 8, <= 96 (host-checked; the code takes 128)
layout(constant_id = 2) const uint STYPE = 1;  // scale / bias plane type (quant.glsl)
layout(constant_id = 3) const uint GROUP = 64; // quantization group: 32, 64 or 128
layout(constant_id = 4) const uint QG = 1;     // query heads per kv head, <= 4
layout(constant_id = 5) const uint UH = 3;     // units per lane of rows of hidden or q_dim columns, <= 8
layout(constant_id = 6) const uint UF = 8;     // ... of ffn columns, <= 8
layout(constant_id = 7) const uint RQ = 3;     // items per subgroup and round: qkv, o, gate_up pairs, down
layout(constant_id = 8) const uint RO = 1;     //   (rows per round R * (1 or 2) <= 8)
layout(constant_id = 9) const uint RG = 2;
layout(constant_id = 10) const uint RD = 1;
layout(constant_id = 11) const uint XU = 256;  // staged units: max(hidden, q_dim, ffn) / 32
const uint NSG = WG / 32u;
const uint MAXR = 8u, MAXU = 8u;
const uint MAXK = 512u;  // keys per query: the host runs this kernel for contexts up to here

#include "quant.glsl"
#include "kv_store.glsl"  // half_rne

layout(binding = 0) readonly buffer W0 { uvec4 Wq[]; };
layout(binding = 1) readonly buffer S0 { uint Sq[]; };
layout(binding = 2) readonly buffer B0 { uint Bq[]; };
layout(binding = 3) readonly buffer W1 { uvec4 Wo[]; };
layout(binding = 4) readonly buffer S1 { uint So[]; };
layout(binding = 5) readonly buffer B1 { uint Bo[]; };
layout(binding = 6) readonly buffer W2 { uvec4 Wg[]; };
layout(binding = 7) readonly buffer S2 { uint Sg[]; };
layout(binding = 8) readonly buffer B2 { uint Bg[]; };
layout(binding = 9) readonly buffer W3 { uvec4 Wd[]; };
layout(binding = 10) readonly buffer S3 { uint Sd[]; };
layout(binding = 11) readonly buffer B3 { uint Bd[]; };
layout(binding = 12) readonly buffer N0 { vec4 Gattn[]; };
layout(binding = 13) readonly buffer N1 { vec4 Gmlp[]; };
// Written by some workgroups and read by others within the dispatch: coherent (no stale L1).
layout(binding = 14) coherent buffer Xb { vec4 X4[]; };   // residual stream [hidden]
layout(binding = 15) coherent buffer Qb { float Q[]; };   // qkv projection [n_qkv]
layout(binding = 16) coherent buffer Ab { vec4 A4[]; };   // attention output [q_dim]
layout(binding = 17) coherent buffer Ub { vec4 U4[]; };   // silu(gate) * up [ffn]
layout(binding = 18) coherent buffer Kb { uvec4 K4[]; };  // this layer's f16 cache
layout(binding = 19) coherent buffer Vb { uvec4 V4[]; };
layout(binding = 20) readonly buffer Cb { float Cs[]; };  // cos [half_rot]
layout(binding = 21) readonly buffer Snb { float Sn[]; }; // sin [half_rot]
layout(binding = 22) readonly buffer Lb { uint Slots[]; };// cache element offset of the token
layout(binding = 23) readonly buffer Mb { ivec4 Meta[]; };// attention metadata (SeqMeta)
layout(binding = 24) readonly buffer Tb { int Tables[]; };
layout(binding = 25) coherent volatile buffer Yb { uint Sync[]; }; // [0] gave up, [1 + layer] arrivals (0 at start)

layout(push_constant) uniform Push {
  uint hidden, q_dim, n_qkv, ffn;
  uint n_heads, n_kv_heads, half_rot;
  uint block_size, block_stride, head_stride, window;  // cache layout (elements), sliding window
  float eps, scale;
  uint layer, max_polls;
} pc;

// OpSUDot (SPV_KHR_integer_dot_product), packed 4 x 8-bit: signed a . unsigned b.
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4452)
int sudot4(uint a, uint b, spirv_literal int fmt);

const float NEG = -1.0e30;  // masked score (attn.glsl)

shared uvec4 xlo[XU], xhi[XU];  // staged int8 x' per unit (mvq4.comp IDOT's layout)
shared vec2 xds[XU];            // the unit's d and d * sum xq
shared vec4 redsh[NSG], redsh2[NSG];  // workgroup reductions
shared vec4 qs4[QG * HD / 4u];  // RoPE'd q * scale of the kv head's query heads
shared float kvn[2u * HD];      // RoPE'd k and v of the new token
shared float ps[4u * MAXK];     // probabilities, [g * MAXK + key]
shared float part[NSG * HD];    // value partials per subgroup

uint tid, sg, lane;

// ---- Workgroup reductions (uniform control flow) ------------------------------------------------
vec4 wg_reduce(vec4 v, bool is_max) {
  v = is_max ? subgroupMax(v) : subgroupAdd(v);
  if (subgroupElect()) redsh[sg] = v;
  barrier();
  vec4 t = redsh[0];
  for (uint k = 1u; k < NSG; ++k) t = is_max ? max(t, redsh[k]) : t + redsh[k];
  barrier();
  return t;
}

// ---- Grid-wide sync: the k-th of this dispatch ---------------------------------------------------
void grid_sync(uint k) {
  memoryBarrierBuffer();  // this invocation's writes, before the workgroup is counted in
  barrier();
  if (tid == 0u) {
    atomicAdd(Sync[1u + pc.layer], 1u);
    const uint target = k * gl_NumWorkGroups.x;
    uint polls = 0u;
    while (Sync[1u + pc.layer] < target) {  // plain (volatile) loads: polls do not queue behind arrivals
      if (++polls > pc.max_polls || Sync[0] != 0u) {  // this one or another gave up
        Sync[0] = 1u;
        break;
      }
    }
    memoryBarrierBuffer();
  }
  barrier();
}

// ---- Projections (m: 0 qkv, 1 o, 2 gate_up, 3 down; a constant at every call) ----------------------
uvec4 w_unit(uint m, uint i) {
  if (m == 0u) return Wq[i];
  if (m == 1u) return Wo[i];
  if (m == 2u) return Wg[i];
  return Wd[i];
}
uint s_word(uint m, uint i) {
  if (m == 0u) return Sq[i];
  if (m == 1u) return So[i];
  if (m == 2u) return Sg[i];
  return Sd[i];
}
uint b_word(uint m, uint i) {
  if (m == 0u) return Bq[i];
  if (m == 1u) return Bo[i];
  if (m == 2u) return Bg[i];
  return Bd[i];
}
uint items_of(uint m) { return m == 0u ? pc.n_qkv : m == 2u ? pc.ffn : pc.hidden; }
uint cols_of(uint m) { return m == 0u || m == 2u ? pc.hidden : m == 1u ? pc.q_dim : pc.ffn; }
uint r_of(uint m) { return m == 0u ? RQ : m == 1u ? RO : m == 2u ? RG : RD; }
uint rows_per_item(uint m) { return m == 2u ? 2u : 1u; }
uint upl_of(uint m) { return m == 3u ? UF : UH; }
uint first_item() { return gl_WorkGroupID.x * NSG + sg; }
uint grid_subgroups() { return gl_NumWorkGroups.x * NSG; }

// One round's weights (row r of the round at [r * MAXU + k]) and their scale | bias << 16 (f16 or
// bf16 planes, host-checked).
uvec4 wv[MAXR * MAXU];
uint sbv[MAXR * MAXU];

// Requests the weights of the round of items i0, i0 + TS, ... (R of them).
void fetch(uint m, uint i0) {
  const uint n = items_of(m), units = cols_of(m) / 32u, gpr = cols_of(m) / GROUP;
  const uint NR = r_of(m) * rows_per_item(m), RI = rows_per_item(m);
  if (i0 >= n) return;  // (subgroup-uniform) no items
  [[unroll]] for (uint r = 0u; r < MAXR; ++r) {
    if (r >= NR) break;
    const uint item = min(i0 + (r / RI) * grid_subgroups(), n - 1u);  // past the end: computed, not written
    const uint row = item + (r % RI) * pc.ffn;                         // gate_up: gate i, up F + i
    [[unroll]] for (uint k = 0u; k < MAXU; ++k) {
      if (k >= upl_of(m)) break;
      const uint u = min(lane + 32u * k, units - 1u);
      wv[r * MAXU + k] = w_unit(m, row * units + u);
      const uint gi = row * gpr + (u * 32u) / GROUP;
      const uint sh = (gi & 1u) * 16u;
      sbv[r * MAXU + k] = ((s_word(m, gi >> 1) >> sh) & 0xffffu) | ((b_word(m, gi >> 1) >> sh) << 16);
    }
  }
}

// Stages projection m's input x' as int8 (m 0, 2: x * norm weight; 1: A; 3: U); returns the
// norm's 1/rms (1 without a norm). Invocation v stages columns 8v .. 8v + 7, word J = v & 3 of
// unit v >> 2, as mvq4.comp does (the unit's max and sum over 4 neighbouring lanes).
float stage(uint m) {
  const bool norm = m == 0u || m == 2u;
  const uint cols = cols_of(m), nw = cols / 8u;
  float ss = 0.0;
  for (uint v0 = 0u; v0 < nw; v0 += WG) {
    const uint v = v0 + tid, c4 = v * 2u;  // vec4 index of column 8v
    vec4 x0 = vec4(0.0), x1 = vec4(0.0);
    if (v < nw) {
      if (m == 1u) {
        x0 = A4[c4];
        x1 = A4[c4 + 1u];
      } else if (m == 3u) {
        x0 = U4[c4];
        x1 = U4[c4 + 1u];
      } else {
        x0 = X4[c4];
        x1 = X4[c4 + 1u];
        ss += dot(x0, x0) + dot(x1, x1);
        if (m == 0u) {
          x0 *= Gattn[c4];
          x1 *= Gattn[c4 + 1u];
        } else {
          x0 *= Gmlp[c4];
          x1 *= Gmlp[c4 + 1u];
        }
      }
    }
    float mx = max(max(max(abs(x0.x), abs(x0.y)), max(abs(x0.z), abs(x0.w))),
                   max(max(abs(x1.x), abs(x1.y)), max(abs(x1.z), abs(x1.w))));
    mx = max(mx, subgroupShuffleXor(mx, 1u));
    mx = max(mx, subgroupShuffleXor(mx, 2u));
    const float id = mx > 0.0 ? 127.0 / mx : 0.0;
    const ivec4 q0 = clamp(ivec4(round(x0 * id)), ivec4(-127), ivec4(127));
    const ivec4 q1 = clamp(ivec4(round(x1 * id)), ivec4(-127), ivec4(127));
    int sq = ((q0.x + q0.y) + (q0.z + q0.w)) + ((q1.x + q1.y) + (q1.z + q1.w));
    sq += subgroupShuffleXor(sq, 1u);
    sq += subgroupShuffleXor(sq, 2u);
    if (v < nw) {
      const uint xe = (uint(q0.x) & 0xffu) | ((uint(q0.z) & 0xffu) << 8) | ((uint(q1.x) & 0xffu) << 16) | (uint(q1.z) << 24);
      const uint xo = (uint(q0.y) & 0xffu) | ((uint(q0.w) & 0xffu) << 8) | ((uint(q1.y) & 0xffu) << 16) | (uint(q1.w) << 24);
      const uint i = v >> 2, J = v & 3u;
      if (J < 2u) {
        xlo[i][2u * J] = xe;
        xlo[i][2u * J + 1u] = xo;
      } else {
        xhi[i][2u * J - 4u] = xe;
        xhi[i][2u * J - 3u] = xo;
      }
      if (J == 0u) xds[i] = vec2(mx / 127.0, mx / 127.0 * float(sq));
    }
  }
  if (!norm) {
    barrier();
    return 1.0;
  }
  return 1.0 / sqrt(wg_reduce(vec4(ss, 0.0, 0.0, 0.0), false).x / float(cols) + pc.eps);  // its barrier publishes x'
}

// The round of items i0, i0 + TS, ... from the fetched weights and the staged x'; writes outputs.
void compute(uint m, uint i0, float inv) {
  const uint n = items_of(m), units = cols_of(m) / 32u;
  const uint R = r_of(m), RI = rows_per_item(m), NR = R * RI;
  float acc[MAXR];
  [[unroll]] for (uint r = 0u; r < MAXR; ++r) acc[r] = 0.0;
  [[unroll]] for (uint k = 0u; k < MAXU; ++k) {
    if (k >= upl_of(m)) break;
    const uint u = lane + 32u * k;
    if (u < units) {
      const uvec4 q0 = xlo[u], q1 = xhi[u];
      const vec2 ds = xds[u];
      const uint M = 0x0F0F0F0Fu;
      [[unroll]] for (uint r = 0u; r < MAXR; ++r) {
        if (r >= NR) break;
        const uvec4 w = wv[r * MAXU + k];
        int si = sudot4(q0.x, w.x & M, 0) + sudot4(q0.y, (w.x >> 4) & M, 0);
        si += sudot4(q0.z, w.y & M, 0) + sudot4(q0.w, (w.y >> 4) & M, 0);
        si += sudot4(q1.x, w.z & M, 0) + sudot4(q1.y, (w.z >> 4) & M, 0);
        si += sudot4(q1.z, w.w & M, 0) + sudot4(q1.w, (w.w >> 4) & M, 0);
        const uint sb = sbv[r * MAXU + k];
        const vec2 ab = STYPE == ST_F16 ? unpackHalf2x16(sb) : vec2(uintBitsToFloat(sb << 16), uintBitsToFloat(sb & 0xffff0000u));
        acc[r] += ab.x * (ds.x * float(si)) + ab.y * ds.y;
      }
    }
  }
  [[unroll]] for (uint r = 0u; r < MAXR; ++r) {
    if (r >= NR) break;
    acc[r] = subgroupAdd(acc[r]);
  }
  [[unroll]] for (uint it = 0u; it < MAXR; ++it) {
    if (it >= R) break;
    const uint item = i0 + it * grid_subgroups();
    if (lane != it || item >= n) continue;
    if (m == 0u) {
      Q[item] = acc[it] * inv;
    } else if (m == 2u) {
      const float g = acc[2u * it] * inv, up = acc[2u * it + 1u] * inv;
      U4[item >> 2][item & 3u] = g / (1.0 + exp(-g)) * up;  // silu(gate) * up, as silu_mul.comp
    } else {
      X4[item >> 2][item & 3u] += acc[it];
    }
  }
}

// Projection m for the items of this subgroup; the first round's weights are already fetched.
void project(uint m, float inv) {
  const uint step = r_of(m) * grid_subgroups();
  for (uint i0 = first_item(); i0 < items_of(m); i0 += step) {
    if (i0 != first_item()) fetch(m, i0);
    compute(m, i0, inv);
  }
}

// ---- Attention ------------------------------------------------------------------------------------
// Keys lo .. pos of the token's query; key t of the workgroup is position lo + t, the last one
// (t = n - 1) the new token, whose k and v this stage computes (kvn) and stores.
const uint VC = 8u;  // value rows per subgroup requested at once
uint a_pos, a_toff, a_lo, a_n;
shared uint offs[MAXK];  // uvec4 index of key t's K / V row (t < n - 1)

// Before the sync that follows qkv (the block tables do not depend on it): meta and the row of
// every old key of the workgroup's first kv head.
void attn_prefetch() {
  const ivec4 meta = Meta[0];
  a_pos = uint(meta.z);
  a_toff = uint(meta.w);
  a_lo = (pc.window > 0u && a_pos + 1u > pc.window) ? a_pos + 1u - pc.window : 0u;
  a_n = a_pos + 1u - a_lo;  // <= MAXK (host)
  const uint kh = gl_WorkGroupID.x;
  if (kh < pc.n_kv_heads) {
    for (uint t = tid; t + 1u < a_n; t += WG) {
      const uint j = a_lo + t;
      offs[t] = (uint(Tables[a_toff + j / pc.block_size]) * pc.block_stride + kh * pc.head_stride +
                 (j % pc.block_size) * HD) >> 3;
    }
  }
}

#include "rope_dim.glsl"  // (the one token's cos / sin at Cs[0], Sn[0])

float f16_round(float x) { return unpackHalf2x16(half_rne(x)).x; }

// Value words w of the row at uvec4 index off (0 past the row).
uint v_word(uint off, uint w) { return w < HD / 2u ? V4[off + (w >> 2)][w & 3u] : 0u; }

// Value words lane and lane + 32 of the old keys c0 + sg + k NSG, k < VC, of this subgroup.
void load_values(out uvec2 vw[VC], uint c0) {
  [[unroll]] for (uint k = 0u; k < VC; ++k) {
    const uint t = c0 + sg + k * NSG;
    vw[k] = t + 1u < a_n ? uvec2(v_word(offs[t], lane), v_word(offs[t], lane + 32u)) : uvec2(0u);
  }
}

void attend() {
  const uint n = a_n, hw = HD / 2u;
  for (uint kh = gl_WorkGroupID.x; kh < pc.n_kv_heads; kh += gl_NumWorkGroups.x) {
    if (kh != gl_WorkGroupID.x) {  // a later kv head: its rows now
      barrier();
      for (uint t = tid; t + 1u < n; t += WG) {
        const uint j = a_lo + t;
        offs[t] = (uint(Tables[a_toff + j / pc.block_size]) * pc.block_stride + kh * pc.head_stride +
                   (j % pc.block_size) * HD) >> 3;
      }
      barrier();
    }
    // Invocation t requests its old key's row first; meanwhile RoPE on the query heads (into qs4,
    // times scale) and k, and the new k and v as the cache holds them (f16), into kvn.
    uvec4 kw[16];
    if (tid + 1u < n) {
      [[unroll]] for (uint c = 0u; c < 16u; ++c)
        if (c < HD / 8u) kw[c] = K4[offs[tid] + c];
    }
    const uint kb = (pc.n_heads + kh) * HD, vb = (pc.n_heads + pc.n_kv_heads + kh) * HD;
    for (uint i = tid; i < (QG + 2u) * HD; i += WG) {
      const uint g = i / HD, d = i % HD;
      if (g < QG) qs4[i >> 2][i & 3u] = rope_dim((kh * QG + g) * HD, 0u, d) * pc.scale;
      else if (g == QG) kvn[d] = f16_round(rope_dim(kb, 0u, d));
      else kvn[HD + d] = f16_round(Q[vb + d]);
    }
    barrier();
    const uint e0 = Slots[0] + kh * pc.head_stride;  // even (host-checked strides)
    for (uint i = tid; i < HD; i += WG) {             // i < HD / 2: a K word, else a V word
      const uint isv = i / hw, w = i % hw, e = e0 + 2u * w;
      const uint word = half_rne(kvn[isv * HD + 2u * w]) | (half_rne(kvn[isv * HD + 2u * w + 1u]) << 16);
      if (isv == 0u) K4[e >> 3][(e >> 1) & 3u] = word;
      else V4[e >> 3][(e >> 1) & 3u] = word;
    }

    // Scores: invocation t, key t (the new key from kvn).
    vec4 s = vec4(NEG);
    if (tid < n) {
      s = vec4(0.0);
      [[unroll]] for (uint c = 0u; c < 16u; ++c) {
        if (c >= HD / 8u) break;
        vec4 a, b;
        if (tid + 1u < n) {
          a = vec4(unpackHalf2x16(kw[c].x), unpackHalf2x16(kw[c].y));
          b = vec4(unpackHalf2x16(kw[c].z), unpackHalf2x16(kw[c].w));
        } else {
          a = vec4(kvn[8u * c], kvn[8u * c + 1u], kvn[8u * c + 2u], kvn[8u * c + 3u]);
          b = vec4(kvn[8u * c + 4u], kvn[8u * c + 5u], kvn[8u * c + 6u], kvn[8u * c + 7u]);
        }
        [[unroll]] for (uint g = 0u; g < 4u; ++g) {
          if (g >= QG) break;
          s[g] += dot(a, qs4[g * HD / 4u + 2u * c]) + dot(b, qs4[g * HD / 4u + 2u * c + 1u]);
        }
      }
    }
    // Softmax in one round: each subgroup's max m and sum of exp(s - m), then every invocation
    // combines the NSG pairs (in order) and rescales its own p.
    const vec4 ms = subgroupMax(s);  // finite in subgroup 0 (the new key is visible)
    vec4 p = tid < n ? exp(s - ms) : vec4(0.0);
    const vec4 ls = subgroupAdd(p);
    if (subgroupElect()) {
      redsh[sg] = ms;
      redsh2[sg] = ls;
    }
    barrier();
    vec4 mx = redsh[0];
    for (uint k = 1u; k < NSG; ++k) mx = max(mx, redsh[k]);
    vec4 l = vec4(0.0);
    for (uint k = 0u; k < NSG; ++k) l += redsh2[k] * exp(redsh[k] - mx);  // subgroups of masked keys add 0
    if (tid < n) {
      p *= exp(ms - mx);
      [[unroll]] for (uint g = 0u; g < 4u; ++g)
        if (g < QG) ps[g * MAXK + tid] = p[g];
    }
    barrier();  // publishes ps (and frees redsh)

    // Values: subgroup sg takes keys sg, sg + NSG, ..., VC rows requested at once; lane takes
    // words lane, lane + 32 of a row.
    vec4 acc[4];  // [g]: dims 2 lane, 2 lane + 1 | 2 (lane + 32), + 1
    [[unroll]] for (uint g = 0u; g < 4u; ++g) acc[g] = vec4(0.0);
    for (uint c0 = 0u; c0 < n; c0 += VC * NSG) {
      uvec2 vw[VC];
      load_values(vw, c0);
      [[unroll]] for (uint k = 0u; k < VC; ++k) {
        const uint t = c0 + sg + k * NSG;
        if (t >= n) break;
        vec4 v;
        if (t + 1u < n) {
          v = vec4(unpackHalf2x16(vw[k].x), unpackHalf2x16(vw[k].y));
        } else {
          v = vec4(lane < hw ? vec2(kvn[HD + 2u * lane], kvn[HD + 2u * lane + 1u]) : vec2(0.0),
                   lane + 32u < hw ? vec2(kvn[HD + 2u * lane + 64u], kvn[HD + 2u * lane + 65u]) : vec2(0.0));
        }
        [[unroll]] for (uint g = 0u; g < 4u; ++g) {
          if (g >= QG) break;
          acc[g] += ps[g * MAXK + t] * v;
        }
      }
    }
    [[unroll]] for (uint g = 0u; g < 4u; ++g) {
      if (g >= QG) break;
      if (lane < hw) {
        part[sg * HD + 2u * lane] = acc[g].x;
        part[sg * HD + 2u * lane + 1u] = acc[g].y;
      }
      if (lane + 32u < hw) {
        part[sg * HD + 2u * lane + 64u] = acc[g].z;
        part[sg * HD + 2u * lane + 65u] = acc[g].w;
      }
      barrier();
      for (uint d = tid; d < HD; d += WG) {
        float sum = 0.0;
        for (uint k = 0u; k < NSG; ++k) sum += part[k * HD + d];
        const uint oi = (kh * QG + g) * HD + d;
        A4[oi >> 2][oi & 3u] = sum / l[g];
      }
      barrier();
    }
  }
}

void main() {
  tid = gl_LocalInvocationID.x;
  sg = gl_SubgroupID;
  lane = gl_SubgroupInvocationID;

  float inv = stage(0u);
  fetch(0u, first_item());
  project(0u, inv);
  attn_prefetch();
  grid_sync(1u);
  attend();
  grid_sync(2u);
  stage(1u);
  fetch(1u, first_item());
  project(1u, 1.0);
  grid_sync(3u);
  inv = stage(2u);
  fetch(2u, first_item());
  project(2u, inv);
  grid_sync(4u);
  // Every workgroup counts itself out once past the last sync; the last one out resets the
  // counter for the next step (no workgroup reads it after that).
  if (tid == 0u && atomicAdd(Sync[1u + pc.layer], 1u) == 5u * gl_NumWorkGroups.x - 1u) Sync[1u + pc.layer] = 0u;
  stage(3u);
  fetch(3u, first_item());
  project(3u, 1.0);
}
