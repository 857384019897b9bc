// CC (Peng et al., "Correlation Congruence for Knowledge Distillation"; RepDistiller's Correlation).
//
// Seed variant (default). f_s (N x D_s), f_t (N x D_t); G = f f^T, r = ||G||_F (no eps, as the seed),
// Q = G / r; with d = Q_t - Q_s and w the layer weight:
//   loss = w * sum_ij d_ij^2 / N^2
// Gradient (g = grad_loss, c = grad_scale, k = -2 g c w / N^2): P = dL/dQ_s = k d;
//   dL/dG = (P - Q_s <Q_s, P>_F) / r_s          (Jacobian of G / ||G||_F)
//   dL/df_s = (dG + dG^T) f_s,  dG + dG^T = k/r_s ((d + d^T) - (Q_s + Q_s^T) <Q_s, d>_F)
// Centring: with near-duplicate rows (or a large common offset) every G_ij is |m|^2 plus a small part, the
// Gram GEMM's accumulation error (a few ulps of |m|^2 per term) swamps the small parts, and d = Q_t - Q_s is a
// difference of nearly equal matrices: the loss lost ~4 digits (1.1e-4 relative error against 2.6e-6 for the
// seed in fp32 on 32 x 128 rows of one base + 1e-3 noise). So G is built as G_ij = G'_ij + (G'_in + G'_jn) + G'_nn
// from the Gram G' of [c; m] (c = f - m, m the mean row as an extra row n; common/centre.cuh): every term is
// summed relative to its own size and only the final sum rounds at |m|^2.
// Two whole-matrix statistics, each needed before the next step can start: r_s, r_t before any Q, and
// <Q_s, d>_F before any entry of dG. Without a grid-wide barrier each is a kernel boundary, hence
// (fusion plan, 5 kernels and 1 GEMM; loss only: 4 kernels; + the slice reduction for D > 64):
//   kernel 0 (kdf::centre_rows): [c; m] of f_s and f_t, dense, in the workspace.
//   Grams G'_s, G'_t ((n+1) x (n+1)) into the workspace, accumulated in double (kdf::centred_grams,
//   common/gram_split.cuh: one kernel over every (tile, column slice), above 64 columns a slice reduction).
//   kernel 1 (cc_norms): sum G_s^2 and sum G_t^2 (kdf::grid_sum each); the last blocks write r_s, r_t.
//   kernel 2 (cc_diff): d elementwise; sum d^2 (the loss) and <Q_s, d> (grid sums, last block writes).
//     The shortcut <Q_s, d> = -||d||^2 / 2 (both Q have unit norm) would drop kernel 2's second sum but
//     not the kernel; computing 2 - 2 <G_s, G_t> / (r_s r_t) in kernel 1 instead would save kernel 2 at the
//     price of catastrophic cancellation as the student approaches the teacher, so it is not done.
//   kernel 3 (cc_sym): S = dG + dG^T in place over G'_s's leading n x n block, one thread per pair {i, j}.
//   GEMM: grad_s = S f_s (+ grad_s with accumulate: beta = 1).
// FLOPs: N^2 (D_s + D_t) fp64 FMAs (the Grams' upper tiles) + 2 N^2 D_s; bytes: 4 (N+1) (D_s + D_t) + 4 N D_s
// read by the Gram kernel and the GEMM, 4 N D_s written, and
// about 9 x 4 N^2 for the kernels; the centring reads f twice and writes [c; m], 4 (N+1) (D_s + D_t) bytes.
// Workspace 2 (N+1)^2 + (N+1) (D_s + D_t) floats + the cuBLAS slice; no N x N x D tensor.
//
// Shipped variant (RepDistiller's distiller_zoo/CC.py). delta = |f_s - f_t| (N x D):
//   loss = w / (N - 1) * sum_{i < N-1} sum_d delta[i,d] delta[i+1,d]
//   dL/df_s[i,d] = g c w / (N - 1) * (delta[i-1,d] + delta[i+1,d]) * sign(f_s - f_t)[i,d] = -dL/df_t[i,d]
// (missing neighbours count 0; sign(0) = 0 as torch's abs backward; N = 1: loss 0/0 = NaN and zero
// gradients, as the shipped code). One kernel: each thread walks a chunk of kChunk rows of one column,
// keeping the previous, current and next delta in registers, so every element is read once (plus one
// halo row per chunk end), both gradients are written in the same pass, and the loss is summed by
// kdf::grid_sum. Bytes: 8 N D read (+ 2 halo rows per chunk) + 8 N D written (both gradients).
#include "cc.h"

#include "common/centre.cuh"
#include "common/gram_pair.cuh"

namespace kdf::kernels {
namespace {

constexpr int kBlock = 256;
constexpr int64_t kChunk = 32;  // rows per thread in the shipped variant

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) cc_norms_kernel(CCArgs a)
{
    using Reduce = cub::BlockReduce<float, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    const int64_t total = a.n * a.n;
    float ss = 0.0f, tt = 0.0f;
    for (int64_t k = blockIdx.x * int64_t(BLOCK) + threadIdx.x; k < total; k += int64_t(gridDim.x) * BLOCK) {
        const float s = static_cast<float>(gram_of_centred(a.ws.gram_s, a.n, k / a.n, k % a.n));
        const float t = static_cast<float>(gram_of_centred(a.ws.gram_t, a.n, k / a.n, k % a.n));
        ss += s * s;
        tt += t * t;
    }
    ss = Reduce(temp).Sum(ss);
    __syncthreads();
    tt = Reduce(temp).Sum(tt);
    const GridSumResult rs = grid_sum<BLOCK>(a.ws.sum[0], ss);
    if (rs.last && threadIdx.x == 0) a.ws.stats[0] = sqrtf(rs.total);
    __syncthreads();  // grid_sum's shared state is reused by the second sum
    const GridSumResult rt = grid_sum<BLOCK>(a.ws.sum[1], tt);
    if (rt.last && threadIdx.x == 0) a.ws.stats[1] = sqrtf(rt.total);
}

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) cc_diff_kernel(CCArgs a, bool want_grad)
{
    using Reduce = cub::BlockReduce<float, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    const int64_t total = a.n * a.n;
    const float rs = a.ws.stats[0], rt = a.ws.stats[1];
    float sq = 0.0f, qd = 0.0f;
    for (int64_t k = blockIdx.x * int64_t(BLOCK) + threadIdx.x; k < total; k += int64_t(gridDim.x) * BLOCK) {
        // In double: Q_t - Q_s of near-equal rows is a small difference of entries near 1/N.
        const double qs64 = gram_of_centred(a.ws.gram_s, a.n, k / a.n, k % a.n) / rs;
        const float qs = static_cast<float>(qs64);
        const float d = static_cast<float>(gram_of_centred(a.ws.gram_t, a.n, k / a.n, k % a.n) / rt - qs64);
        sq += d * d;
        qd += qs * d;
    }
    if (a.loss) {
        sq = Reduce(temp).Sum(sq);
        const GridSumResult r = grid_sum<BLOCK>(a.ws.sum[0], sq);
        const float nn = static_cast<float>(a.n) * static_cast<float>(a.n);
        if (r.last && threadIdx.x == 0) store(a.loss, a.weight * r.total / nn, a.accumulate);
        __syncthreads();
    }
    if (want_grad) {
        qd = Reduce(temp).Sum(qd);
        const GridSumResult r = grid_sum<BLOCK>(a.ws.sum[1], qd);
        if (r.last && threadIdx.x == 0) a.ws.stats[2] = r.total;
    }
}

// S = dG + dG^T = k / r_s ((d + d^T) - (Q_s + Q_s^T) <Q_s, d>), written over G_s.
template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) cc_sym_kernel(CCArgs a)
{
    const int64_t n = a.n;
    const float rs = a.ws.stats[0], rt = a.ws.stats[1], qd = a.ws.stats[2];
    const float g = a.grad_loss ? *a.grad_loss : 1.0f;
    const float k = -2.0f * g * a.grad_scale * a.weight / (static_cast<float>(n) * static_cast<float>(n));
    float* gs = a.ws.gram_s;
    const float* gt = a.ws.gram_t;
    for_each_upper_pair<BLOCK>(n, [=](int64_t i, int64_t j) {
        // In double, as cc_diff: S is a small difference of terms near 1/N for near-equal rows.
        const double qs_ij = gram_of_centred(gs, n, i, j) / rs, qs_ji = gram_of_centred(gs, n, j, i) / rs;
        const double d_ij = gram_of_centred(gt, n, i, j) / rt - qs_ij, d_ji = gram_of_centred(gt, n, j, i) / rt - qs_ji;
        const float s = static_cast<float>(k * ((d_ij + d_ji) - (qs_ij + qs_ji) * qd) / rs);
        gs[i * (n + 1) + j] = s;  // row n and column n (the mean's terms) stay for the other pairs
        gs[j * (n + 1) + i] = s;
    });
}

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) cc_shipped_kernel(CCArgs a)
{
    using Reduce = cub::BlockReduce<float, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    const int64_t n = a.n, dim = a.ds;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    const float g = a.grad_loss ? *a.grad_loss : 1.0f;
    const float coef = n > 1 ? g * a.grad_scale * a.weight / static_cast<float>(n - 1) : 0.0f;
    const bool accumulate = a.accumulate;
    float sum = 0.0f;
    for (int64_t k = blockIdx.x * int64_t(BLOCK) + threadIdx.x; k < chunks * dim; k += int64_t(gridDim.x) * BLOCK) {
        const int64_t chunk = k / dim, col = k % dim;
        const int64_t i0 = chunk * kChunk, i1 = i0 + kChunk < n ? i0 + kChunk : n;
        auto diff = [&](int64_t i) { return a.f_s[i * a.ld_s + col] - a.f_t[i * a.ld_t + col]; };
        float prev = i0 > 0 ? fabsf(diff(i0 - 1)) : 0.0f;
        float cur = diff(i0);  // signed; |cur| is delta
        for (int64_t i = i0; i < i1; ++i) {
            const float next = i + 1 < n ? diff(i + 1) : 0.0f;
            const float dc = fabsf(cur), dn = fabsf(next);
            sum += dc * dn;  // 0 for the last row (no successor)
            if (a.grad_s || a.grad_t) {
                const float sgn = cur > 0.0f ? 1.0f : (cur < 0.0f ? -1.0f : 0.0f);
                const float v = coef * (prev + dn) * sgn;
                if (a.grad_s) store(a.grad_s + i * a.ld_s + col, v, accumulate);
                if (a.grad_t) store(a.grad_t + i * a.ld_t + col, -v, accumulate);
            }
            prev = dc;
            cur = next;
        }
    }
    if (a.loss == nullptr) return;
    const GridSumResult r = grid_sum<BLOCK>(a.sum, Reduce(temp).Sum(sum));
    // N = 1: 0 / 0 = NaN, the mean of the shipped code's empty tensor.
    if (r.last && threadIdx.x == 0) store(a.loss, a.weight * (r.total / static_cast<float>(n - 1)), accumulate);
}

}  // namespace

int64_t cc_seed_blocks(int64_t n) { return square_blocks(n, kBlock); }

int64_t cc_shipped_blocks(int64_t n, int64_t d)
{
    const int64_t items = (n + kChunk - 1) / kChunk * d;
    const int64_t b = (items + kBlock - 1) / kBlock;
    return b < 1024 ? b : 1024;
}

size_t cc_workspace_bytes(int64_t n, int64_t ds, int64_t dt, bool shipped)
{
    if (shipped) return static_cast<size_t>(GridSum::bytes(cc_shipped_blocks(n, ds)));
    return static_cast<size_t>(CentredGramWorkspace::bytes(n, ds, dt, cc_seed_blocks(n)));
}

LaunchResult cc_launch(const CCArgs& a, cudaStream_t stream)
{
    LaunchResult r;
    if (a.shipped) {
        if (a.loss)
            if ((r.cuda = a.sum.prepare(stream))) return r;
        const LaunchConfig cfg{dim3(static_cast<unsigned>(cc_shipped_blocks(a.n, a.ds))), dim3(kBlock), 0, stream};
        r.cuda = kdf::launch<cc_shipped_kernel<kBlock>>(cfg, a);
        return r;
    }
    const int n = static_cast<int>(a.n);
    const bool want_grad = a.grad_s != nullptr;
    if ((r.cublas = gemm_bind(a.cublas, stream, a.ws.cublas, a.allow_tf32))) return r;
    if ((r.cuda = centred_grams(stream, a.n, {a.f_s, a.ld_s, a.ds, a.ws.centred_s}, {a.f_t, a.ld_t, a.dt, a.ws.centred_t},
                                a.ws.gram_s, a.ws.gram_t, a.ws.partials)))
        return r;
    if ((r.cuda = a.ws.prepare(stream))) return r;
    const LaunchConfig cfg{dim3(static_cast<unsigned>(cc_seed_blocks(a.n))), dim3(kBlock), 0, stream};
    if ((r.cuda = kdf::launch<cc_norms_kernel<kBlock>>(cfg, a))) return r;
    if ((r.cuda = kdf::launch<cc_diff_kernel<kBlock>>(cfg, a, want_grad))) return r;
    if (!want_grad) return r;
    if ((r.cuda = kdf::launch<cc_sym_kernel<kBlock>>(cfg, a))) return r;
    r.cublas = gemm_rm(a.cublas, false, false, n, static_cast<int>(a.ds), n, 1.0f, a.ws.gram_s, n + 1, a.f_s,
                       static_cast<int>(a.ld_s), a.accumulate ? 1.0f : 0.0f, a.grad_s, static_cast<int>(a.ld_s));
    return r;
}

}  // namespace kdf::kernels
