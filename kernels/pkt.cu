// PKT (Passalis & Tefas, "Learning deep representations with probabilistic knowledge transfer";
// RepDistiller's PKT): Gram matrices accumulated in double, the rest fused into three kernels and one GEMM.
//
// Math. For one network with rows e_i (N x D), eps = 1e-7, n_i = ||e_i||:
//   x_i = e_i / (n_i + eps)   (a row whose norm is not finite becomes 0: the seed's NaN -> 0)
//   C = x x^T,  S = (C + 1) / 2,  r_i = sum_j S_ij,  s_ij = S_ij / r_i     (t_ij likewise for the teacher)
//   loss = w / N^2 * sum_ij t_ij log((t_ij + eps) / (s_ij + eps))
// Every entry comes from the raw Gram matrix G = e e^T: n_i = sqrt(G_ii) and C_ij = G_ij k_i k_j with
// k_i = 1 / (n_i + eps) (k_i = 0 for a non-finite norm, then C_ij = 0), so no normalised copy is written.
// 1 + C_ij cancels when rows are nearly anti-parallel (C near -1): the Gram entry's rounding, a few ulps of
// |e_i| |e_j|, becomes a large relative error of S_ij. For C_ij < 0 the similarity is therefore formed
// without the cancellation, from the identity (x_i = k_i e_i, c_i = 1 - |x_i|^2 = eps (2 n_i + eps) / (n_i + eps)^2
// in closed form):
//   1 + C_ij = (|x_i + x_j|^2 + c_i + c_j) / 2,   |x_i + x_j|^2 = sum_d (k_i e_id + k_j e_jd)^2
// a sum of squares (no cancellation), computed directly by a warp per pair. Non-negative cosines keep
// (1 + C) / 2 from G (no cancellation there); features after a ReLU have no negative cosine at all, so the
// direct sums cost nothing on real features and N^2 D / 2 at most.
//
// Gradient (student only; gamma = g * c * w / N^2 with g = grad_loss, c = grad_scale):
//   a_ij = dL/ds_ij = -gamma t_ij / (s_ij + eps)
//   B_ij = dL/dS_ij = (a_ij - sum_k a_ik s_ik) / r_i                 (through the row normalisation)
//   dL/dC = B / 2, and C = x x^T is symmetric in x: dL/dx_i = sum_j H_ij x_j with H = (B + B^T) / 2
//   through x_i = e_i k_i:  dL/de_i = k_i dL/dx_i - x_i (x_i . dL/dx_i) / n_i, and
//   x_i . dL/dx_i = sum_j H_ij C_ij =: q_i, an N x N quantity. Hence one GEMM on the raw rows:
//   dL/de = P e,   P_ij = k_i H_ij k_j - delta_ij k_i q_i / n_i.
//   A zero student row (n_i = 0): the seed's gradient is NaN (sqrt'(0) * 0); here P's row i is 0, so the
//   row gets a zero gradient. A row with a non-finite norm (an inf or NaN element): its loss terms are the
//   seed's (the row is masked to 0), its gradient row is NaN as the seed's, and it must not reach the other
//   rows: the GEMM's 0 * inf would be NaN in every row. So the GEMM reads e with such rows zeroed (written
//   by kernel 2), and P's row i is NaN.
//
// Fusion plan (per call): G_s = e_s e_s^T, G_t = e_t e_t^T accumulated in double (kdf::build_grams,
// common/gram_split.cuh: one kernel over every (tile, column slice) of both; D > 64 is split into column
// slices, added by a reduction kernel), then
//   kernel 0 (one block per row of either network, each pair once): S_s, S_t, with the direct sums above for C < 0.
//   kernel 1 (one block per row i): r_i of both networks (a row reduction), then s, t, the loss terms and,
//            with the gradient, a, sum_k a_ik s_ik (a second row reduction) and B's row i. The loss is
//            summed per block in row order and across blocks by kdf::grid_sum (same launch).
//   kernel 2 (gradient only, one block per row i): P's row i needs H_ij = (B_ij + B_ji) / 2, i.e. column i
//            of B, which other blocks of kernel 1 write: a grid-wide dependency, hence a second kernel. It also
//            copies row i of e_s into the masked copy (zeros for a row of non-finite norm).
//   GEMM grad_s = P masked(e_s) (beta = 1 when accumulating, so the GEMM itself adds into grad_s).
// Loss only: 3 kernels; with the gradient: 4 kernels + 1 GEMM; + the slice reduction for D > 64.
// Bytes moved (fp32): the Gram kernel and the GEMM read e_s twice and e_t once (4 N (2 D_s + D_t)) and write grad_s once
// (4 N D_s; read as well when accumulating); with the gradient kernel 2 reads e_s and writes its masked copy
// (4 N D_s each, workspace); the N x N matrices (G_s, G_t, B, P: 4 N^2 each) stay in L2
// for the N of distillation batches. FLOPs: N^2 (D_s + D_t) fp64 FMAs in the Grams, 2 N^2 D_s in the GEMM, O(N^2)
// elsewhere.
// Numerics: fp32, except the Grams, each entry summed in double and rounded once (an fp32 sum left 1 - C of
// rows with a large common offset 2x the seed's error); TF32 (opt-in) rounds the gradient GEMM's inputs to
// 10-bit mantissas. The cosines are G_ij k_i k_j instead of the seed's dot products of rounded x_i. The loss terms
// are second order in t - s (KL-like), so each row's sum is formed as sum_j [t log1p(u) - (t - s)] with
// u = (t - s) / (s + eps): the subtracted sum_j (t - s) is exactly 0 in exact arithmetic (rows sum to 1)
// and removing it keeps the first-order terms from cancelling in fp32 (weakly related embeddings, e.g.
// flattened 64x32x32 maps, have t and s within 1e-3 of each other). Likewise a_ij - sum_k a_ik s_ik uses
// t / (s + eps) = 1 + u - eps / (s + eps) without the 1 (sum_k s_ik = 1). The grid size depends only on N,
// so the results are bitwise reproducible for a given cuBLAS.
#include "pkt.h"

#include "common/device.cuh"
#include "common/gram_split.cuh"

namespace kdf::kernels {
namespace {

constexpr int kBlock = 128;
constexpr float kEps = 1e-7f;

// 1 / (n + eps) for the norm n = sqrt(g_ii); 0 when the norm is not finite (the seed's NaN -> 0 row).
__device__ __forceinline__ float inv_norm(float gii)
{
    const float n = sqrtf(gii);
    return n <= 3.402823466e38f ? 1.0f / (n + kEps) : 0.0f;  // false for inf and NaN
}

// The cosine entry C_ij from the Gram matrix; 0 when either row is a zero-masked (non-finite) row.
__device__ __forceinline__ float cosine(float gij, float ki, float kj)
{
    return (ki != 0.0f && kj != 0.0f) ? gij * ki * kj : 0.0f;
}

// Kernel 0: S = (1 + C) / 2 of both networks. Block (network, row i), a warp per column j >= i, writing S_ij and
// S_ji (each unordered pair once); the direct sum of a pair with a negative cosine is spread over the warp's
// lanes (coalesced) and added by a fixed butterfly.
__global__ void __launch_bounds__(kBlock) pkt_similarity_kernel(PKTArgs a)
{
    constexpr int kWarps = kBlock / 32;
    const int64_t N = a.rows;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int64_t item = blockIdx.x; item < 2 * N; item += gridDim.x) {
        const bool student = item < N;
        const int64_t i = student ? item : item - N;
        const float* G = student ? a.ws.gram_s : a.ws.gram_t;
        const float* e = student ? a.f_s : a.f_t;
        const int64_t ld = student ? a.ld_s : a.ld_t, dim = student ? a.dim_s : a.dim_t;
        float* S = student ? a.ws.sim_s : a.ws.sim_t;
        const float g_ii = G[i * N + i], k_i = inv_norm(g_ii);
        for (int64_t j = i + warp; j < N; j += kWarps) {
            const float g_jj = G[j * N + j], k_j = inv_norm(g_jj);
            const float c = cosine(G[i * N + j], k_i, k_j);
            float s = 0.5f * (c + 1.0f);
            if (c < 0.0f) {  // uniform over the warp
                const float* ei = e + i * ld;
                const float* ej = e + j * ld;
                float sq = 0.0f;
                for (int64_t d = lane; d < dim; d += 32) {
                    const float x = k_i * ei[d] + k_j * ej[d];
                    sq += x * x;
                }
                sq = warp_sum(sq);
                const auto defect = [](float gii) {  // c_i = 1 - |x_i|^2, exactly as a function of n_i
                    const float n = sqrtf(gii), d = n + kEps;
                    return kEps * (2.0f * n + kEps) / (d * d);
                };
                s = 0.25f * (sq + defect(g_ii) + defect(g_jj));
            }
            if (lane == 0) S[i * N + j] = S[j * N + i] = s;
        }
    }
}

__global__ void __launch_bounds__(kBlock) pkt_rows_kernel(PKTArgs a)
{
    using Reduce = cub::BlockReduce<float, kBlock>;
    __shared__ typename Reduce::TempStorage temp_a, temp_b;
    __shared__ float sh_rs, sh_rt, sh_m;

    const int64_t N = a.rows;
    const bool grad = a.grad_s != nullptr;
    const float inv_nn = 1.0f / (static_cast<float>(N) * static_cast<float>(N));
    const float gamma = grad ? (a.grad_loss ? *a.grad_loss : 1.0f) * a.grad_scale * a.weight * inv_nn : 0.0f;
    float block_loss = 0.0f;  // thread 0: this block's row terms, in row order

    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        auto sims = [&](int64_t j, float& ss, float& st) {
            ss = a.ws.sim_s[i * N + j];
            st = a.ws.sim_t[i * N + j];
        };
        // Pass 1: the row sums of S_s and S_t.
        float rs = 0.0f, rt = 0.0f;
        for (int64_t j = threadIdx.x; j < N; j += kBlock) {
            float ss, st;
            sims(j, ss, st);
            rs += ss;
            rt += st;
        }
        rs = Reduce(temp_a).Sum(rs);
        rt = Reduce(temp_b).Sum(rt);
        if (threadIdx.x == 0) sh_rs = rs, sh_rt = rt;
        __syncthreads();
        rs = sh_rs, rt = sh_rt;

        // Pass 2: probabilities, the loss terms, and sum_k a_ik s_ik.
        float row_loss = 0.0f, m = 0.0f;
        for (int64_t j = threadIdx.x; j < N; j += kBlock) {
            float ss, st;
            sims(j, ss, st);
            const float s = ss / rs, t = st / rt, u = (t - s) / (s + kEps);
            row_loss += t * log1pf(u) - (t - s);
            m += -gamma * (u - kEps / (s + kEps)) * s;
        }
        row_loss = Reduce(temp_a).Sum(row_loss);
        if (grad) m = Reduce(temp_b).Sum(m);
        if (threadIdx.x == 0) {
            block_loss += row_loss;
            sh_m = m;
        }
        __syncthreads();

        // Pass 3 (gradient): B_ij = (a_ij - m_i) / r_i.
        if (grad) {
            m = sh_m;
            for (int64_t j = threadIdx.x; j < N; j += kBlock) {
                float ss, st;
                sims(j, ss, st);
                const float s = ss / rs, t = st / rt, u = (t - s) / (s + kEps);
                a.ws.dsim[i * N + j] = (-gamma * (u - kEps / (s + kEps)) - m) / rs;
            }
        }
        __syncthreads();  // the next row reuses the shared values
    }

    if (a.loss == nullptr) return;
    const GridSumResult r = grid_sum<kBlock>(a.ws.sum, block_loss);
    if (r.last && threadIdx.x == 0) store(a.loss, a.weight * r.total * inv_nn, a.accumulate);
}

// P_ij = k_i H_ij k_j - delta_ij k_i q_i / n_i, H = (B + B^T) / 2, q_i = sum_j H_ij C_ij; written over G_t.
// The minimum-blocks hint keeps ptxas from targeting 32 registers on sm_80 (it spilled 8 bytes there).
__global__ void __launch_bounds__(kBlock, 4) pkt_coef_kernel(PKTArgs a)
{
    using Reduce = cub::BlockReduce<float, kBlock>;
    __shared__ typename Reduce::TempStorage temp;

    const int64_t N = a.rows;
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        const float* gs_row = a.ws.gram_s + i * N;
        const float* b_row = a.ws.dsim + i * N;
        float* p_row = a.ws.gram_t + i * N;
        const float g_ii = gs_row[i];
        const float k_i = inv_norm(g_ii);
        const bool finite = k_i != 0.0f;              // else an inf or NaN element: masked, NaN gradient
        const bool live = finite && g_ii > 0.0f;      // a zero row: zero gradient
        for (int64_t d = threadIdx.x; d < a.dim_s; d += kBlock)
            a.ws.masked_s[i * a.dim_s + d] = finite ? a.f_s[i * a.ld_s + d] : 0.0f;
        float q = 0.0f;
        for (int64_t j = threadIdx.x; j < N; j += kBlock) {
            const float k_j = inv_norm(a.ws.gram_s[j * (N + 1)]);
            const float h = 0.5f * (b_row[j] + a.ws.dsim[j * N + i]);
            q += h * cosine(gs_row[j], k_i, k_j);
            p_row[j] = live ? k_i * h * k_j : (finite ? 0.0f : NAN);
        }
        q = Reduce(temp).Sum(q);
        if (threadIdx.x == 0 && live) p_row[i] = k_i * (b_row[i] * k_i - q / sqrtf(g_ii));
        __syncthreads();
    }
}

}  // namespace

LaunchResult pkt_launch(const PKTArgs& a, cudaStream_t stream)
{
    LaunchResult r;
    const int n = static_cast<int>(a.rows);
    const bool grad = a.grad_s != nullptr;
    r.cublas = gemm_bind(a.cublas, stream, a.ws.cublas, a.allow_tf32);
    if (r.cublas != CUBLAS_STATUS_SUCCESS) return r;
    if ((r.cuda = build_grams(stream, a.rows, {a.f_s, a.ld_s, a.dim_s, a.ws.gram_s, a.ws.partials.s, 0},
                              {a.f_t, a.ld_t, a.dim_t, a.ws.gram_t, a.ws.partials.t, 0})))
        return r;

    const dim3 grid(static_cast<unsigned>(pkt_blocks(a.rows)));
    if (a.loss != nullptr)
        if ((r.cuda = a.ws.sum.prepare(stream)) != cudaSuccess) return r;
    const int64_t sim_blocks = 2 * a.rows < 65535 ? 2 * a.rows : 65535;
    if ((r.cuda = kdf::launch<pkt_similarity_kernel>({dim3(static_cast<unsigned>(sim_blocks)), dim3(kBlock), 0, stream}, a)))
        return r;
    if ((r.cuda = kdf::launch<pkt_rows_kernel>({grid, dim3(kBlock), 0, stream}, a)) != cudaSuccess) return r;
    if (!grad) return r;
    if ((r.cuda = kdf::launch<pkt_coef_kernel>({grid, dim3(kBlock), 0, stream}, a)) != cudaSuccess) return r;
    r.cublas = gemm_rm(a.cublas, false, false, n, static_cast<int>(a.dim_s), n, 1.0f, a.ws.gram_t, n, a.ws.masked_s,
                       static_cast<int>(a.dim_s), a.accumulate ? 1.0f : 0.0f, a.grad_s, static_cast<int>(a.ld_s));
    return r;
}

}  // namespace kdf::kernels
