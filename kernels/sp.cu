// SP (Tung & Mori, "Similarity-Preserving Knowledge Distillation"; RepDistiller's Similarity).
//
// Math. f_s (N x D_s), f_t (N x D_t); per network G = f f^T (N x N) and Q = G with every row divided by
// r_i = max(||G_i||_2, 1e-12) (F.normalize over dim 1). With d = Q_t - Q_s and w the layer weight:
//   loss = w * sum_ij d_ij^2 / N^2
// Gradient (g = grad_loss, c = grad_scale, k = -2 g c w / N^2):
//   P = dL/dQ_s = k d
//   dL/dG_i = (P_i - Q_i <Q_i, P_i>) / r_i     for a row with ||G_i|| > 1e-12 (normalisation Jacobian)
//           = P_i / 1e-12                      otherwise (the clamp is constant there, as in PyTorch)
//   dL/df_s = (dG + dG^T) f_s                  (G = f f^T, so dG contributes through both factors)
// <Q_i, P_i> = k <Q_i, d_i> is a row statistic that must be known before any dL/dG_ij of the row.
//
// Centring: with near-duplicate rows (or a large common offset) every G_ij is |m|^2 plus a small part, and
// d = Q_t - Q_s is a difference of nearly equal rows: the Gram's rounding at |m|^2 cost the loss
// ~4.6x the seed's fp32 error on 32 x 256 near-duplicate rows. So, as CC's seed variant, G_ij =
// G'_ij + (G'_in + G'_jn) + G'_nn from the Gram G' of [c; m] (c = f - m, m the mean row as row n; common/centre.cuh).
// Fusion plan (4 kernels, 1 GEMM; loss only: 3 kernels; + the slice reduction for D > 64):
//   kernel 0 (kdf::centre_rows): [c; m] of f_s and f_t, dense, in the workspace.
//   Grams G'_s, G'_t ((N+1) x (N+1)) into the workspace, accumulated in double (kdf::centred_grams,
//   common/gram_split.cuh: one kernel over every (tile, column slice) of both, and above 64 columns a
//   slice-reduction kernel).
//   kernel 1 (sp_rows): one block per row i: both row norms (block reductions), then d_i, the row's
//     sum d^2 (loss, summed in row order per block and by kdf::grid_sum across blocks) and <Q_i, d_i>,
//     then dL/dG_i written over G_s row i (each thread overwrites only the entries it read).
//   kernel 2 (sp_symmetrise): S = dG + dG^T in place, one thread per pair {i, j}. S_ij needs row j's
//     statistics, which only the block of row j knows: that dependency is the second kernel (the
//     alternative, two accumulated GEMMs dG f_s + dG^T f_s, costs 2 N^2 D_s FLOPs more than this N^2 pass).
//   GEMM: grad_s = S f_s (+ grad_s with accumulate: beta = 1; fp32, or TF32 per handle).
// No tensor of size N x N x D or N^3; workspace 2 (N+1)^2 + (N+1) (D_s + D_t) floats + the cuBLAS slice.
// FLOPs: N^2 (D_s + D_t) fp64 FMAs for the Gram matrices (upper tiles), 2 N^2 D_s for the gradient, O(N^2) elsewhere.
// Bytes (fp32): the Gram kernel reads the centred copies (4 (N+1) (D_s + D_t)), the GEMM f_s, writing grad_s (4 N D_s);
// the two kernels move about 6 x 4 N^2 bytes; the centring reads f twice and writes [c; m], 4 (N+1) (D_s + D_t).
// Numerics: the Grams accumulated in double and rounded once; G and the normalised difference d in double from the
// centred Grams' terms; the gradient GEMM in fp32; row sums of
// at most N terms per thread-strided slice, tree-reduced.
#include "sp.h"

#include "common/centre.cuh"
#include "common/gram_pair.cuh"

namespace kdf::kernels {
namespace {

constexpr int kRowBlock = 128;
constexpr int kPairBlock = 256;
constexpr float kNormEps = 1e-12f;

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) sp_rows_kernel(SPArgs a, bool want_grad)
{
    using Reduce = cub::BlockReduce<float, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    __shared__ float row_stat[3];

    const int64_t n = a.n;
    const float nn = static_cast<float>(n) * static_cast<float>(n);
    const float g = a.grad_loss ? *a.grad_loss : 1.0f;
    const float k = -2.0f * g * a.grad_scale * a.weight / nn;
    float block_loss = 0.0f;  // thread 0: sum of the block's rows' sum d^2, in row order

    const int64_t n1 = n + 1;  // row stride of the Grams of [c; m]
    for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
        float ss = 0.0f, tt = 0.0f;
        for (int64_t j = threadIdx.x; j < n; j += BLOCK) {
            const float s = static_cast<float>(gram_of_centred(a.ws.gram_s, n, row, j));
            const float t = static_cast<float>(gram_of_centred(a.ws.gram_t, n, row, j));
            ss += s * s;
            tt += t * t;
        }
        ss = Reduce(temp).Sum(ss);
        __syncthreads();
        tt = Reduce(temp).Sum(tt);
        if (threadIdx.x == 0) {
            row_stat[0] = sqrtf(ss);
            row_stat[1] = sqrtf(tt);
        }
        __syncthreads();
        const float norm_s = row_stat[0];
        const float rs = nan_max(norm_s, kNormEps), rt = nan_max(row_stat[1], kNormEps);

        // In double, as CC's: Q_t - Q_s of near-equal rows is a small difference of entries near 1 / sqrt(N).
        float sq = 0.0f, qd = 0.0f;
        for (int64_t j = threadIdx.x; j < n; j += BLOCK) {
            const double qs = gram_of_centred(a.ws.gram_s, n, row, j) / rs;
            const float d = static_cast<float>(gram_of_centred(a.ws.gram_t, n, row, j) / rt - qs);
            sq += d * d;
            qd += static_cast<float>(qs) * d;
        }
        sq = Reduce(temp).Sum(sq);
        __syncthreads();
        if (want_grad) qd = Reduce(temp).Sum(qd);
        if (threadIdx.x == 0) {
            block_loss += sq;
            row_stat[2] = qd;
        }
        __syncthreads();
        if (want_grad) {
            // dL/dG_ij = k (d_ij - Q_ij <Q_i, d_i>) / r_i; a clamped row has no normalisation Jacobian. Written over
            // G'_s row i, whose entry j only this thread reads; row n and column n (the mean's terms) stay.
            const float proj = norm_s > kNormEps ? row_stat[2] : 0.0f;
            for (int64_t j = threadIdx.x; j < n; j += BLOCK) {
                const double qs = gram_of_centred(a.ws.gram_s, n, row, j) / rs;
                const double d = gram_of_centred(a.ws.gram_t, n, row, j) / rt - qs;
                a.ws.gram_s[row * n1 + j] = static_cast<float>(k * (d - qs * proj) / rs);
            }
        }
        __syncthreads();  // row_stat and the reduction storage are reused by the next row
    }

    if (a.loss == nullptr) return;
    const GridSumResult r = grid_sum<BLOCK>(a.ws.sum[0], block_loss);
    if (r.last && threadIdx.x == 0) store(a.loss, a.weight * r.total / nn, a.accumulate);
}

// S = dG + dG^T in place over the leading N x N block of m (rows ld apart).
template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) sp_symmetrise_kernel(float* m, int64_t n, int64_t ld)
{
    for_each_upper_pair<BLOCK>(n, [m, ld](int64_t i, int64_t j) {
        const float s = m[i * ld + j] + m[j * ld + i];
        m[i * ld + j] = s;
        m[j * ld + i] = s;
    });
}

}  // namespace

int64_t sp_blocks(int64_t n) { return n < 65535 ? n : 65535; }

LaunchResult sp_launch(const SPArgs& a, cudaStream_t stream)
{
    LaunchResult r;
    const int n = static_cast<int>(a.n);
    const bool want_grad = a.grad_s != nullptr;
    if ((r.cublas = gemm_bind(a.cublas, stream, a.ws.cublas, a.allow_tf32))) return r;
    if ((r.cuda = centred_grams(stream, a.n, {a.f_s, a.ld_s, a.ds, a.ws.centred_s}, {a.f_t, a.ld_t, a.dt, a.ws.centred_t},
                                a.ws.gram_s, a.ws.gram_t, a.ws.partials)))
        return r;
    if (a.loss)
        if ((r.cuda = a.ws.prepare(stream))) return r;
    const LaunchConfig rows{dim3(static_cast<unsigned>(sp_blocks(a.n))), dim3(kRowBlock), 0, stream};
    if ((r.cuda = kdf::launch<sp_rows_kernel<kRowBlock>>(rows, a, want_grad))) return r;
    if (!want_grad) return r;
    const LaunchConfig pairs{dim3(static_cast<unsigned>(square_blocks(a.n, kPairBlock))), dim3(kPairBlock), 0, stream};
    if ((r.cuda = kdf::launch<sp_symmetrise_kernel<kPairBlock>>(pairs, a.ws.gram_s, a.n, a.n + 1))) return r;
    r.cublas = gemm_rm(a.cublas, false, false, n, static_cast<int>(a.ds), n, 1.0f, a.ws.gram_s, n + 1, a.f_s,
                       static_cast<int>(a.ld_s), a.accumulate ? 1.0f : 0.0f, a.grad_s, static_cast<int>(a.ld_s));
    return r;
}

}  // namespace kdf::kernels
