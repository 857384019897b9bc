// Launcher interface of PKT (internal: host/pkt.cpp validates, then calls it). Host-compilable: the
// workspace layout is shared by the launcher and the workspace size query.
#pragma once

#include "common/gemm.h"
#include "common/gram_split.h"
#include "common/grid_sum.h"

#include <cstddef>
#include <cstdint>

namespace kdf::kernels {


// Blocks of both kernels (one row of the N x N matrices per block, grid-stride beyond 65535).
inline int64_t pkt_blocks(int64_t rows) { return rows < 65535 ? rows : 65535; }

// Workspace: the Gram matrices G_s, G_t (N x N each; G_t's buffer is reused for the gradient's
// coefficient matrix P), dL/dS_s (N x N), the similarities S_s and S_t (N x N each), the grid sum of the loss,
// the cuBLAS slice, the partial Gram matrices and the masked copy of e_s.
struct PKTWorkspace {
    float* gram_s;
    float* gram_t;
    float* dsim;
    float* sim_s;  // S_ij = (1 + cos_ij) / 2, without the cancellation of 1 + cos near -1 (pkt.cu)
    float* sim_t;
    GridSum sum;
    void* cublas;
    GramPartials partials;  // of the split Gram matrices (common/gram_split.h)
    float* masked_s;        // e_s with the rows of non-finite norm zeroed, N x D_s (the gradient GEMM's input)

    static int64_t matrix_bytes(int64_t rows) { return round_up(rows * rows * int64_t(sizeof(float)), 256); }
    static int64_t bytes(int64_t rows, int64_t dim_s, int64_t dim_t)
    {
        return 5 * matrix_bytes(rows) + GridSum::bytes(pkt_blocks(rows)) + static_cast<int64_t>(kCublasWorkspaceBytes) +
               GramPartials::bytes(rows, dim_s, dim_t) + round_up(rows * dim_s * int64_t(sizeof(float)), 256);
    }
    static PKTWorkspace carve(void* workspace, int64_t rows, int64_t dim_s, int64_t dim_t)
    {
        auto* b = static_cast<unsigned char*>(workspace);
        const int64_t m = matrix_bytes(rows);
        PKTWorkspace w{};
        w.gram_s = reinterpret_cast<float*>(b);
        w.gram_t = reinterpret_cast<float*>(b + m);
        w.dsim = reinterpret_cast<float*>(b + 2 * m);
        w.sim_s = reinterpret_cast<float*>(b + 3 * m);
        w.sim_t = reinterpret_cast<float*>(b + 4 * m);
        w.sum = GridSum::carve(b + 5 * m, pkt_blocks(rows));
        w.cublas = b + 5 * m + GridSum::bytes(pkt_blocks(rows));
        b = static_cast<unsigned char*>(w.cublas) + kCublasWorkspaceBytes;
        w.partials = GramPartials::carve(b, rows, dim_s, dim_t);
        w.masked_s = reinterpret_cast<float*>(b + GramPartials::bytes(rows, dim_s, dim_t));
        return w;
    }
};

struct PKTArgs {
    int64_t rows, dim_s, dim_t;
    int64_t ld_s, ld_t;        // elements between rows of f_s/grad_s and of f_t
    float weight;
    float grad_scale;
    bool accumulate;
    const float* f_s;
    const float* f_t;
    const float* grad_loss;    // nullable (= 1)
    float* loss;               // nullable
    float* grad_s;             // nullable
    PKTWorkspace ws;
    cublasHandle_t cublas;
    bool allow_tf32;
};

// Loss only: two GEMMs (the Gram matrices) and one kernel (plus a 4-byte memset of the ticket).
// With the gradient: three GEMMs and two kernels (see pkt.cu for why).
LaunchResult pkt_launch(const PKTArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
