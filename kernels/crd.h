// Launcher interface of CRD (internal: host/crd.cpp validates, then calls it). Host-compilable: the
// geometry and workspace layout are shared by the launcher and the workspace size query.
#pragma once

#include "common/gemm.h"  // LaunchResult
#include "common/grid_sum.h"

#include <cstdint>

namespace kdf::kernels {

constexpr int kCRDBlock = 256;              // 8 warps; a warp scores one contrast at a time
constexpr int64_t kCRDChunk = 1024;         // contrasts of one row per block (128 per warp)
constexpr int64_t kCRDMaxDim = 1024;        // 32 values per lane

// The two sides of CRD. Side 0 ("s"): v_s scored against memory_t, Z_s, grad_s, memory_s updated with v_s.
// Side 1 ("t"): v_t scored against memory_s, Z_t, grad_t, memory_t updated with v_t.
struct CRDGeometry {
    int64_t n, d, k1;   // rows, embedding width, contrasts per row (K + 1)
    int64_t chunks;     // blocks per (side, row) in the scoring kernels
    int64_t blocks;     // of the scoring kernels: 2 * n * chunks
    bool fits;          // grids within int

    static CRDGeometry of(int64_t n, int64_t d, int64_t k)
    {
        CRDGeometry g{};
        g.n = n, g.d = d, g.k1 = k + 1;
        g.chunks = (g.k1 + kCRDChunk - 1) / kCRDChunk;
        constexpr int64_t kIntMax = 2147483647;
        g.fits = n <= kIntMax / (2 * g.chunks);
        g.blocks = g.fits ? 2 * n * g.chunks : 0;
        return g;
    }
};

// Workspace: the tickets (loss grid sum; one per side for Z), the loss's block partials, the Z estimate's
// block partials ({max, sum exp(s - max)} per block) and the gradient's block partials (D floats per block).
// O(N (K+1) D / 1024): 4.5 MB at N = 256, K = 16384, D = 128; no N x (K+1) buffer at all.
struct CRDWorkspace {
    unsigned* tickets;  // [0] loss, [1] Z_s, [2] Z_t, [3] the invalid flag (blocks that saw a bad index)
    GridSum loss_sum;
    float* z_partials;  // 2 floats per block
    float* grad_partials;

    static int64_t sizes(const CRDGeometry& g, int64_t out[4])
    {
        out[0] = 256;
        out[1] = round_up(g.blocks * 4, 256);
        out[2] = round_up(g.blocks * 2 * 4, 256);
        out[3] = round_up(g.blocks * g.d * 4, 256);
        return out[0] + out[1] + out[2] + out[3];
    }
    static int64_t bytes(const CRDGeometry& g)
    {
        int64_t s[4];
        return sizes(g, s);
    }
    static CRDWorkspace carve(void* workspace, const CRDGeometry& g)
    {
        int64_t s[4];
        sizes(g, s);
        auto* b = static_cast<unsigned char*>(workspace);
        CRDWorkspace w{};
        w.tickets = reinterpret_cast<unsigned*>(b);
        w.loss_sum = {reinterpret_cast<float*>(b + s[0]), w.tickets};
        w.z_partials = reinterpret_cast<float*>(b + s[0] + s[1]);
        w.grad_partials = reinterpret_cast<float*>(b + s[0] + s[1] + s[2]);
        return w;
    }
    // Zeroes the tickets and the flag on `stream` (one 16-byte memset).
    cudaError_t prepare(cudaStream_t stream) const { return cudaMemsetAsync(tickets, 0, 4 * sizeof(unsigned), stream); }
    // In the kernels after the check (kernel 1): some index of this call is out of range.
    __device__ __forceinline__ bool invalid() const { return *static_cast<volatile const unsigned*>(tickets + 3) != 0; }
};

struct CRDArgs {
    CRDGeometry geo;
    int64_t n_data;
    int64_t ld_s, ld_t;        // rows of v_s / grad_s and v_t / grad_t
    float temperature;         // T
    float momentum;
    bool z_ema;
    float z_momentum;
    bool normalize;
    bool update;
    bool step;                 // an output or the update is requested (else the call only checks the indices)
    bool draw;
    bool index64;
    uint64_t seed, offset;
    float weight;
    float grad_scale;
    bool accumulate;
    const float* v_s;
    const float* v_t;
    float* memory_s;
    float* memory_t;
    const void* idx;           // N indices, or nullptr (neither update nor draw)
    const void* contrast;      // N x (K+1) indices, or nullptr (draw)
    float* z;                  // {Z_s, Z_t}
    int32_t* index_status;     // nullable: 0 = every index in range, 1 = some index out of range
    const float* grad_loss;    // nullable (= 1)
    float* loss;               // nullable
    float* grad_s;             // nullable
    float* grad_t;             // nullable
    CRDWorkspace ws;
};

// The 16-byte ticket memset and three kernels: the index check and the Z estimate (its blocks only check for
// a side whose Z is set in KDF_CRD_Z_ONCE mode), the NCE scoring with the gradient's partial sums (skipped when no output
// is requested), and the finish (gradients, bank update; skipped when neither is requested).
LaunchResult crd_launch(const CRDArgs& args, cudaStream_t stream);

// kdfCRDDrawContrast: one kernel writing the N x (K+1) indices a draw uses.
cudaError_t crd_draw_launch(const CRDArgs& args, void* out, cudaStream_t stream);

}  // namespace kdf::kernels
