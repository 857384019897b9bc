// The kernels AT and FT share (kernels/at.cu, kernels/ft.cu; the math is in at.cu's header comment).
//
// attention_map_kernel<DIFF>: v[n, o] = mean_C (P f)[n, c, o]^p for both maps, P the adaptive average pooling
//   of the larger map to the common size (identity for the smaller one). One thread per map position o
//   and channel group: a block is 32 consecutive positions (flattened over n and o, so small maps still
//   fill the block) x BLOCK/32 channel groups, one warp per group, so a warp reads 32 consecutive values
//   of a plane; the groups' partial sums are added in group order in shared memory. Student blocks
//   first, then teacher blocks. Then each block counts its positions in the tickets of the samples they
//   belong to; the block that completes a sample's two maps finishes the sample (finish_sample): its two
//   norms, dot = sum_o a_s[o] phi'(d[o]) and its loss term (block reductions over the 2 x h*w values), and
//   with a gradient G[o] = dL/dv_s[o] p / C_s (into the workspace). The block that finishes the last sample
//   adds the samples' terms in sample order and writes the loss (no float atomics).
// attention_grad_kernel<POOLED> (with a gradient only): one block per (sample, chunk of student channels),
//   G of the sample staged in shared memory tile by tile (h*w reads per block):
//   - student not pooled: grad = G[o] f^(p-1), elementwise over the chunk's (channel, position) range;
//   - student pooled: per channel, rows of T[o] = G[o] u[o]^(p-1) / |window o| (u = the pooled value,
//     recomputed from the window) are staged in shared memory, then every input pixel adds T over the
//     windows that contain it (at most 2 per dimension, since windows shrink the map); rows are staged in
//     tiles with one row of overlap, so any height fits and the width is limited to kAttentionMaxPooledWidth.
#pragma once

#include "../at.h"
#include "device.cuh"

namespace kdf::kernels::attention {
// Internal linkage: at.cu and ft.cu each get their own kernels (no template kernel instantiated, and
// registered with the CUDA runtime, from two translation units).
namespace {

// F.normalize's eps: a = v / max(||v||, eps).
constexpr float kNormEps = 1e-12f;

// The term comparing the normalised maps: AT's (a_s - a_t)^2, or FT's |d| (p2 = 1) / d^p2 (no abs).
enum class Diff { Square, Power };

// x^e as torch.pow: exact for e = 1 and 2 (the defaults); powf otherwise (NaN for x < 0 and a
// non-integer e, as torch; x^0 = 1).
__device__ __forceinline__ float power(float x, float e)
{
    if (e == 2.0f) return x * x;
    if (e == 1.0f) return x;
    return powf(x, e);
}

template <Diff DIFF>
__device__ __forceinline__ float diff_value(float d, float p2)
{
    if constexpr (DIFF == Diff::Square) {
        return d * d;
    } else {
        return p2 == 1.0f ? fabsf(d) : power(d, p2);
    }
}

// d(term)/dd: 2d; sign(d) with sign(0) = 0 (autograd's abs); p2 d^(p2-1) (torch.pow's backward).
template <Diff DIFF>
__device__ __forceinline__ float diff_grad(float d, float p2)
{
    if constexpr (DIFF == Diff::Square) {
        return 2.0f * d;
    } else {
        if (p2 == 1.0f) return d > 0.0f ? 1.0f : d < 0.0f ? -1.0f : 0.0f;
        return p2 * power(d, p2 - 1.0f);
    }
}

struct Pair {
    float a, b;
};
struct PairSum {
    __device__ __forceinline__ Pair operator()(const Pair& x, const Pair& y) const { return {x.a + y.a, x.b + y.b}; }
};

// Calls f(r, c) for k = first, first + step, ... < rows * cols with (r, c) = (k / cols, k % cols),
// without a division per element.
template <typename I, typename F>
__device__ __forceinline__ void for_each_strided(I rows, I cols, I first, I step, F&& f)
{
    I r = first / cols, c = first % cols;
    const I dr = step / cols, dc = step % cols;
    while (r < rows) {
        f(r, c);
        r += dr;
        c += dc;
        if (c >= cols) {
            c -= cols;
            ++r;
        }
    }
}

// One sample's normalisation, from its norms and dot: G(v_s, v_t) = dL/dv_s[o] p / C_s at a position o.
struct SampleNorm {
    float inv_s, inv_t;  // 1 / max(||v||, eps)
    float dot;           // sum_o a_s[o] phi'(d[o])
    bool through_norm;   // ||v_s|| >= eps: the gradient also flows through the norm (torch's clamp_min)
    float scale;         // g c w p / (N h w C_s): the loss mean, the channel mean and the power's p

    // a_s[o], rounded: the same value wherever it is used.
    __device__ __forceinline__ float as(float vs) const { return __fmul_rn(vs, inv_s); }
    // d[o] = a_s[o] - a_t[o], both normalised values rounded before the difference: equal maps give exactly
    // d = 0 (a contracted vs * inv_s - vt * inv_t would leave the first product's rounding error).
    __device__ __forceinline__ float d(float vs, float vt) const { return as(vs) - __fmul_rn(vt, inv_t); }

    template <Diff DIFF>
    __device__ __forceinline__ float g(float vs, float vt, float p2) const
    {
        const float dphi = diff_grad<DIFF>(d(vs, vt), p2);
        return scale * inv_s * (through_norm ? dphi - as(vs) * dot : dphi);
    }
};

template <int BLOCK>
using PairReduce = cub::BlockReduce<Pair, BLOCK>;

// Finishes sample n, whose v_s and v_t every map block has written and fenced (called by every thread of the
// block that completed them): the norms, then dot and the loss term (in sample_loss[n]), then with a gradient
// G[n]. The maps are read with __ldcg: other blocks wrote them.
template <int BLOCK, Diff DIFF>
__device__ __forceinline__ void finish_sample(const AttentionArgs& a, int64_t n, typename PairReduce<BLOCK>::TempStorage& temp)
{
    __shared__ float shared_norm_s, shared_norm_t, shared_dot;
    const int64_t hw = a.geo.h * a.geo.w;
    const float* vs = a.ws.v_s + n * hw;
    const float* vt = a.ws.v_t + n * hw;

    Pair sq{0.0f, 0.0f};
    for (int64_t o = threadIdx.x; o < hw; o += BLOCK) {  // explicit FMAs: equal maps get equal norms
        const float s = __ldcg(vs + o), t = __ldcg(vt + o);
        sq.a = __fmaf_rn(s, s, sq.a);
        sq.b = __fmaf_rn(t, t, sq.b);
    }
    const Pair norms = PairReduce<BLOCK>(temp).Reduce(sq, PairSum{});
    if (threadIdx.x == 0) {
        shared_norm_s = sqrtf(norms.a);
        shared_norm_t = sqrtf(norms.b);
    }
    __syncthreads();
    SampleNorm sn{};
    sn.through_norm = shared_norm_s >= kNormEps;
    sn.inv_s = 1.0f / nan_max(shared_norm_s, kNormEps);
    sn.inv_t = 1.0f / nan_max(shared_norm_t, kNormEps);

    Pair terms{0.0f, 0.0f};  // sum phi(d), sum a_s phi'(d)
    for (int64_t o = threadIdx.x; o < hw; o += BLOCK) {
        const float s = __ldcg(vs + o), d = sn.d(s, __ldcg(vt + o));
        terms.a += diff_value<DIFF>(d, a.p2);
        terms.b += sn.as(s) * diff_grad<DIFF>(d, a.p2);
    }
    const Pair sums = PairReduce<BLOCK>(temp).Reduce(terms, PairSum{});
    if (threadIdx.x == 0) {
        shared_dot = sums.b;
        a.ws.sample_loss[n] = sums.a;
    }
    __syncthreads();
    if (a.grad_s == nullptr) return;
    sn.dot = shared_dot;
    const float g = a.grad_loss ? *a.grad_loss : 1.0f;
    sn.scale = g * a.grad_scale * a.weight * a.p / (static_cast<float>(a.s.n * hw) * static_cast<float>(a.s.c));
    float* G = a.ws.g + n * hw;
    for (int64_t o = threadIdx.x; o < hw; o += BLOCK) G[o] = sn.g<DIFF>(__ldcg(vs + o), __ldcg(vt + o), a.p2);
}

// Blocks of the map kernel that write sample n's positions, counting both maps.
__device__ __forceinline__ unsigned sample_arrivals(int64_t n, int64_t hw)
{
    const int64_t first = n * hw / kAttentionMapPositions, last = ((n + 1) * hw - 1) / kAttentionMapPositions;
    return static_cast<unsigned>(2 * (last - first + 1));
}

template <int BLOCK, Diff DIFF>
__global__ void __launch_bounds__(BLOCK) attention_map_kernel(AttentionArgs a)
{
    constexpr int kLanes = static_cast<int>(kAttentionMapPositions);
    constexpr int kGroups = BLOCK / kLanes;
    static_assert(kLanes == 32 && BLOCK % kLanes == 0, "one warp per channel group");
    __shared__ float partial[kGroups][kLanes];
    __shared__ typename PairReduce<BLOCK>::TempStorage temp;
    __shared__ bool sample_done, batch_done;

    const bool teacher = blockIdx.x >= a.geo.map_blocks;
    const Map4d m = teacher ? a.t : a.s;
    const float* f = teacher ? a.f_t : a.f_s;
    float* v = teacher ? a.ws.v_t : a.ws.v_s;
    const int lane = static_cast<int>(threadIdx.x) % kLanes, group = static_cast<int>(threadIdx.x) / kLanes;
    const int64_t hw = a.geo.h * a.geo.w, positions = m.n * hw;
    const int64_t q0 = (blockIdx.x - (teacher ? a.geo.map_blocks : 0)) * kAttentionMapPositions, q = q0 + lane;

    float acc = 0.0f;
    if (q < positions) {
        const int64_t n = q / hw, o = q % hw, oy = o / a.geo.w, ox = o % a.geo.w;
        int64_t y0, y1, x0, x1;  // the pooling window (a single pixel for the smaller map)
        adaptive_window(oy, m.h, a.geo.h, y0, y1);
        adaptive_window(ox, m.w, a.geo.w, x0, x1);
        const float inv_count = 1.0f / static_cast<float>((y1 - y0) * (x1 - x0));
        const float* window = f + m.offset(n, 0) + y0 * m.w + x0;
        for (int64_t c = group; c < m.c; c += kGroups) {
            const float* w = window + c * m.sc;
            float sum = 0.0f;
            for (int64_t y = 0; y < y1 - y0; ++y)
                for (int64_t x = 0; x < x1 - x0; ++x) sum += w[y * m.w + x];
            acc += power(sum * inv_count, a.p);
        }
    }
    partial[group][lane] = acc;
    __syncthreads();
    if (group == 0 && q < positions) {
        float total = 0.0f;
        for (int g = 0; g < kGroups; ++g) total += partial[g][lane];
        v[q] = total / static_cast<float>(m.c);
        __threadfence();  // the value is visible before the ticket counts it
    }
    __syncthreads();

    // Count this block's positions in their samples' tickets; the block completing a sample finishes it.
    const int64_t q_last = (q0 + kLanes < positions ? q0 + kLanes : positions) - 1;
    for (int64_t n = q0 / hw; n <= q_last / hw; ++n) {
        if (threadIdx.x == 0) sample_done = atomicAdd(&a.ws.tickets[n], 1u) == sample_arrivals(n, hw) - 1;
        __syncthreads();
        if (sample_done) {
            __threadfence();
            finish_sample<BLOCK, DIFF>(a, n, temp);
            if (a.loss != nullptr) {
                // The block finishing the last sample adds the samples' terms in sample order.
                if (threadIdx.x == 0) {
                    __threadfence();  // the sample's term is visible before the ticket counts it
                    batch_done = atomicAdd(&a.ws.tickets[m.n], 1u) == static_cast<unsigned>(m.n - 1);
                }
                __syncthreads();
                if (batch_done) {
                    __threadfence();
                    Pair part{0.0f, 0.0f};
                    for (int64_t i = threadIdx.x; i < m.n; i += BLOCK) part.a += __ldcg(&a.ws.sample_loss[i]);
                    const Pair total = PairReduce<BLOCK>(temp).Reduce(part, PairSum{});
                    if (threadIdx.x == 0) store(a.loss, a.weight * total.a / static_cast<float>(positions), a.accumulate);
                }
            }
        }
        __syncthreads();
    }
}

// grad_s of channels c0 .. c0 + nc - 1 of sample n when the student is the pooled map (H x W to Hp x Wp), from
// the sample's G (Hp x Wp). Per channel and tile of output rows: T[o] = G[o] u[o]^(p-1) / |window o| into shared
// memory (u, the window's mean, recomputed from f_s), then each input pixel of the tile adds T over the windows
// that contain it. A tile stages `rows` output rows plus the next one, which input rows at the tile's end may
// share. Spatial indices are 32-bit (no 64-bit division): the host checks (H+1)(Hp+1) and (W+1)(Wp+1)
// fit in an int (AttentionGeometry::launchable).
template <int BLOCK>
__device__ __forceinline__ void pooled_student_grad(const AttentionArgs& a, const float* G, int64_t n, int64_t c0, int64_t nc)
{
    __shared__ float stage[kAttentionStage];
    const int H = static_cast<int>(a.s.h), W = static_cast<int>(a.s.w);
    const int Hp = static_cast<int>(a.geo.h), Wp = static_cast<int>(a.geo.w);
    const int rows = static_cast<int>(kAttentionStage) / Wp - 1;
    const float pm1 = a.p - 1.0f;
    for (int64_t c = c0; c < c0 + nc; ++c) {
        const float* plane = a.f_s + a.s.offset(n, c);
        float* gplane = a.grad_s + a.s.offset(n, c);
        for (int o0 = 0; o0 < Hp; o0 += rows) {
            const int o1 = o0 + rows < Hp ? o0 + rows : Hp;
            const int staged = (o1 < Hp ? o1 + 1 : Hp) - o0;
            for_each_strided<int>(staged, Wp, threadIdx.x, BLOCK, [&](int r, int ox) {
                const int oy = o0 + r;  // PyTorch's window [floor(o in / out), ceil((o + 1) in / out))
                const int y0 = oy * H / Hp, y1 = ((oy + 1) * H + Hp - 1) / Hp;
                const int x0 = ox * W / Wp, x1 = ((ox + 1) * W + Wp - 1) / Wp;
                float sum = 0.0f;
                for (int y = y0; y < y1; ++y)
                    for (int x = x0; x < x1; ++x) sum += plane[static_cast<int64_t>(y) * W + x];
                const float inv_count = 1.0f / static_cast<float>((y1 - y0) * (x1 - x0));
                stage[r * Wp + ox] = G[static_cast<int64_t>(oy) * Wp + ox] * power(sum * inv_count, pm1) * inv_count;
            });
            __syncthreads();
            // Input rows whose first window lies in [o0, o1): from the end of window o0 - 1 to the end of
            // window o1 - 1 (the last tile: to H).
            const int ybeg = o0 > 0 ? (o0 * H + Hp - 1) / Hp : 0;
            const int yend = o1 < Hp ? (o1 * H + Hp - 1) / Hp : H;
            for_each_strided<int>(yend - ybeg, W, threadIdx.x, BLOCK, [&](int r, int x) {
                const int y = ybeg + r;
                // The windows containing y: floor(y Hp / H) .. ceil((y + 1) Hp / H) - 1 (at most two).
                const int oy0 = y * Hp / H, oy1 = ((y + 1) * Hp + H - 1) / H;
                const int ox0 = x * Wp / W, ox1 = ((x + 1) * Wp + W - 1) / W;
                float sum = 0.0f;
                for (int oy = oy0; oy < oy1; ++oy)
                    for (int ox = ox0; ox < ox1; ++ox) sum += stage[(oy - o0) * Wp + ox];
                store(gplane + static_cast<int64_t>(y) * W + x, sum, a.accumulate);
            });
            __syncthreads();
        }
    }
}

// grad_s of channels c0 .. c0 + nc - 1 of sample n when the student is not pooled: G[o] f^(p-1) elementwise,
// with G staged in shared memory kAttentionStage positions at a time (each value read once per block).
template <int BLOCK>
__device__ __forceinline__ void student_grad(const AttentionArgs& a, const float* G, int64_t n, int64_t c0, int64_t nc)
{
    __shared__ float stage[kAttentionStage];
    const int64_t hw = a.geo.h * a.geo.w;
    const float pm1 = a.p - 1.0f;
    const float* fs = a.f_s + a.s.offset(n, c0);
    float* gs = a.grad_s + a.s.offset(n, c0);
    for (int64_t o0 = 0; o0 < hw; o0 += kAttentionStage) {
        const int64_t len = hw - o0 < kAttentionStage ? hw - o0 : kAttentionStage;
        for (int64_t o = threadIdx.x; o < len; o += BLOCK) stage[o] = G[o0 + o];
        __syncthreads();
        for_each_strided<int64_t>(nc, len, threadIdx.x, BLOCK, [&](int64_t c, int64_t o) {
            const int64_t k = c * a.s.sc + o0 + o;
            store(gs + k, stage[o] * power(fs[k], pm1), a.accumulate);
        });
        __syncthreads();
    }
}

template <int BLOCK, bool POOLED>
__global__ void __launch_bounds__(BLOCK) attention_grad_kernel(AttentionArgs a)
{
    const AttentionGeometry& geo = a.geo;
    const int64_t chunks = (a.s.c + geo.channels_per_block - 1) / geo.channels_per_block;
    const int64_t n = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
    const int64_t c0 = chunk * geo.channels_per_block;
    const int64_t nc = geo.channels_per_block < a.s.c - c0 ? geo.channels_per_block : a.s.c - c0;
    const float* G = a.ws.g + n * geo.h * geo.w;  // written by the map kernel
    if constexpr (POOLED) {
        pooled_student_grad<BLOCK>(a, G, n, c0, nc);
    } else {
        student_grad<BLOCK>(a, G, n, c0, nc);
    }
}

// The gradient kernel. (A function of its own: g++ does not instantiate a kernel template named by a
// non-dependent template argument inside a template, such as launch<DIFF> below.)
inline cudaError_t launch_grads(const AttentionArgs& args, cudaStream_t stream)
{
    const LaunchConfig grads{dim3(static_cast<unsigned>(args.geo.grad_blocks)), dim3(kAttentionBlock), 0, stream};
    if (args.geo.pool_student) return kdf::launch<attention_grad_kernel<kAttentionBlock, true>>(grads, args);
    return kdf::launch<attention_grad_kernel<kAttentionBlock, false>>(grads, args);
}

// The launcher of AT (DIFF = Square) and FT (DIFF = Power): the tickets' memset, the map kernel (which writes
// the loss), and with a gradient the gradient kernel.
template <Diff DIFF>
cudaError_t launch(const AttentionArgs& args, cudaStream_t stream)
{
    if (cudaError_t e = args.ws.prepare(args.s.n, stream)) return e;
    const LaunchConfig maps{dim3(static_cast<unsigned>(2 * args.geo.map_blocks)), dim3(kAttentionBlock), 0, stream};
    if (cudaError_t e = kdf::launch<attention_map_kernel<kAttentionBlock, DIFF>>(maps, args)) return e;
    return args.grad_s == nullptr ? cudaSuccess : launch_grads(args, stream);
}

}  // namespace
}  // namespace kdf::kernels::attention
