// The kernels AT and FT share (kernels/at.cu, kernels/ft.cu; the math is in at.cu's header comment).
//
// attention_map_kernel: v[n, o] = mean_C (P f)[n, c, o]^p for both maps, P the adaptive average pooling
//   of the larger map to the common size (identity for the smaller one). One thread per map position o
//   and channel group: a block is 32 consecutive positions (flattened over n and o, so small maps still
//   fill the block) x BLOCK/32 channel groups, one warp per group, so a warp reads 32 consecutive values
//   of a plane; the groups' partial sums are added in group order in shared memory. Student blocks
//   first, then teacher blocks.
// attention_grad_kernel<DIFF, POOLED>: one block per (sample, chunk of student channels). Each block
//   re-derives its sample's statistics from v (2 x h*w values, L2-resident): the two norms, then
//   dot = sum_o a_s[o] phi'(d[o]) (two block reductions), so G[o] = dL/dv_s[o] costs two loads and a few
//   flops wherever it is needed (SampleGrad::dv returns G[o] p / C). Then it writes grad_s for its channels:
//   - student not pooled: grad = G[o] p f^(p-1) / C, elementwise over the chunk's (channel, position) range;
//   - student pooled: per channel, rows of T[o] = G[o] p u[o]^(p-1) / (C |window o|) (u = the pooled value,
//     recomputed from the window) are staged in shared memory, then every input pixel adds T over the
//     windows that contain it (at most 2 per dimension, since windows shrink the map); rows are staged in
//     tiles with one row of overlap, so any height fits and the width is limited to kAttentionMaxPooledWidth.
//   The first chunk's block of each sample adds the sample's loss; kdf::grid_sum adds the blocks' values
//   in block order (no float atomics).
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

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) attention_map_kernel(AttentionArgs a)
{
    constexpr int kLanes = static_cast<int>(kAttentionMapPositions);
    constexpr int kGroups = BLOCK / kLanes;
    static_assert(kLanes == 32 && BLOCK % kLanes == 0, "one warp per channel group");
    __shared__ float partial[kGroups][kLanes];

    const bool teacher = blockIdx.x >= a.geo.map_blocks;
    const Map4d m = teacher ? a.t : a.s;
    const float* f = teacher ? a.f_t : a.f_s;
    float* v = teacher ? a.ws.v_t : a.ws.v_s;
    const int lane = static_cast<int>(threadIdx.x) % kLanes, group = static_cast<int>(threadIdx.x) / kLanes;
    const int64_t hw = a.geo.h * a.geo.w, positions = m.n * hw;
    const int64_t q = (blockIdx.x - (teacher ? a.geo.map_blocks : 0)) * kAttentionMapPositions + lane;

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
    }
}

// One sample's normalisation: dv(o) = dL/dv_s[o] * p / C_s (the factor every gradient element of
// position o shares) from the two unnormalised maps.
struct SampleGrad {
    const float* vs;
    const float* vt;
    float inv_s, inv_t;  // 1 / max(||v||, eps)
    float dot;           // sum_o a_s[o] phi'(d[o])
    bool through_norm;   // ||v_s|| >= eps: the gradient also flows through the norm (torch's clamp_min)
    float scale;         // g c w p / (N h w C_s): the loss mean, the channel mean and the power's p

    // a_s[o], rounded: the same value wherever it is used.
    __device__ __forceinline__ float as(int64_t o) const { return __fmul_rn(vs[o], inv_s); }
    // d[o] = a_s[o] - a_t[o], both normalised values rounded before the difference: equal maps give exactly
    // d = 0 (a contracted vs[o] * inv_s - vt[o] * inv_t would leave the first product's rounding error).
    __device__ __forceinline__ float d(int64_t o) const { return as(o) - __fmul_rn(vt[o], inv_t); }

    template <Diff DIFF>
    __device__ __forceinline__ float dv(int64_t o, float p2) const
    {
        const float dphi = diff_grad<DIFF>(d(o), p2);
        return scale * inv_s * (through_norm ? dphi - as(o) * dot : dphi);
    }
};

// grad_s of channels c0 .. c0 + nc - 1 of sample n when the student is the pooled map (H x W to Hp x Wp).
// Per channel and tile of output rows: T[o] = dv(o) u[o]^(p-1) / |window o| into shared memory (u, the
// window's mean, recomputed from f_s), then each input pixel of the tile adds T over the windows that
// contain it. A tile stages `rows` output rows plus the next one, which input rows at the tile's end may
// share. Spatial indices are 32-bit (no 64-bit division): the host checks (H+1)(Hp+1) and (W+1)(Wp+1)
// fit in an int (AttentionGeometry::launchable).
template <int BLOCK, Diff DIFF>
__device__ __forceinline__ void pooled_student_grad(const AttentionArgs& a, const SampleGrad& sg, int64_t n, int64_t c0,
                                                    int64_t nc)
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
                stage[r * Wp + ox] = sg.dv<DIFF>(static_cast<int64_t>(oy) * Wp + ox, a.p2) * power(sum * inv_count, pm1) * inv_count;
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

template <int BLOCK, Diff DIFF, bool POOLED>
__global__ void __launch_bounds__(BLOCK) attention_grad_kernel(AttentionArgs a)
{
    using Reduce = cub::BlockReduce<Pair, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    __shared__ float shared_norm_s, shared_norm_t, shared_dot;

    const AttentionGeometry& geo = a.geo;
    const int64_t chunks = (a.s.c + geo.channels_per_block - 1) / geo.channels_per_block;
    const int64_t n = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
    const int64_t hw = geo.h * geo.w;
    const bool report = a.loss != nullptr && chunk == 0;
    float sample_loss = 0.0f;  // thread 0 of a reporting block

    if (report || a.grad_s != nullptr) {
        SampleGrad sg{a.ws.v_s + n * hw, a.ws.v_t + n * hw, 0.0f, 0.0f, 0.0f, false, 0.0f};
        Pair sq{0.0f, 0.0f};
        for (int64_t o = threadIdx.x; o < hw; o += BLOCK) {  // explicit FMAs: equal maps get equal norms
            sq.a = __fmaf_rn(sg.vs[o], sg.vs[o], sq.a);
            sq.b = __fmaf_rn(sg.vt[o], sg.vt[o], sq.b);
        }
        const Pair norms = Reduce(temp).Reduce(sq, PairSum{});
        if (threadIdx.x == 0) {
            shared_norm_s = sqrtf(norms.a);
            shared_norm_t = sqrtf(norms.b);
        }
        __syncthreads();
        sg.through_norm = shared_norm_s >= kNormEps;
        sg.inv_s = 1.0f / nan_max(shared_norm_s, kNormEps);
        sg.inv_t = 1.0f / nan_max(shared_norm_t, kNormEps);

        Pair terms{0.0f, 0.0f};  // sum phi(d), sum a_s phi'(d)
        for (int64_t o = threadIdx.x; o < hw; o += BLOCK) {
            const float d = sg.d(o);
            terms.a += diff_value<DIFF>(d, a.p2);
            terms.b += sg.as(o) * diff_grad<DIFF>(d, a.p2);
        }
        const Pair sums = Reduce(temp).Reduce(terms, PairSum{});
        if (threadIdx.x == 0) {
            shared_dot = sums.b;
            sample_loss = sums.a;
        }
        __syncthreads();
        sg.dot = shared_dot;

        if (a.grad_s != nullptr) {
            const float g = a.grad_loss ? *a.grad_loss : 1.0f;
            sg.scale = g * a.grad_scale * a.weight * a.p / (static_cast<float>(a.s.n * hw) * static_cast<float>(a.s.c));
            const int64_t c0 = chunk * geo.channels_per_block;
            const int64_t nc = geo.channels_per_block < a.s.c - c0 ? geo.channels_per_block : a.s.c - c0;
            if constexpr (!POOLED) {
                const float pm1 = a.p - 1.0f;
                // grad[c, o] = G(o) p f^(p-1) / C over the chunk's channels x positions.
                const float* fs = a.f_s + a.s.offset(n, c0);
                float* gs = a.grad_s + a.s.offset(n, c0);
                for_each_strided<int64_t>(nc, hw, threadIdx.x, BLOCK, [&](int64_t c, int64_t o) {
                    const int64_t k = c * a.s.sc + o;
                    store(gs + k, sg.dv<DIFF>(o, a.p2) * power(fs[k], pm1), a.accumulate);
                });
            } else {
                pooled_student_grad<BLOCK, DIFF>(a, sg, n, c0, nc);
            }
        }
    }

    if (a.loss == nullptr) return;
    const GridSumResult r = grid_sum<BLOCK>(a.ws.sum, report ? sample_loss : 0.0f);
    if (r.last && threadIdx.x == 0) store(a.loss, a.weight * r.total / static_cast<float>(a.s.n * hw), a.accumulate);
}

// Both maps, in one launch. (A function of its own: g++ does not instantiate a kernel template named by a
// non-dependent template argument inside a template, such as launch<DIFF> below.)
inline cudaError_t launch_maps(const AttentionArgs& args, cudaStream_t stream)
{
    const LaunchConfig maps{dim3(static_cast<unsigned>(2 * args.geo.map_blocks)), dim3(kAttentionBlock), 0, stream};
    return kdf::launch<attention_map_kernel<kAttentionBlock>>(maps, args);
}

// The launcher of AT (DIFF = Square) and FT (DIFF = Power).
template <Diff DIFF>
cudaError_t launch(const AttentionArgs& args, cudaStream_t stream)
{
    if (args.loss)
        if (cudaError_t e = args.ws.sum.prepare(stream)) return e;
    if (cudaError_t e = launch_maps(args, stream)) return e;
    const dim3 block(kAttentionBlock);
    const LaunchConfig grads{dim3(static_cast<unsigned>(args.geo.grad_blocks)), block, 0, stream};
    if (args.geo.pool_student) return kdf::launch<attention_grad_kernel<kAttentionBlock, DIFF, true>>(grads, args);
    return kdf::launch<attention_grad_kernel<kAttentionBlock, DIFF, false>>(grads, args);
}

}  // namespace
}  // namespace kdf::kernels::attention
