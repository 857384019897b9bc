// OFD (Heo et al., "A Comprehensive Overhaul of Feature Distillation", ICCV 2019), one layer per call.
//
// Math. s: the connector's output, t: the teacher's pre-ReLU map (one shape), m_c: the margin of channel c,
// w: the layer weight, M = N*C*H*W:
//   t' = max(t, m_c),  keep = 1 - [s <= t' and t' <= 0],  L = sum((s - t')^2 keep)
//   seed:     m_c = (sum of the negative t of channel c over N, H, W) / (their count + 1e-6)  (0 if none),
//             loss = w L / M
//   original: m_c from the caller (kdfOFDMarginFromBN), loss = w L / (N * 1000)
//   dL/ds = g * c * w * k * 2 (s - t') keep     (g = grad_loss, c = grad_scale, k = 1/M or 1/(N*1000))
// The margin is a constant (the seed recomputes it from each batch's teacher map, which carries no gradient).
//
// Fusion plan. Original variant: one kernel, as FitNet - each element's loss term and gradient need only
// that element and the given margin. Seed variant: two kernels, the minimum the dependency allows. Every
// element's term and gradient depend (through t' and the mask) on its channel's margin, a statistic over
// the whole batch's teacher map: no element can be finished before all of t has been read, and a grid-wide
// barrier inside one launch would need a cooperative launch (all blocks co-resident).
//   kernel 1 (ofd_margin_kernel): grid C x splits (splits from the shape: about kMarginBlocks blocks in all,
//     at least kMarginMinElements values a block, at most N); block (c, k) sums the negative values of t
//     and counts them over samples [k N / splits, (k+1) N / splits) of channel c (cub::BlockReduce), stores
//     its partial, and the last block of the channel to take its ticket adds the channel's partials in split
//     order and writes m_c (ticketed last-block sum, as kdf::grid_sum, per channel). Reads t once (4M bytes).
//   kernel 2 (ofd_kernel): the fused elementwise pass - reads s and t once, writes the gradient, sums the
//     loss terms per thread, per block and across blocks (kdf::grid_sum).
//   One memset zeroes the loss ticket and the C channel tickets (they are adjacent in the workspace).
// Both walks (common/pair_walk.cuh) use 16-byte loads when the layout allows and an order that depends
// only on the shape, so the results are bitwise the same for every layout and alignment, and run to run.
// Bytes moved (fp32): original 8M read + 4M written (gradient), the minimum; seed 12M read + 4M written:
// t is read twice (the second read from L2 when t fits, e.g. 8 MB for 64 x 32 x 32 x 32 on a 50 MB L2).
// Designed for bandwidth; not measured on a GPU yet.
// Numerics: fp32 sums (per thread, then trees, then sequential sums over at most kMaxBlocks / splits
// partials); the margin's division is done in double. Counts are exact (64-bit integers).
#include "ofd.h"

#include "common/pair_walk.cuh"

namespace kdf::kernels {
namespace {

constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 1024;
constexpr int64_t kElementsPerBlockStep = kBlock * 8;
constexpr int64_t kMarginBlocks = 512;          // blocks of the margin kernel to aim for (all channels)
constexpr int64_t kMarginMinElements = 4096;    // teacher values per margin block, at least
constexpr int64_t kMarginMaxGrid = 4096;        // more (channel, split) items: blocks loop over them
constexpr int kBnBlock = 128;
constexpr double kMarginEps = 1e-6;             // the seed's get_margin eps

struct NegStats {
    float sum;
    unsigned long long count;
};
struct CombineNegStats {
    __device__ __forceinline__ NegStats operator()(const NegStats& a, const NegStats& b) const
    {
        return {a.sum + b.sum, a.count + b.count};
    }
};

__device__ __forceinline__ float margin_of(float sum, unsigned long long count)
{
    return count == 0 ? 0.0f : static_cast<float>(static_cast<double>(sum) / (static_cast<double>(count) + kMarginEps));
}

// LAYOUT: Planes4 or Scalar (a channel's values are not contiguous across samples).
template <int BLOCK, PairLayout LAYOUT>
__global__ void __launch_bounds__(BLOCK) ofd_margin_kernel(OFDArgs a, int64_t splits)
{
    using Reduce = cub::BlockReduce<NegStats, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;

    const int64_t N = a.t.n, items = a.t.c * splits;
    for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
        const int64_t c = item / splits, k = item % splits;
        const int64_t n0 = k * N / splits, n1 = (k + 1) * N / splits;
        const Map4d part{n1 - n0, 1, a.t.h, a.t.w, a.t.sn, a.t.sc};
        NegStats mine{0.0f, 0};
        for_each_pair<LAYOUT, false, false>(part, part, a.f_t + a.t.offset(n0, c), nullptr, nullptr, false,
                                            threadIdx.x, BLOCK, [&mine](int64_t, float v, float) {
                                                // The seed's t * (t < 0): v * 0 is 0, or NaN for +inf / NaN,
                                                // which then make the channel's margin NaN, as the seed's.
                                                mine.sum += v < 0.0f ? v : v * 0.0f;
                                                mine.count += v < 0.0f;
                                                return 0.0f;
                                            });
        const NegStats total = Reduce(temp).Reduce(mine, CombineNegStats{});
        if (threadIdx.x == 0) {
            if (splits == 1) {
                a.ws.batch_margin[c] = margin_of(total.sum, total.count);
            } else {
                a.ws.split_sum[item] = total.sum;
                a.ws.split_count[item] = total.count;
                __threadfence();
                if (atomicAdd(&a.ws.channel_tickets[c], 1u) == static_cast<unsigned>(splits - 1)) {
                    // The channel's last block: its partials in split order (deterministic).
                    __threadfence();
                    float sum = 0.0f;
                    unsigned long long count = 0;
                    for (int64_t i = c * splits; i < (c + 1) * splits; ++i) {
                        sum += __ldcg(&a.ws.split_sum[i]);
                        count += __ldcg(&a.ws.split_count[i]);
                    }
                    a.ws.batch_margin[c] = margin_of(sum, count);
                    a.ws.channel_tickets[c] = 0;
                }
            }
        }
        __syncthreads();  // the next item reuses the reduction storage
    }
}

template <int BLOCK, PairLayout LAYOUT>
__global__ void __launch_bounds__(BLOCK) ofd_kernel(OFDArgs a)
{
    using Reduce = cub::BlockReduce<float, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;

    const float g = a.grad_loss ? *a.grad_loss : 1.0f;
    const float coef = g * a.grad_scale * a.weight * a.scale * 2.0f;
    const float* margin = a.seed ? a.ws.batch_margin : a.margin;
    float sum = 0.0f;
    for_each_pair<LAYOUT, true, true>(a.s, a.t, a.f_s, a.f_t, a.grad_s, a.accumulate,
                                      blockIdx.x * int64_t(BLOCK) + threadIdx.x, int64_t(gridDim.x) * BLOCK,
                                      [&sum, margin, coef](int64_t c, float s, float t) {
                                          const float m = margin[c];
                                          const float tm = t < m || m != m ? m : t;  // torch.max(t, m): a NaN in either stays NaN
                                          const float keep = (s <= tm && tm <= 0.0f) ? 0.0f : 1.0f;
                                          const float d = s - tm;
                                          sum += d * d * keep;
                                          return coef * d * keep;
                                      });

    if (a.loss == nullptr) return;
    const GridSumResult r = grid_sum<BLOCK>(a.ws.sum, Reduce(temp).Sum(sum));
    if (r.last && threadIdx.x == 0) store(a.loss, a.weight * a.scale * r.total, a.accumulate);
}

// clovaai's get_margin_from_BN in double precision, with the gamma == 0 limit.
__global__ void __launch_bounds__(kBnBlock)
    ofd_bn_margin_kernel(int64_t channels, const float* gamma, const float* beta, float* margin)
{
    constexpr double kSqrt2 = 1.4142135623730951;
    constexpr double kInvSqrt2Pi = 0.3989422804014327;
    for (int64_t c = blockIdx.x * int64_t(kBnBlock) + threadIdx.x; c < channels; c += int64_t(gridDim.x) * kBnBlock) {
        const double s = fabs(static_cast<double>(gamma[c])), m = static_cast<double>(beta[c]);
        double r = m < 0.0 ? m : -3.0 * s;  // s == 0: the BN output is the constant m
        if (s > 0.0) {
            const double z = m / s;
            const double cdf = 0.5 * erfc(z / kSqrt2);  // Phi(-z), accurate in the tail
            r = cdf > 1e-3 ? m - s * (exp(-0.5 * z * z) * kInvSqrt2Pi) / cdf : -3.0 * s;
        }
        margin[c] = static_cast<float>(r);
    }
}

template <PairLayout LAYOUT>
cudaError_t launch_loss(const OFDArgs& args, const LaunchConfig& cfg)
{
    return kdf::launch<ofd_kernel<kBlock, LAYOUT>>(cfg, args);
}

}  // namespace

int64_t ofd_blocks(const Map4d& s)
{
    const int64_t work = (s.numel() + kElementsPerBlockStep - 1) / kElementsPerBlockStep;
    return work < kMaxBlocks ? work : kMaxBlocks;
}

int64_t ofd_margin_splits(const Map4d& s)
{
    const int64_t by_grid = (kMarginBlocks + s.c - 1) / s.c;
    const int64_t by_work = (s.n * s.hw() + kMarginMinElements - 1) / kMarginMinElements;
    int64_t splits = by_grid < by_work ? by_grid : by_work;
    if (splits > s.n) splits = s.n;
    return splits < 1 ? 1 : splits;
}

OFDWorkspace ofd_workspace(const Map4d& s, bool seed, void* base)
{
    const int64_t C = s.c, splits = ofd_margin_splits(s);
    const bool split = seed && splits > 1;
    const int64_t partials = round_up(ofd_blocks(s) * int64_t(sizeof(float)), 256);
    const int64_t tickets = round_up((1 + (split ? C : 0)) * int64_t(sizeof(unsigned)), 256);
    const int64_t margins = seed ? round_up(C * int64_t(sizeof(float)), 256) : 0;
    const int64_t sums = split ? round_up(C * splits * int64_t(sizeof(float)), 256) : 0;
    const int64_t counts = split ? round_up(C * splits * int64_t(sizeof(unsigned long long)), 256) : 0;
    auto at = [base](int64_t offset) { return base ? static_cast<unsigned char*>(base) + offset : nullptr; };
    OFDWorkspace ws{};
    ws.sum.partials = reinterpret_cast<float*>(at(0));
    ws.sum.ticket = reinterpret_cast<unsigned*>(at(partials));
    ws.channel_tickets = split ? reinterpret_cast<unsigned*>(at(partials + sizeof(unsigned))) : nullptr;
    ws.batch_margin = seed ? reinterpret_cast<float*>(at(partials + tickets)) : nullptr;
    ws.split_sum = split ? reinterpret_cast<float*>(at(partials + tickets + margins)) : nullptr;
    ws.split_count = split ? reinterpret_cast<unsigned long long*>(at(partials + tickets + margins + sums)) : nullptr;
    ws.bytes = static_cast<size_t>(partials + tickets + margins + sums + counts);
    return ws;
}

cudaError_t ofd_launch(const OFDArgs& args, cudaStream_t stream)
{
    const int64_t splits = ofd_margin_splits(args.s);
    const bool split = args.seed && splits > 1;
    if (args.loss || split) {
        // The loss ticket and the channel tickets are adjacent: one memset.
        const size_t count = 1 + (split ? static_cast<size_t>(args.s.c) : 0);
        if (cudaError_t e = cudaMemsetAsync(args.ws.sum.ticket, 0, count * sizeof(unsigned), stream)) return e;
    }
    if (args.seed) {
        const int64_t items = args.t.c * splits;
        const LaunchConfig cfg{dim3(static_cast<unsigned>(items < kMarginMaxGrid ? items : kMarginMaxGrid)), dim3(kBlock), 0,
                               stream};
        const bool vec = planes4(args.t) && aligned16(args.f_t);
        cudaError_t e = vec ? kdf::launch<ofd_margin_kernel<kBlock, PairLayout::Planes4>>(cfg, args, splits)
                            : kdf::launch<ofd_margin_kernel<kBlock, PairLayout::Scalar>>(cfg, args, splits);
        if (e) return e;
    }
    const LaunchConfig cfg{dim3(static_cast<unsigned>(ofd_blocks(args.s))), dim3(kBlock), 0, stream};
    switch (pair_layout(args.s, args.t, args.f_s, args.f_t, args.grad_s, true)) {
    case PairLayout::Flat4: return launch_loss<PairLayout::Flat4>(args, cfg);
    case PairLayout::Planes4: return launch_loss<PairLayout::Planes4>(args, cfg);
    default: return launch_loss<PairLayout::Scalar>(args, cfg);
    }
}

cudaError_t ofd_margin_from_bn_launch(int64_t channels, const float* gamma, const float* beta, float* margin,
                                      cudaStream_t stream)
{
    const int64_t blocks = (channels + kBnBlock - 1) / kBnBlock;
    const LaunchConfig cfg{dim3(static_cast<unsigned>(blocks < 1024 ? blocks : 1024)), dim3(kBnBlock), 0, stream};
    return kdf::launch<ofd_bn_margin_kernel>(cfg, channels, gamma, beta, margin);
}

}  // namespace kdf::kernels
