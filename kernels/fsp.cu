// FSP (Yim et al., "A gift from knowledge distillation: fast optimization, network minimization and
// transfer learning"; RepDistiller's FSP): one pair of consecutive maps per call, strided-batched cuBLAS
// GEMMs around one difference kernel.
//
// Math. Per network, bot (N x C1 x H x W) and top (N x C2 x H' x W') are pooled to a common h x w (the larger
// map, see PoolPair; P = h*w) and viewed as C x P row-major matrices:
//   G[n] = top[n] bot[n]^T / P               (C2 x C1: G[n, c2, c1] = mean_hw top[n, c2] bot[n, c1])
//   D = G_s - G_t,  loss = w * sum D^2 / (N C1 C2)
// Gradient (g = grad_loss, c = grad_scale; the teacher is a constant), with K = g c w 2 / (N C1 C2 P_s):
//   dL/dtop_s[n] = K D[n] bot_s[n]            (C2 x P_s)
//   dL/dbot_s[n] = K D[n]^T top_s[n]          (C1 x P_s)
// then, for the pooled student map, the adjoint of the pooling (each input pixel gathers from the at most
// 2 x 2 windows that contain it).
//
// Fusion plan. The gradients need all of D, and D needs both GEMMs, so the chain is
// [pool] -> 2 GEMMs -> difference kernel -> 1-2 GEMMs -> [unpool]:
//   1. fsp_pool_kernel (only when a map is pooled): one block per plane of the pooled maps (student, then
//      teacher), written once into the workspace ("normalised copies": n x C x P). A map that is not pooled
//      goes to cuBLAS in place: its rows are its H x W planes, stride_c apart, samples stride_n apart, so
//      strided inputs need no copy.
//   2. GEMMs: D = top_s bot_s^T / P_s (beta 0), then D += -top_t bot_t^T / P_t (beta 1): G_s and G_t are
//      never stored separately.
//   3. fsp_diff_kernel: sum D^2 (kdf::grid_sum, blocks in order) and scale D by g in place (the host
//      constants of K go into the GEMMs' alpha).
//   4. GEMMs: one per requested gradient. A map that is not pooled gets its gradient straight from cuBLAS
//      (ldc = stride_c, beta = accumulate); the pooled map's gradient goes to the workspace (reusing the
//      pooled copy, after the other map's GEMM has read it) and
//   5. fsp_unpool_kernel writes it through the pooling's adjoint, once, with accumulate.
// No N x C2 x C1 x HW tensor (the seed's broadcast) exists.
//
// FLOPs: 2 N C1 C2 (P_s + P_t) for D, 2 N C1 C2 P_s per gradient. Bytes (fp32): each map read once by each
// GEMM that uses it (plus once by the pooling kernel), D (N C1 C2) written twice and read three times,
// gradients written once.
//
// Numerics: fp32 (TF32 in the GEMMs only when the handle allows it). D = G_s - G_t is formed inside the
// second GEMM's epilogue (beta = 1), as PyTorch's fp32 subtraction of two fp32 results.
// Determinism: grids depend only on the shapes; cuBLAS is deterministic for a fixed configuration; no
// float atomics.
#include "fsp.h"

#include "common/gram_pool.cuh"

namespace kdf::kernels {
namespace {

// A row-major batch of C x P matrices: a map used in place (ld = stride_c) or its pooled copy.
struct Mat {
    float* ptr;
    int ld;
    long long stride;
};

// Pooled planes: block b < n * s.pooled_c is a plane of the pooled student map, the rest the teacher's.
__global__ void __launch_bounds__(kGramBlock) fsp_pool_kernel(FSPArgs a)
{
    const FSPGeometry& g = a.geo;
    int64_t b = blockIdx.x;
    const bool student = b < g.n * g.s.pooled_c;
    if (!student) b -= g.n * g.s.pooled_c;
    const FSPSide& side = student ? g.s : g.t;
    const Map4d& m = student ? (side.pool.pool_a ? a.sb : a.st) : (side.pool.pool_a ? a.tb : a.tt);
    const float* src = student ? (side.pool.pool_a ? a.s_bot : a.s_top) : (side.pool.pool_a ? a.t_bot : a.t_top);
    const int64_t in = b / side.pooled_c, ic = b % side.pooled_c;
    const float* plane = src + m.offset(in, ic);
    float* out = (student ? a.ws.pooled_s : a.ws.pooled_t) + b * side.p;
    const int64_t h = side.pool.h, w = side.pool.w;
    for (int64_t o = threadIdx.x; o < side.p; o += kGramBlock) out[o] = gram::pool_at(plane, m.h, m.w, h, w, o / w, o % w);
}

__global__ void __launch_bounds__(kGramBlock) fsp_diff_kernel(FSPArgs a)
{
    using Reduce = cub::BlockReduce<float, kGramBlock>;
    __shared__ typename Reduce::TempStorage temp;
    const int64_t total = a.geo.n * a.geo.c1 * a.geo.c2;
    const bool scale = a.grad_loss != nullptr && (a.grad_s_bot != nullptr || a.grad_s_top != nullptr);
    const float g = scale ? *a.grad_loss : 1.0f;
    float sq = 0.0f;
    for (int64_t i = blockIdx.x * int64_t(kGramBlock) + threadIdx.x; i < total; i += int64_t(gridDim.x) * kGramBlock) {
        const float d = a.ws.diff[i];
        sq += d * d;
        if (scale) a.ws.diff[i] = d * g;
    }
    if (a.loss == nullptr) return;
    const GridSumResult r = grid_sum<kGramBlock>(a.ws.sum, Reduce(temp).Sum(sq));
    if (r.last && threadIdx.x == 0) store(a.loss, a.weight * r.total / static_cast<float>(total), a.accumulate);
}

// The gradient of the pooled student map (dense in pooled_s) through the pooling's adjoint: one block per plane.
__global__ void __launch_bounds__(kGramBlock) fsp_unpool_kernel(FSPArgs a)
{
    const FSPSide& side = a.geo.s;
    const bool bot = side.pool.pool_a;
    const Map4d& m = bot ? a.sb : a.st;
    float* grad = bot ? a.grad_s_bot : a.grad_s_top;
    const int64_t b = blockIdx.x;
    const int64_t in = b / side.pooled_c, ic = b % side.pooled_c;
    const float* dpool = a.ws.pooled_s + b * side.p;
    float* out = grad + m.offset(in, ic);
    for (int64_t i = threadIdx.x; i < m.h * m.w; i += kGramBlock)
        store(out + i, gram::unpool_at(dpool, m.h, m.w, side.pool.h, side.pool.w, i / m.w, i % m.w), a.accumulate);
}

Mat in_place(const float* p, const Map4d& m)
{
    return {const_cast<float*>(p), static_cast<int>(m.sc), static_cast<long long>(m.sn)};
}

Mat pooled(float* p, int64_t c, int64_t hw) { return {p, static_cast<int>(hw), static_cast<long long>(c * hw)}; }

}  // namespace

LaunchResult fsp_launch(const FSPArgs& a, cudaStream_t stream)
{
    LaunchResult r;
    const FSPGeometry& g = a.geo;
    if (a.loss)
        if ((r.cuda = a.ws.sum.prepare(stream))) return r;
    if (g.pool_blocks > 0)
        if ((r.cuda = kdf::launch<fsp_pool_kernel>({dim3(static_cast<unsigned>(g.pool_blocks)), dim3(kGramBlock), 0, stream}, a)))
            return r;

    const Mat sb = g.s.pool.pool_a ? pooled(a.ws.pooled_s, g.c1, g.s.p) : in_place(a.s_bot, a.sb);
    const Mat st = g.s.pool.pool_b ? pooled(a.ws.pooled_s, g.c2, g.s.p) : in_place(a.s_top, a.st);
    const Mat tb = g.t.pool.pool_a ? pooled(a.ws.pooled_t, g.c1, g.t.p) : in_place(a.t_bot, a.tb);
    const Mat tt = g.t.pool.pool_b ? pooled(a.ws.pooled_t, g.c2, g.t.p) : in_place(a.t_top, a.tt);
    const int c1 = static_cast<int>(g.c1), c2 = static_cast<int>(g.c2), batch = static_cast<int>(g.n);
    const int ps = static_cast<int>(g.s.p), pt = static_cast<int>(g.t.p);
    const long long sd = static_cast<long long>(g.c1 * g.c2);

    if ((r.cublas = gemm_bind(a.cublas, stream, a.ws.cublas, a.allow_tf32))) return r;
    // D = top_s bot_s^T / P_s - top_t bot_t^T / P_t.
    if ((r.cublas = gemm_rm_batched(a.cublas, false, true, c2, c1, ps, 1.0f / static_cast<float>(ps), st.ptr, st.ld,
                                    st.stride, sb.ptr, sb.ld, sb.stride, 0.0f, a.ws.diff, c1, sd, batch)))
        return r;
    if ((r.cublas = gemm_rm_batched(a.cublas, false, true, c2, c1, pt, -1.0f / static_cast<float>(pt), tt.ptr, tt.ld,
                                    tt.stride, tb.ptr, tb.ld, tb.stride, 1.0f, a.ws.diff, c1, sd, batch)))
        return r;
    if ((r.cuda = kdf::launch<fsp_diff_kernel>({dim3(static_cast<unsigned>(g.diff_blocks)), dim3(kGramBlock), 0, stream}, a)))
        return r;
    if (a.grad_s_bot == nullptr && a.grad_s_top == nullptr) return r;

    const float k = 2.0f * a.weight * a.grad_scale /
                    (static_cast<float>(g.n) * static_cast<float>(g.c1) * static_cast<float>(g.c2) * static_cast<float>(ps));
    const float beta_out = a.accumulate ? 1.0f : 0.0f;
    // The map that is not pooled first: its GEMM reads the pooled copy, which the other GEMM then overwrites.
    const auto grad_top = [&]() -> cublasStatus_t {  // C2 x P_s = K D bot_s
        const Mat out = g.s.pool.pool_b ? pooled(a.ws.pooled_s, g.c2, g.s.p) : in_place(a.grad_s_top, a.st);
        return gemm_rm_batched(a.cublas, false, false, c2, ps, c1, k, a.ws.diff, c1, sd, sb.ptr, sb.ld, sb.stride,
                               g.s.pool.pool_b ? 0.0f : beta_out, out.ptr, out.ld, out.stride, batch);
    };
    const auto grad_bot = [&]() -> cublasStatus_t {  // C1 x P_s = K D^T top_s
        const Mat out = g.s.pool.pool_a ? pooled(a.ws.pooled_s, g.c1, g.s.p) : in_place(a.grad_s_bot, a.sb);
        return gemm_rm_batched(a.cublas, true, false, c1, ps, c2, k, a.ws.diff, c1, sd, st.ptr, st.ld, st.stride,
                               g.s.pool.pool_a ? 0.0f : beta_out, out.ptr, out.ld, out.stride, batch);
    };
    const bool want_top = a.grad_s_top != nullptr, want_bot = a.grad_s_bot != nullptr;
    if (g.s.pool.pool_a) {
        if (want_top && (r.cublas = grad_top())) return r;
        if (want_bot && (r.cublas = grad_bot())) return r;
    } else {
        if (want_bot && (r.cublas = grad_bot())) return r;
        if (want_top && (r.cublas = grad_top())) return r;
    }
    const bool unpool = (g.s.pool.pool_a && want_bot) || (g.s.pool.pool_b && want_top);
    if (unpool)
        r.cuda = kdf::launch<fsp_unpool_kernel>({dim3(static_cast<unsigned>(g.unpool_blocks)), dim3(kGramBlock), 0, stream}, a);
    return r;
}

}  // namespace kdf::kernels
