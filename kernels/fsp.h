// Launcher interface of FSP (internal: host/fsp.cpp validates, then calls it). Host-compilable: the
// geometry and workspace layout are shared by the launcher and the workspace size query.
#pragma once

#include "nst.h"  // PoolPair, LaunchResult, kGramBlock

namespace kdf::kernels {

constexpr int64_t kFSPMaxBlocks = 1024;
constexpr int64_t kFSPElementsPerBlock = kGramBlock * 8;

// One network's pair: the common size and which map (if any) is pooled to it.
struct FSPSide {
    PoolPair pool;                         // a = bot, b = top
    int64_t p;                             // h*w of the common size
    int64_t pooled_c;                      // channels of the pooled map (0: neither is pooled)
    int64_t pooled_floats(int64_t n) const { return n * pooled_c * p; }
};

struct FSPGeometry {
    FSPSide s, t;
    int64_t n, c1, c2;
    int64_t diff_blocks;   // blocks of the difference kernel
    int64_t pool_blocks;   // one block per pooled plane, student then teacher
    int64_t unpool_blocks; // one block per plane of the pooled student map
    bool comparable;       // both pairs poolable
    bool fits;             // cuBLAS int sizes and leading dimensions, grid sizes

    static FSPSide side(const Map4d& bot, const Map4d& top)
    {
        FSPSide x{};
        x.pool = PoolPair::of(bot, top);
        if (!x.pool.comparable) return x;
        x.p = x.pool.h * x.pool.w;
        x.pooled_c = x.pool.pool_a ? bot.c : x.pool.pool_b ? top.c : 0;
        return x;
    }

    static FSPGeometry of(const Map4d& sb, const Map4d& st, const Map4d& tb, const Map4d& tt)
    {
        FSPGeometry g{};
        g.s = side(sb, st);
        g.t = side(tb, tt);
        g.comparable = g.s.pool.comparable && g.t.pool.comparable;
        if (!g.comparable) return g;
        g.n = sb.n, g.c1 = sb.c, g.c2 = st.c;
        const int64_t d = g.n * g.c1 * g.c2;
        const int64_t blocks = (d + kFSPElementsPerBlock - 1) / kFSPElementsPerBlock;
        g.diff_blocks = blocks < kFSPMaxBlocks ? blocks : kFSPMaxBlocks;
        g.pool_blocks = g.n * (g.s.pooled_c + g.t.pooled_c);
        g.unpool_blocks = g.n * g.s.pooled_c;
        constexpr int64_t kIntMax = 2147483647;
        const auto ld_ok = [&](const Map4d& m) { return m.sc <= kIntMax; };
        g.fits = g.pool_blocks <= kIntMax && g.n <= kIntMax && g.c1 <= kIntMax && g.c2 <= kIntMax && g.s.p <= kIntMax &&
                 g.t.p <= kIntMax && ld_ok(sb) && ld_ok(st) && ld_ok(tb) && ld_ok(tt);
        return g;
    }
};

// Workspace: the pooled student map (reused for the gradient of the pooled map once the other map's
// gradient is done), the pooled teacher map, D = G_s - G_t (n x c2 x c1), the grid sum, the cuBLAS slice.
struct FSPWorkspace {
    float* pooled_s;
    float* pooled_t;
    float* diff;
    GridSum sum;
    void* cublas;

    static int64_t sizes(const FSPGeometry& g, int64_t out[5])
    {
        out[0] = round_up(g.s.pooled_floats(g.n) * 4, 256);
        out[1] = round_up(g.t.pooled_floats(g.n) * 4, 256);
        out[2] = round_up(g.n * g.c1 * g.c2 * 4, 256);
        out[3] = GridSum::bytes(g.diff_blocks);
        out[4] = static_cast<int64_t>(kCublasWorkspaceBytes);
        return out[0] + out[1] + out[2] + out[3] + out[4];
    }
    static int64_t bytes(const FSPGeometry& g)
    {
        int64_t s[5];
        return sizes(g, s);
    }
    static FSPWorkspace carve(void* workspace, const FSPGeometry& g)
    {
        int64_t s[5];
        sizes(g, s);
        auto* b = static_cast<unsigned char*>(workspace);
        FSPWorkspace w{};
        w.pooled_s = reinterpret_cast<float*>(b), b += s[0];
        w.pooled_t = reinterpret_cast<float*>(b), b += s[1];
        w.diff = reinterpret_cast<float*>(b), b += s[2];
        w.sum = GridSum::carve(b, g.diff_blocks), b += s[3];
        w.cublas = b;
        return w;
    }
};

struct FSPArgs {
    Map4d sb, st, tb, tt;     // s_bot (and grad_s_bot), s_top (and grad_s_top), t_bot, t_top layouts
    FSPGeometry geo;
    float weight;
    float grad_scale;
    bool accumulate;
    const float* s_bot;
    const float* s_top;
    const float* t_bot;
    const float* t_top;
    const float* grad_loss;   // nullable (= 1)
    float* loss;              // nullable
    float* grad_s_bot;        // nullable
    float* grad_s_top;        // nullable
    FSPWorkspace ws;
    cublasHandle_t cublas;
    bool allow_tf32;
};

// Kernels: pooling (when a map of either pair is pooled), the difference kernel, the pooling adjoint (when
// the pooled student map's gradient is requested). GEMMs: 2 for D, plus one per requested gradient.
LaunchResult fsp_launch(const FSPArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
