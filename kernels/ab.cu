// AB (Heo et al., "Knowledge Transfer via Distillation of Activation Boundaries Formed by Hidden Neurons";
// RepDistiller's ABLoss), one layer per call: one fused kernel.
//
// Math. With m the margin, s the connector's pre-ReLU output, t the teacher's pre-ReLU map (one shape),
// w the layer weight and k = 3 / (1000 N) (the seed's `/ bsz / 1000 * 3`; k = 1 without seed scaling):
//   a = [s > -m and t <= 0]   (teacher inactive: the student should be <= -m)
//   b = [s <= m and t > 0]    (teacher active: the student should be > m)
//   loss = w * k * sum((s + m)^2 a + (s - m)^2 b)
//   dL/ds = g * c * w * k * 2 ((s + m) a + (s - m) b)        (g = grad_loss, c = grad_scale)
// The masks are multiplied in, as the seed does, so a NaN input gives a NaN loss as in PyTorch.
//
// Fusion plan: the gradient of an element needs nothing but that element, so one pass does everything:
// each element of s and t is read once, its gradient written at once, and the loss terms are summed per
// thread, per block (cub::BlockReduce) and across blocks by the ticketed last-block sum (kdf::grid_sum).
// The walk (common/pair_walk.cuh) uses 16-byte loads for dense or 4-aligned strided maps and visits the
// elements in an order that depends only on the shape, so the loss is bitwise the same for every layout
// and alignment of the same values, and run to run (the grid size depends only on the shape).
// Bytes moved (fp32): 8M read + 4M written (gradient), M = N*C*H*W - the minimum. Designed for bandwidth;
// not measured on a GPU yet.
// Numerics: fp32; each thread sums 8 terms up to M = 2M elements (M / 262144 beyond), then a tree over
// threads and a sequential sum over at most kMaxBlocks partials. The scaling k is formed in double on the host.
#include "ab.h"

#include "common/pair_walk.cuh"

namespace kdf::kernels {
namespace {

constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 1024;
constexpr int64_t kElementsPerBlockStep = kBlock * 8;

template <int BLOCK, PairLayout LAYOUT>
__global__ void __launch_bounds__(BLOCK) ab_kernel(ABArgs a)
{
    using Reduce = cub::BlockReduce<float, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;

    const float g = a.grad_loss ? *a.grad_loss : 1.0f;
    const float coef = g * a.grad_scale * a.weight * a.scale * 2.0f;
    const float m = a.margin;
    float sum = 0.0f;
    for_each_pair<LAYOUT, false, true>(a.s, a.t, a.f_s, a.f_t, a.grad_s, a.accumulate,
                                       blockIdx.x * int64_t(BLOCK) + threadIdx.x, int64_t(gridDim.x) * BLOCK,
                                       [&sum, m, coef](int64_t, float s, float t) {
                                           const float inactive = (s > -m && t <= 0.0f) ? 1.0f : 0.0f;
                                           const float active = (s <= m && t > 0.0f) ? 1.0f : 0.0f;
                                           const float up = s + m, down = s - m;
                                           sum += up * up * inactive + down * down * active;
                                           return coef * (up * inactive + down * active);
                                       });

    if (a.loss == nullptr) return;
    const GridSumResult r = grid_sum<BLOCK>(a.sum, Reduce(temp).Sum(sum));
    if (r.last && threadIdx.x == 0) store(a.loss, a.weight * a.scale * r.total, a.accumulate);
}

}  // namespace

int64_t ab_blocks(const Map4d& s)
{
    const int64_t work = (s.numel() + kElementsPerBlockStep - 1) / kElementsPerBlockStep;
    return work < kMaxBlocks ? work : kMaxBlocks;
}

cudaError_t ab_launch(const ABArgs& args, cudaStream_t stream)
{
    const LaunchConfig cfg{dim3(static_cast<unsigned>(ab_blocks(args.s))), dim3(kBlock), 0, stream};
    if (args.loss)
        if (cudaError_t e = args.sum.prepare(stream)) return e;
    switch (pair_layout(args.s, args.t, args.f_s, args.f_t, args.grad_s, false)) {
    case PairLayout::Flat4: return kdf::launch<ab_kernel<kBlock, PairLayout::Flat4>>(cfg, args);
    case PairLayout::Planes4: return kdf::launch<ab_kernel<kBlock, PairLayout::Planes4>>(cfg, args);
    default: return kdf::launch<ab_kernel<kBlock, PairLayout::Scalar>>(cfg, args);
    }
}

}  // namespace kdf::kernels
