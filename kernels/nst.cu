// NST (Huang & Wang, "Like what you like: knowledge distill via neuron selectivity transfer"; RepDistiller's
// NSTLoss): two kernels around strided-batched cuBLAS GEMMs.
//
// Math. Both maps are pooled to the common h x w (the larger one inside the load, see PoolPair) and viewed as
// C x P rows (P = h*w). Rows are L2-normalised as F.normalize (eps 1e-12): a_i = u_i / max(||u_i||, eps) for
// the student's C_s rows u_i, b_k likewise for the teacher's C_t rows. Per sample, with X = [a; b]
// ((C_s + C_t) x P) and G = X X^T (its blocks Gss = a a^T, Gst = a b^T, Gtt = b b^T):
//   loss = w * (sum Gtt^2 / (N C_t^2) [full_loss] + sum Gss^2 / (N C_s^2) - 2 sum Gst^2 / (N C_s C_t))
// Gradient (g = grad_loss, c = grad_scale; Gtt is a constant, the teacher gets no gradient):
//   dL/da = g c w (4 / (N C_s^2) Gss a - 4 / (N C_s C_t) Gst b)            (d/da_i sum_jl (a_j.a_l)^2 = 4 sum_j Gss_ij a_j)
//   dL/du_i = (dL/da_i - a_i <a_i, dL/da_i>) / ||u_i||    (||u_i|| > eps; else dL/da_i / eps, clamp_min's gradient)
//   dL/df_s = the adjoint of the pooling applied to dL/du (identity when the student is not pooled).
//
// Fusion plan. The loss needs all of G and dL/da needs G, so the dependency chain is
// normalise -> Gram GEMM -> dA GEMMs -> finish; two kernels is the minimum around the GEMMs:
//   1. nst_normalize_kernel: one block per row of X (n x (C_s + C_t) blocks): pools the plane inside the load,
//      writes the row, reduces its norm, rescales the row in place and stores the norm.
//   2. GEMM G = X X^T (one strided-batched call; Gtt only feeds the loss, and computing it with the rest
//      keeps it one call).
//   3. (gradient) dA = alpha1 G[:, :C_s] a + alpha2 G[:, C_s:] b: two strided-batched calls into one buffer
//      (beta 0, then beta 1) with the host constants in alpha; g (a device scalar) is applied in 4.
//   4. nst_finish_kernel: one block per row of X. Every block adds its row's share of the loss (row i of Gss and
//      Gst for a student row, of Gtt for a teacher row), kdf::grid_sum adds the blocks' values in block order.
//      Student rows then backpropagate through the normalisation (one block reduction for <a_i, dA_i>) and,
//      when the student is pooled, stage dL/du in dA and gather each input pixel from the (at most 2 x 2)
//      windows that contain it; the gradient is written once, with accumulate.
// No N x C x C x HW tensor (the seed's broadcast: 1 GiB per layer at CIFAR batch 64) exists: the largest
// buffers are X (N (C_s + C_t) P floats) and G (N (C_s + C_t)^2 floats).
//
// FLOPs: 2 N (C_s + C_t)^2 P for G, 2 N C_s (C_s + C_t) P for dA. Bytes (fp32): inputs read once (4 N C_s H W +
// 4 N C_t H' W'), X written once and read by each GEMM, G written once and read twice, dA written once and read
// once (twice when pooled), grad_s written once.
//
// Numerics: fp32 throughout (TF32 in the GEMMs only when the handle allows it); norms and the per-row loss
// terms are block-tree sums; the loss is added over blocks in block order.
// Determinism: grids depend only on the shapes; cuBLAS GEMMs are deterministic for a fixed configuration; no
// float atomics.
#include "nst.h"

#include "common/gram_pool.cuh"

namespace kdf::kernels {
namespace {

constexpr float kNormEps = 1e-12f;

// The plane of row r of sample n: the student's channel r (r < cs) or the teacher's channel r - cs.
struct RowSource {
    const float* plane;
    int64_t H, W;
};

__device__ __forceinline__ RowSource row_source(const NSTArgs& a, int64_t in, int64_t r)
{
    if (r < a.geo.cs) return {a.f_s + a.s.offset(in, r), a.s.h, a.s.w};
    return {a.f_t + a.t.offset(in, r - a.geo.cs), a.t.h, a.t.w};
}

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) nst_normalize_kernel(NSTArgs a)
{
    using Reduce = cub::BlockReduce<float, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    __shared__ float s_inv;

    const int64_t b = blockIdx.x;
    const int64_t in = b / a.geo.c, r = b % a.geo.c;
    const RowSource src = row_source(a, in, r);
    const int64_t h = a.geo.pool.h, w = a.geo.pool.w, p = a.geo.p;
    const bool pooled = src.H != h || src.W != w;
    float* x = a.ws.x + b * p;

    float sq = 0.0f;
    for (int64_t o = threadIdx.x; o < p; o += BLOCK) {
        const float u = pooled ? gram::pool_at(src.plane, src.H, src.W, h, w, o / w, o % w) : src.plane[o];
        x[o] = u;
        sq += u * u;
    }
    const float total = Reduce(temp).Sum(sq);
    if (threadIdx.x == 0) {
        const float norm = sqrtf(total);
        a.ws.norms[b] = norm;
        s_inv = 1.0f / fmaxf(norm, kNormEps);
    }
    __syncthreads();
    const float inv = s_inv;
    for (int64_t o = threadIdx.x; o < p; o += BLOCK) x[o] *= inv;  // the values this thread wrote
}

// POOLED: the student is pooled (the gradient goes through the pooling's adjoint).
template <int BLOCK, bool POOLED>
__global__ void __launch_bounds__(BLOCK) nst_finish_kernel(NSTArgs a)
{
    using Reduce = cub::BlockReduce<float, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    __shared__ float s_dot;

    const int64_t b = blockIdx.x;
    const int64_t c = a.geo.c, cs = a.geo.cs, ct = a.geo.ct;
    const int64_t in = b / c, r = b % c;
    const bool student = r < cs;

    if (a.grad_s != nullptr && student) {
        const int64_t p = a.geo.p;
        const float* xa = a.ws.x + b * p;
        float* da = a.ws.da + (in * cs + r) * p;
        float dot = 0.0f;
        for (int64_t o = threadIdx.x; o < p; o += BLOCK) dot += xa[o] * da[o];
        dot = Reduce(temp).Sum(dot);
        if (threadIdx.x == 0) s_dot = dot;
        __syncthreads();
        dot = s_dot;
        const float norm = a.ws.norms[b];
        const float g = a.grad_loss ? *a.grad_loss : 1.0f;
        const bool clamped = !(norm > kNormEps);
        const float inv = g / (clamped ? kNormEps : norm);
        float* gs = a.grad_s + a.s.offset(in, r);
        for (int64_t o = threadIdx.x; o < p; o += BLOCK) {
            const float du = clamped ? da[o] * inv : (da[o] - xa[o] * dot) * inv;
            if constexpr (POOLED)
                da[o] = du;  // staged for the gather below
            else
                store(gs + o, du, a.accumulate);
        }
        if constexpr (POOLED) {
            __syncthreads();
            const int64_t H = a.s.h, W = a.s.w, h = a.geo.pool.h, w = a.geo.pool.w;
            for (int64_t i = threadIdx.x; i < H * W; i += BLOCK)
                store(gs + i, gram::unpool_at(da, H, W, h, w, i / W, i % W), a.accumulate);
        }
        __syncthreads();  // temp is reused below
    }

    if (a.loss == nullptr) return;
    // This row's share of the loss: row r of Gss and Gst (student) or of Gtt (teacher, full_loss).
    const float* row = a.ws.gram + b * c;
    const float nf = static_cast<float>(a.geo.n);
    float part = 0.0f;
    if (student) {
        const float wss = 1.0f / (nf * static_cast<float>(cs) * static_cast<float>(cs));
        const float wst = -2.0f / (nf * static_cast<float>(cs) * static_cast<float>(ct));
        for (int64_t j = threadIdx.x; j < c; j += BLOCK) part += row[j] * row[j] * (j < cs ? wss : wst);
    } else if (a.full_loss) {
        const float wtt = 1.0f / (nf * static_cast<float>(ct) * static_cast<float>(ct));
        for (int64_t j = cs + threadIdx.x; j < c; j += BLOCK) part += row[j] * row[j] * wtt;
    }
    const GridSumResult res = grid_sum<BLOCK>(a.ws.sum, Reduce(temp).Sum(part));
    if (res.last && threadIdx.x == 0) store(a.loss, a.weight * res.total, a.accumulate);
}

}  // namespace

GramLaunchResult nst_launch(const NSTArgs& a, cudaStream_t stream)
{
    GramLaunchResult r;
    const NSTGeometry& g = a.geo;
    const LaunchConfig cfg{dim3(static_cast<unsigned>(g.blocks)), dim3(kGramBlock), 0, stream};
    if (a.loss)
        if ((r.cuda = a.ws.sum.prepare(stream))) return r;
    if ((r.cuda = kdf::launch(nst_normalize_kernel<kGramBlock>, cfg, a))) return r;

    if ((r.cublas = gemm_bind(a.cublas, stream, a.ws.cublas, a.allow_tf32))) return r;
    const int c = static_cast<int>(g.c), cs = static_cast<int>(g.cs), p = static_cast<int>(g.p);
    const int batch = static_cast<int>(g.n);
    const long long sx = static_cast<long long>(g.c * g.p), sg = static_cast<long long>(g.c * g.c);
    // G = X X^T, per sample.
    if ((r.cublas = gemm_rm_batched(a.cublas, false, true, c, c, p, 1.0f, a.ws.x, p, sx, a.ws.x, p, sx, 0.0f, a.ws.gram,
                                    c, sg, batch)))
        return r;
    if (a.grad_s) {
        const float nf = static_cast<float>(g.n), csf = static_cast<float>(g.cs), ctf = static_cast<float>(g.ct);
        const float alpha1 = 4.0f * a.weight * a.grad_scale / (nf * csf * csf);
        const float alpha2 = -4.0f * a.weight * a.grad_scale / (nf * csf * ctf);
        const long long sd = static_cast<long long>(g.cs * g.p);
        // dA = alpha1 Gss a, then dA += alpha2 Gst b.
        if ((r.cublas = gemm_rm_batched(a.cublas, false, false, cs, p, cs, alpha1, a.ws.gram, c, sg, a.ws.x, p, sx, 0.0f,
                                        a.ws.da, p, sd, batch)))
            return r;
        if ((r.cublas = gemm_rm_batched(a.cublas, false, false, cs, p, static_cast<int>(g.ct), alpha2, a.ws.gram + g.cs, c,
                                        sg, a.ws.x + g.cs * g.p, p, sx, 1.0f, a.ws.da, p, sd, batch)))
            return r;
    }
    if (g.pool.pool_a)
        r.cuda = kdf::launch(nst_finish_kernel<kGramBlock, true>, cfg, a);
    else
        r.cuda = kdf::launch(nst_finish_kernel<kGramBlock, false>, cfg, a);
    return r;
}

}  // namespace kdf::kernels
