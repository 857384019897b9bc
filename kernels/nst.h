// Launcher interface of NST (internal: host/nst.cpp validates, then calls it). Host-compilable: the
// geometry and workspace layout are shared by the launcher and the workspace size query.
#pragma once

#include "common/feature_map.h"
#include "common/gemm.h"
#include "common/grid_sum.h"

namespace kdf::kernels {

constexpr int kGramBlock = 256;


// The common size of two maps compared after pooling (the AT rule): the larger map, at least as large in
// both h and w, is pooled to the smaller one's h x w.
struct PoolPair {
    bool comparable;  // false: one map is larger in h, the other in w
    int64_t h, w;     // the common size
    bool pool_a, pool_b;

    static PoolPair of(const Map4d& a, const Map4d& b)
    {
        PoolPair p{};
        p.comparable = (a.h >= b.h && a.w >= b.w) || (a.h <= b.h && a.w <= b.w);
        if (!p.comparable) return p;
        p.h = a.h < b.h ? a.h : b.h;
        p.w = a.w < b.w ? a.w : b.w;
        p.pool_a = a.h != p.h || a.w != p.w;
        p.pool_b = b.h != p.h || b.w != p.w;
        return p;
    }
};

// NST's two forms (nst.cu): with X = [a; b] per sample (c = cs + ct rows of p = h*w positions), the channel
// form works on the c x c Gram matrix G = X X^T, the position form on the p x p matrices S = a^T a / cs and
// T = b^T b / ct, because sum Gss^2 / cs^2 + sum Gtt^2 / ct^2 - 2 sum Gst^2 / (cs ct) = ||S - T||_F^2. The
// position form is chosen when its two p x p matrices are no larger than G (2 p^2 <= c^2); then it also
// needs fewer FLOPs.
//
// NST workspace: X (the pooled, normalised rows of both maps: n x c x p), the rows' norms (n x c), the
// per-sample matrices (channel form: G, n x c x c; position form: D = S - T and T, 2 x n x p x p),
// dA = dL/da (n x cs x p), the grid sum of the finishing kernel (one partial per block, n x c blocks) and the
// cuBLAS slice.
struct NSTGeometry {
    PoolPair pool;
    int64_t n, cs, ct, c, p;  // c = cs + ct rows of X per sample, p = h*w columns
    bool positions;           // the position form (else the channel form)
    int64_t m;                // the side of the per-sample matrices: p (position form) or c
    int64_t blocks;           // n * c: one block per row of X in both kernels
    bool fits;                // grids and cuBLAS sizes within int

    static NSTGeometry of(const Map4d& s, const Map4d& t)
    {
        NSTGeometry g{};
        g.pool = PoolPair::of(s, t);
        if (!g.pool.comparable) return g;
        g.n = s.n, g.cs = s.c, g.ct = t.c, g.c = s.c + t.c, g.p = g.pool.h * g.pool.w;
        g.blocks = g.n * g.c;
        constexpr int64_t kIntMax = 2147483647;
        g.fits = g.blocks <= kIntMax && g.c <= 46340 && g.p <= kIntMax;
        g.positions = g.fits && g.p < g.c && 2 * g.p * g.p <= g.c * g.c;  // no overflow: p < c <= 46340
        g.m = g.positions ? g.p : g.c;
        return g;
    }
};

struct NSTWorkspace {
    float* x;
    float* norms;
    float* gram;  // G (channel form) or D = S - T followed by T (position form)
    float* da;
    GridSum sum;
    void* cublas;

    static int64_t sizes(const NSTGeometry& g, int64_t out[6])
    {
        out[0] = round_up(g.n * g.c * g.p * 4, 256);
        out[1] = round_up(g.n * g.c * 4, 256);
        out[2] = round_up((g.positions ? 2 : 1) * g.n * g.m * g.m * 4, 256);
        out[3] = round_up(g.n * g.cs * g.p * 4, 256);
        out[4] = GridSum::bytes(g.blocks);
        out[5] = static_cast<int64_t>(kCublasWorkspaceBytes);
        int64_t total = 0;
        for (int i = 0; i < 6; ++i) total += out[i];
        return total;
    }
    static int64_t bytes(const NSTGeometry& g)
    {
        int64_t s[6];
        return sizes(g, s);
    }
    static NSTWorkspace carve(void* workspace, const NSTGeometry& g)
    {
        int64_t s[6];
        sizes(g, s);
        auto* b = static_cast<unsigned char*>(workspace);
        NSTWorkspace w{};
        w.x = reinterpret_cast<float*>(b), b += s[0];
        w.norms = reinterpret_cast<float*>(b), b += s[1];
        w.gram = reinterpret_cast<float*>(b), b += s[2];
        w.da = reinterpret_cast<float*>(b), b += s[3];
        w.sum = GridSum::carve(b, g.blocks), b += s[4];
        w.cublas = b;
        return w;
    }
};

struct NSTArgs {
    Map4d s, t;               // f_s (and grad_s) layout, f_t layout
    NSTGeometry geo;
    bool full_loss;
    float weight;
    float grad_scale;
    bool accumulate;
    const float* f_s;
    const float* f_t;
    const float* grad_loss;   // nullable (= 1)
    float* loss;              // nullable
    float* grad_s;            // nullable
    NSTWorkspace ws;
    cublasHandle_t cublas;
    bool allow_tf32;
};

// Two kernels and strided-batched GEMMs, plus a 4-byte memset of the ticket when the loss is requested.
// Channel form: 1 GEMM (G) + 2 with the gradient (dA). Position form: 2 (D) + 1 with the gradient (dA) + 1
// when the loss is requested with full_loss = 0 (T, whose norm is subtracted).
LaunchResult nst_launch(const NSTArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
