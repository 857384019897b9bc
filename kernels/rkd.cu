// RKD (Park et al., "Relational knowledge distillation"; RepDistiller's RKDLoss): Gram matrices accumulated in
// double, the distance and angle terms from them in three kernels, the gradient back through G with one GEMM.
//
// Math. Per network, G = e e^T (N x N), q_ij = G_ii + G_jj - 2 G_ij (= |e_i - e_j|^2):
//   d_ij = sqrt(max(q_ij, 1e-12)) (i != j), d_ii = 0;  mu = sum_{i != j} d_ij / (N (N - 1))
//        (the mean over d > 0: the clamp makes every off-diagonal entry >= 1e-6 > 0);
//   L_d = sum_ij huber(d^s_ij / mu_s - d^t_ij / mu_t) / N^2         (huber = smooth_l1, beta 1)
//   v_ijk = <e_j - e_i, e_k - e_i> = G_jk - G_ij - G_ik + G_ii, n_ij = sqrt(max(q_ij, 0)),
//   a_ijk = v_ijk / (max(n_ij, 1e-12) max(n_ik, 1e-12)), 0 when j = i or k = i (zero difference vectors);
//   L_a = sum_ijk huber(a^s_ijk - a^t_ijk) / N^3;   loss = w (w_d L_d + w_a L_a).
//   N = 1: no positive distance; L_d := 0 (the seed's NaN; the reference's empty_mean="zero").
//
// Gradient (student; g = grad_loss, c = grad_scale; h' = clamp(x, -1, 1) is huber's derivative):
//   distance: hd_ij = g c w w_d h'(y_ij) / N^2, y_ij = d^s_ij / mu_s - d^t_ij / mu_t; the mean is NOT
//     detached: dL/dd_ij = hd_ij / mu_s - rho / (mu_s^2 N (N - 1)), rho = sum_kl hd_kl d_kl;
//     dL/dq_ij = dL/dd_ij / (2 d_ij) where q_ij >= 1e-12 (the clamp cuts it below).
//   angle: ha_ijk = g c w w_a h'(a^s - a^t) / N^3; gamma_ijk = ha_ijk / (den_ij den_ik) (through v) and,
//     through the norms (where n_ij >= 1e-12), dL/dq_ij += -T_ij / n_ij^2 with T_ij = sum_k ha_ijk a_ijk
//     (a is symmetric in j, k, so both positions of the pair (i, j) give the same sum).
//   Chain to G: with Delta_ij = dL/dq_ij (both terms), Gamma_ij = sum_k gamma_ijk and
//     Psi_jk = sum_i gamma_ijk (the only N^3 contraction over the anchor):
//     dG_jk = Psi_jk - 2 Gamma_jk - 2 Delta_jk (j != k),
//     dG_ii = Psi_ii + sum_j Gamma_ij + sum_j Delta_ij + sum_j Delta_ji,
//   and G = e e^T gives dL/de = M e with M = dG + dG^T: one GEMM.
//   Zero differences (a row equal to the anchor, |e_j - e_i| < 1e-12): the seed's F.normalize divides by
//   1e-12 and gives the other rows' angle gradients of order 1e12 (e_k - e_i) / |e_k - e_i|, which the Gram
//   form could only produce through cancellations of 1e12-sized terms. kdfRKD holds u_ij = 0 constant there
//   (gamma_ijk = 0 when n_ij or n_ik < 1e-12): the reference's degenerate_grad="zero". Forward values are
//   the seed's (those angles are 0 either way).
//
// Centring. Distances and angles depend only on differences of rows, so each network's embeddings are
//   centred first, c = e - mean row (the same vector subtracted from every row, so differences are unchanged,
//   and exactly so for rows within a factor 2 of the mean: Sterbenz), and G = c c^T. The Gram form's
//   |c_i|^2 + |c_j|^2 - 2 c_i.c_j then cancels only relative to the batch's spread, not to the rows' norms:
//   near-duplicate embeddings (distances 1e-3 of the norms, as at initialisation) or a large common offset
//   no longer lose their digits (measured in docs/accuracy.md). dL/de = M c (M's rows sum to 0, so the mean's
//   gradient is 0, and M c avoids M e's cancellation against the offset).
//
// Fusion plan (the N^3 angle values exist only in registers):
//   kernel 0 (kdf::centre_rows, common/centre.cuh; a thread per column of e_s and e_t): c = e - mean row.
//   G_s = c_s c_s^T, G_t = c_t c_t^T, accumulated in double (kdf::build_grams, common/gram_split.cuh: one kernel
//     over every (tile, column slice) of both, above 64 columns a slice-reduction kernel).
//   kernel 1 (block per row r, thread per column c): the distance row sums of both networks; for anchor
//     r, loop over k: the angle loss terms, Gamma_rc and T_rc; and Psi_rc, looping over the anchors.
//   kernel 2 (block per row): mu_s, mu_t need every row's distance sum (a grid-wide dependency, hence a
//     kernel boundary): the distance loss terms and rho's row partials; the loss through kdf::grid_sum.
//   kernel 3 (gradient only, block per row): needs rho (grid-wide again): Delta, and M's row r (which
//     reads column r of Gamma, Psi, T, written by other blocks of kernel 1).
//   GEMM grad_s = M c_s (beta = 1 when accumulating).
// Loss only: 4 kernels; with the gradient: 5 kernels + 1 GEMM; + the slice reduction for D > 64.
// FLOPs: N^2 (D_s + D_t) fp64 FMAs in the Grams, 2 N^2 D_s in the GEMM; ~25 N^3 per network evaluation in kernel 1 (the anchor loop and
// the Psi loop each evaluate both networks' angles: about 100 N^3 in all), O(N^2) elsewhere.
// Bytes (fp32): e read twice by kernel 0 (the second pass mostly from cache) and c written, 4 N (D_s + D_t)
// each; c read by the Gram kernel and the GEMM, 4 N (2 D_s + D_t); 4 N D_s written; N x N matrices (6 x 4 N^2)
// L2-resident.
// Memory O(N^2 + N (D_s + D_t)).
// Numerics: fp32, except the Grams: each entry is summed in double and rounded once (an fp32 sum of D products
// left the angles of anti-parallel rows 2.5x the seed's error: the seed forms differences before its products).
// The Gram form subtracts G entries: differences of rows that are close relative to their distance from the
// batch mean lose digits (relative error ~ 1e-7 |c|^2 / |e_i - e_j|^2); rows that are exactly equal give
// exactly 0 (both entries are summed in the same order), as in the seed, and the angle of a difference with
// itself is exactly 1. Grid size fixed by N, fixed summation orders: bitwise reproducible for a given cuBLAS.
#include "rkd.h"

#include "common/centre.cuh"
#include "common/device.cuh"
#include "common/gram_split.cuh"

namespace kdf::kernels {
namespace {

constexpr int kBlock = 128;

__device__ __forceinline__ float huber(float x)
{
    const float ax = fabsf(x);
    return ax < 1.0f ? 0.5f * x * x : ax - 0.5f;
}
// clamp(x, -1, 1), keeping a NaN x NaN as torch.clamp does (fminf / fmaxf would return a bound).
__device__ __forceinline__ float huber_grad(float x) { return x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x); }

// Views of one network's Gram matrix.
struct Gram {
    const float* g;
    int64_t n;
    __device__ __forceinline__ float at(int64_t i, int64_t j) const { return g[i * n + j]; }
    // |e_i - e_j|^2 from G (may round below 0)
    __device__ __forceinline__ float sq(int64_t i, int64_t j) const { return at(i, i) + at(j, j) - 2.0f * at(i, j); }
    // the seed's pdist entry (i != j)
    __device__ __forceinline__ float dist(int64_t i, int64_t j) const { return sqrtf(nan_max(sq(i, j), 1e-12f)); }
    // |e_j - e_i| (F.normalize divides by max(|e_j - e_i|, 1e-12))
    __device__ __forceinline__ float norm(int64_t i, int64_t j) const { return sqrtf(nan_max(sq(i, j), 0.0f)); }
    // angle a_ajk = <u_aj, u_ak>; 0 when j or k is the anchor. Returns in `inv` 1 / (den_aj den_ak) when both
    // differences are >= 1e-12 (the gradient flows through v), else 0 (a zero difference: u is held at 0).
    // v = (G_jk - G_ak) - (G_aj - G_aa): grouped so that a row equal to the anchor gives exactly 0; j = k gives 1.
    __device__ __forceinline__ float angle(int64_t a, int64_t j, int64_t k, float& inv) const
    {
        const float nj = norm(a, j), nk = norm(a, k);
        const float dd = nan_max(nj, 1e-12f) * nan_max(nk, 1e-12f);
        inv = (nj >= 1e-12f && nk >= 1e-12f) ? 1.0f / dd : 0.0f;
        if (j == a || k == a) return 0.0f;
        const float v = ((at(j, k) - at(a, k)) - (at(a, j) - at(a, a))) / dd;
        return j != k ? v : (nj >= 1e-12f ? 1.0f : 0.0f);  // <u, u> of a unit vector: exactly 1, in both networks
    }
};

__device__ __forceinline__ float upstream(const RKDArgs& a) { return (a.grad_loss ? *a.grad_loss : 1.0f) * a.grad_scale; }

// Kernel 1: distance row sums, angle terms with anchor r (loss, Gamma, T), Psi's row r.
__global__ void __launch_bounds__(kBlock) rkd_angle_kernel(RKDArgs a)
{
    using Reduce = cub::BlockReduce<float, kBlock>;
    __shared__ typename Reduce::TempStorage t1, t2, t3;
    const int64_t N = a.rows;
    const Gram S{a.ws.gram_s, N}, T{a.ws.gram_t, N};
    const bool grad = a.grad_s != nullptr;
    const float nf = static_cast<float>(N);
    const float ca = grad ? upstream(a) * a.weight * a.w_a / (nf * nf * nf) : 0.0f;

    for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
        float ds = 0.0f, dt = 0.0f, la = 0.0f;
        for (int64_t c = threadIdx.x; c < N; c += kBlock) {
            if (c == r) {
                if (grad) a.ws.gam[r * N + c] = 0.0f, a.ws.tee[r * N + c] = 0.0f;
            } else {
                ds += S.dist(r, c);
                dt += T.dist(r, c);
                float gam = 0.0f, tee = 0.0f;
                for (int64_t k = 0; k < N; ++k) {
                    if (k == r) continue;
                    float dds, ddt;
                    const float as = S.angle(r, c, k, dds), at = T.angle(r, c, k, ddt);
                    la += huber(as - at);
                    if (grad) {
                        const float h = ca * huber_grad(as - at);
                        gam += h * dds;
                        tee += h * as;
                    }
                }
                if (grad) a.ws.gam[r * N + c] = gam, a.ws.tee[r * N + c] = tee;
            }
            if (grad) {  // Psi_rc = sum over anchors x != r, c of gamma_xrc
                float psi = 0.0f;
                for (int64_t x = 0; x < N; ++x) {
                    if (x == r || x == c) continue;
                    float dds, ddt;
                    const float as = S.angle(x, r, c, dds), at = T.angle(x, r, c, ddt);
                    psi += ca * huber_grad(as - at) * dds;
                }
                a.ws.psi[r * N + c] = psi;
            }
        }
        ds = Reduce(t1).Sum(ds);
        dt = Reduce(t2).Sum(dt);
        la = Reduce(t3).Sum(la);
        if (threadIdx.x == 0) a.ws.dsum_s[r] = ds, a.ws.dsum_t[r] = dt, a.ws.angle[r] = la;
        __syncthreads();
    }
}

// The means of the positive distances (fixed order), 0 for N = 1 (no positive distance).
__device__ __forceinline__ void means(const RKDArgs& a, float& mu_s, float& mu_t)
{
    const int64_t N = a.rows;
    float ss = 0.0f, st = 0.0f;
    for (int64_t i = 0; i < N; ++i) ss += a.ws.dsum_s[i], st += a.ws.dsum_t[i];
    const float pairs = static_cast<float>(N) * static_cast<float>(N - 1);
    mu_s = N > 1 ? ss / pairs : 0.0f;
    mu_t = N > 1 ? st / pairs : 0.0f;
}

// Kernel 2: distance loss terms and rho's row partials; the loss.
__global__ void __launch_bounds__(kBlock) rkd_distance_kernel(RKDArgs a)
{
    using Reduce = cub::BlockReduce<float, kBlock>;
    __shared__ typename Reduce::TempStorage t1, t2;
    __shared__ float sh_mu_s, sh_mu_t;
    const int64_t N = a.rows;
    const Gram S{a.ws.gram_s, N}, T{a.ws.gram_t, N};
    const bool grad = a.grad_s != nullptr;
    const float nf = static_cast<float>(N);
    const float cd = grad ? upstream(a) * a.weight * a.w_d / (nf * nf) : 0.0f;
    if (threadIdx.x == 0) means(a, sh_mu_s, sh_mu_t);
    __syncthreads();
    const float mu_s = sh_mu_s, mu_t = sh_mu_t;

    float block_loss = 0.0f;  // thread 0: this block's rows, in row order
    for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
        float ld = 0.0f, rho = 0.0f;
        if (N > 1)
            for (int64_t c = threadIdx.x; c < N; c += kBlock) {
                if (c == r) continue;
                const float d = S.dist(r, c), y = d / mu_s - T.dist(r, c) / mu_t;
                ld += huber(y);
                rho += cd * huber_grad(y) * d;
            }
        ld = Reduce(t1).Sum(ld);
        if (grad) rho = Reduce(t2).Sum(rho);
        if (threadIdx.x == 0) {
            if (grad) a.ws.rho[r] = rho;
            block_loss += a.weight * (a.w_d * ld / (nf * nf) + a.w_a * a.ws.angle[r] / (nf * nf * nf));
        }
        __syncthreads();
    }
    if (a.loss == nullptr) return;
    const GridSumResult res = grid_sum<kBlock>(a.ws.sum, block_loss);
    if (res.last && threadIdx.x == 0) store(a.loss, res.total, a.accumulate);
}

// Kernel 3: M = dG + dG^T, row r.
__global__ void __launch_bounds__(kBlock) rkd_coef_kernel(RKDArgs a)
{
    using Reduce = cub::BlockReduce<float, kBlock>;
    __shared__ typename Reduce::TempStorage temp;
    __shared__ float sh_mu_s, sh_mu_t, sh_rho;
    const int64_t N = a.rows;
    const Gram S{a.ws.gram_s, N}, T{a.ws.gram_t, N};
    const float nf = static_cast<float>(N);
    const float cd = upstream(a) * a.weight * a.w_d / (nf * nf);
    if (threadIdx.x == 0) {
        means(a, sh_mu_s, sh_mu_t);
        float rho = 0.0f;
        for (int64_t i = 0; i < N; ++i) rho += a.ws.rho[i];
        sh_rho = N > 1 ? rho : 0.0f;
    }
    __syncthreads();
    const float mu_s = sh_mu_s, mu_t = sh_mu_t;
    const float mean_term = N > 1 ? sh_rho / (mu_s * mu_s * nf * (nf - 1.0f)) : 0.0f;

    // dL/dq_ij of both terms (i != j).
    auto delta = [&](int64_t i, int64_t j) {
        const float q = S.sq(i, j);
        float dq = 0.0f;
        if (N > 1 && q >= 1e-12f) {
            const float d = sqrtf(q), y = d / mu_s - T.dist(i, j) / mu_t;
            dq = (cd * huber_grad(y) / mu_s - mean_term) / (2.0f * d);
        }
        const float n = S.norm(i, j);
        if (n >= 1e-12f) dq -= a.ws.tee[i * N + j] / (n * n);
        return dq;
    };

    for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
        float diag = 0.0f;
        for (int64_t c = threadIdx.x; c < N; c += kBlock) {
            if (c == r) continue;
            const float d_rc = delta(r, c), d_cr = delta(c, r);
            const float g_rc = a.ws.gam[r * N + c], g_cr = a.ws.gam[c * N + r];
            a.ws.coef[r * N + c] = a.ws.psi[r * N + c] + a.ws.psi[c * N + r] - 2.0f * (g_rc + g_cr) - 2.0f * (d_rc + d_cr);
            diag += g_rc + d_rc + d_cr;
        }
        diag = Reduce(temp).Sum(diag);
        if (threadIdx.x == 0) a.ws.coef[r * N + r] = 2.0f * (a.ws.psi[r * N + r] + diag);
        __syncthreads();
    }
}

}  // namespace

LaunchResult rkd_launch(const RKDArgs& a, cudaStream_t stream)
{
    LaunchResult r;
    const int n = static_cast<int>(a.rows);
    const bool grad = a.grad_s != nullptr;
    r.cublas = gemm_bind(a.cublas, stream, a.ws.cublas, a.allow_tf32);
    if (r.cublas != CUBLAS_STATUS_SUCCESS) return r;
    if ((r.cuda = centre_rows(stream, a.rows, {a.e_s, a.ld_s, a.dim_s, a.ws.centred_s},
                              {a.e_t, a.ld_t, a.dim_t, a.ws.centred_t}, false)))
        return r;
    if ((r.cuda = build_grams(stream, a.rows, {a.ws.centred_s, a.dim_s, a.dim_s, a.ws.gram_s, a.ws.partials.s, 0},
                              {a.ws.centred_t, a.dim_t, a.dim_t, a.ws.gram_t, a.ws.partials.t, 0})))
        return r;

    const dim3 grid(static_cast<unsigned>(rkd_blocks(a.rows)));
    if (a.loss != nullptr)
        if ((r.cuda = a.ws.sum.prepare(stream)) != cudaSuccess) return r;
    if ((r.cuda = kdf::launch<rkd_angle_kernel>({grid, dim3(kBlock), 0, stream}, a)) != cudaSuccess) return r;
    if ((r.cuda = kdf::launch<rkd_distance_kernel>({grid, dim3(kBlock), 0, stream}, a)) != cudaSuccess) return r;
    if (!grad) return r;
    if ((r.cuda = kdf::launch<rkd_coef_kernel>({grid, dim3(kBlock), 0, stream}, a)) != cudaSuccess) return r;
    r.cublas = gemm_rm(a.cublas, false, false, n, static_cast<int>(a.dim_s), n, 1.0f, a.ws.coef, n, a.ws.centred_s,
                       static_cast<int>(a.dim_s), a.accumulate ? 1.0f : 0.0f, a.grad_s, static_cast<int>(a.ld_s));
    return r;
}

}  // namespace kdf::kernels
