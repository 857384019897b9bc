// Launcher interface of RKD (internal: host/rkd.cpp validates, then calls it). Host-compilable: the
// workspace layout is shared by the launcher and the workspace size query.
#pragma once

#include "common/centre.h"
#include "common/gemm.h"
#include "common/gram_split.h"
#include "common/grid_sum.h"

#include <cstddef>
#include <cstdint>

namespace kdf::kernels {


// Blocks of every kernel (one row of the N x N matrices per block, grid-stride beyond 65535).
inline int64_t rkd_blocks(int64_t rows) { return rows < 65535 ? rows : 65535; }

// Workspace: six N x N matrices (G_s, G_t; the angle term's Psi, Gamma, T; the gradient's coefficient
// matrix M), five N-vectors of per-row partial sums, the grid sum of the loss, the cuBLAS slice, and the
// centred embeddings (N x D_s and N x D_t, dense) the Gram matrices are built from.
struct RKDWorkspace {
    float* gram_s;
    float* gram_t;
    float* psi;     // Psi_jk = sum over anchors a of gamma_ajk
    float* gam;     // Gamma_aj = sum_k gamma_ajk
    float* tee;     // T_aj = sum_k h_ajk a_ajk
    float* coef;    // M = dG + dG^T
    float* dsum_s;  // per row: sum_j d_s(i, j)
    float* dsum_t;
    float* angle;   // per row: sum over (j, k) of smooth_l1 of the angles with anchor i
    float* dist;    // per row: sum_j smooth_l1 of the normalised distances
    float* rho;     // per row: sum_j h_ij d_ij (the gradient of the student's mean)
    GridSum sum;
    void* cublas;
    GramPartials partials;  // of the split Gram matrices (common/gram_split.h)
    float* centred_s;       // e_s minus its mean row, N x D_s
    float* centred_t;

    static int64_t matrix_bytes(int64_t rows) { return round_up(rows * rows * int64_t(sizeof(float)), 256); }
    static int64_t vector_bytes(int64_t rows) { return round_up(rows * int64_t(sizeof(float)), 256); }
    static int64_t bytes(int64_t rows, int64_t dim_s, int64_t dim_t)
    {
        return 6 * matrix_bytes(rows) + 5 * vector_bytes(rows) + GridSum::bytes(rkd_blocks(rows)) +
               static_cast<int64_t>(kCublasWorkspaceBytes) + GramPartials::bytes(rows, dim_s, dim_t) +
               centred_bytes(rows, dim_s) + centred_bytes(rows, dim_t);
    }
    static RKDWorkspace carve(void* workspace, int64_t rows, int64_t dim_s, int64_t dim_t)
    {
        auto* b = static_cast<unsigned char*>(workspace);
        const int64_t m = matrix_bytes(rows), v = vector_bytes(rows);
        RKDWorkspace w{};
        float** mats[6] = {&w.gram_s, &w.gram_t, &w.psi, &w.gam, &w.tee, &w.coef};
        for (float** p : mats) *p = reinterpret_cast<float*>(b), b += m;
        float** vecs[5] = {&w.dsum_s, &w.dsum_t, &w.angle, &w.dist, &w.rho};
        for (float** p : vecs) *p = reinterpret_cast<float*>(b), b += v;
        w.sum = GridSum::carve(b, rkd_blocks(rows));
        w.cublas = b + GridSum::bytes(rkd_blocks(rows));
        b = static_cast<unsigned char*>(w.cublas) + kCublasWorkspaceBytes;
        w.partials = GramPartials::carve(b, rows, dim_s, dim_t);
        b += GramPartials::bytes(rows, dim_s, dim_t);
        w.centred_s = reinterpret_cast<float*>(b);
        w.centred_t = reinterpret_cast<float*>(b + centred_bytes(rows, dim_s));
        return w;
    }
};

struct RKDArgs {
    int64_t rows, dim_s, dim_t;
    int64_t ld_s, ld_t;        // elements between rows of e_s/grad_s and of e_t
    float w_d, w_a, weight;
    float grad_scale;
    bool accumulate;
    const float* e_s;
    const float* e_t;
    const float* grad_loss;    // nullable (= 1)
    float* loss;               // nullable
    float* grad_s;             // nullable
    RKDWorkspace ws;
    cublasHandle_t cublas;
    bool allow_tf32;
};

// Loss only: the centring kernel, the Gram matrices (common/gram_split.cuh: two GEMMs, or more and a
// reduction kernel for wide features) and two kernels (plus a 4-byte memset of the ticket). With the
// gradient: one more GEMM and one more kernel (see rkd.cu for why).
LaunchResult rkd_launch(const RKDArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
