// Launcher interface of SP (internal: host/sp.cpp validates, then calls it). Host-compilable: the
// workspace layout is shared by the launcher and the size query. CC (cc.h) uses the same Gram workspace.
#pragma once

#include "common/centre.h"
#include "common/gemm.h"
#include "common/gram_split.h"
#include "common/grid_sum.h"

namespace kdf::kernels {


// Workspace of the N x N Gram losses (SP, CC): the cuBLAS slice, G_s and G_t (N x N each; the backward
// overwrites G_s with dL/dG + (dL/dG)^T), 4 scalar statistics, two grid sums (partials for `blocks`
// blocks each) and their tickets (adjacent: one 8-byte memset zeroes both), the split Grams' partials.
struct GramWorkspace {
    void* cublas;
    float* gram_s;
    float* gram_t;
    float* stats;
    GridSum sum[2];
    GramPartials partials;

    static int64_t matrix_bytes(int64_t n) { return round_up(n * n * int64_t(sizeof(float)), 256); }
    static int64_t partial_bytes(int64_t blocks) { return round_up(blocks * int64_t(sizeof(float)), 256); }
    static int64_t bytes(int64_t n, int64_t ds, int64_t dt, int64_t blocks)
    {
        return int64_t(kCublasWorkspaceBytes) + 2 * matrix_bytes(n) + 256 + 2 * partial_bytes(blocks) + 256 +
               GramPartials::bytes(n, ds, dt);
    }
    static GramWorkspace carve(void* workspace, int64_t n, int64_t ds, int64_t dt, int64_t blocks)
    {
        auto* p = static_cast<unsigned char*>(workspace);
        GramWorkspace w{};
        w.cublas = p;
        p += kCublasWorkspaceBytes;
        w.gram_s = reinterpret_cast<float*>(p);
        p += matrix_bytes(n);
        w.gram_t = reinterpret_cast<float*>(p);
        p += matrix_bytes(n);
        w.stats = reinterpret_cast<float*>(p);
        p += 256;
        float* partials0 = reinterpret_cast<float*>(p);
        p += partial_bytes(blocks);
        float* partials1 = reinterpret_cast<float*>(p);
        p += partial_bytes(blocks);
        auto* tickets = reinterpret_cast<unsigned*>(p);
        w.sum[0] = {partials0, tickets};
        w.sum[1] = {partials1, tickets + 1};
        w.partials = GramPartials::carve(p + 256, n, ds, dt);
        return w;
    }
    // Zeroes both tickets on `stream` (one 8-byte memset).
    cudaError_t prepare(cudaStream_t stream) const { return cudaMemsetAsync(sum[0].ticket, 0, 2 * sizeof(unsigned), stream); }
};

// The workspace of a loss built on the Grams of mean-centred rows (SP, CC's seed variant): a GramWorkspace for
// the (n+1) x (n+1) Grams of [c; m], then the two centred copies (common/centre.h).
struct CentredGramWorkspace : GramWorkspace {
    float* centred_s;  // f_s - mean row, with the mean as row n ((n+1) x ds, dense)
    float* centred_t;

    static int64_t bytes(int64_t n, int64_t ds, int64_t dt, int64_t blocks)
    {
        return GramWorkspace::bytes(n + 1, ds, dt, blocks) + centred_bytes(n + 1, ds) + centred_bytes(n + 1, dt);
    }
    static CentredGramWorkspace carve(void* workspace, int64_t n, int64_t ds, int64_t dt, int64_t blocks)
    {
        auto* p = static_cast<unsigned char*>(workspace);
        CentredGramWorkspace w{};
        static_cast<GramWorkspace&>(w) = GramWorkspace::carve(p, n + 1, ds, dt, blocks);
        p += GramWorkspace::bytes(n + 1, ds, dt, blocks);
        w.centred_s = reinterpret_cast<float*>(p);
        w.centred_t = reinterpret_cast<float*>(p + centred_bytes(n + 1, ds));
        return w;
    }
};

struct SPArgs {
    int64_t n, ds, dt;       // rows, feature widths
    int64_t ld_s, ld_t;      // row strides of f_s (and grad_s), f_t
    float weight;
    float grad_scale;
    bool accumulate;
    const float* f_s;
    const float* f_t;
    const float* grad_loss;  // nullable (= 1)
    float* loss;             // nullable
    float* grad_s;           // nullable
    CentredGramWorkspace ws; // Gram matrices of [c; m], (n+1) x (n+1)
    cublasHandle_t cublas;
    bool allow_tf32;
};

// Blocks of SP's row kernel (one block per Gram row, grid-stride beyond 65535); the grid sums hold one
// partial per block.
int64_t sp_blocks(int64_t n);
inline int64_t sp_workspace_bytes(int64_t n, int64_t ds, int64_t dt) { return CentredGramWorkspace::bytes(n, ds, dt, sp_blocks(n)); }
// The centring kernel, the Gram matrices of [c; m] (common/gram_split.cuh: 2 GEMMs, or more and a reduction kernel
// for wide features), the row kernel (loss, dL/dG), and with grad_s the symmetrising kernel and 1 GEMM.
LaunchResult sp_launch(const SPArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
