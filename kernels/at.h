// Launcher interface of the AT and FT kernels (internal: host/at.cpp and host/ft.cpp validate, then call
// them). FT compares the same attention maps as AT with another term, so both share the geometry, the
// workspace layout and the arguments below; kernels/common/attention_map.cuh has the kernels.
#pragma once

#include "common/feature_map.h"
#include "common/grid_sum.h"  // round_up

namespace kdf::kernels {

// Launch geometry (host arithmetic shared by the launchers and the workspace size query).
constexpr int kAttentionBlock = 256;
constexpr int64_t kAttentionMapPositions = 32;       // map positions per block of the attention-map kernel
constexpr int64_t kAttentionGradElements = 16384;    // student elements per block of the gradient kernel (target)
constexpr int64_t kAttentionGradMinChannels = 16;    // and at least this many channels (or all of them)
constexpr int64_t kAttentionStage = 4096;            // floats staged in shared memory when the student is pooled
constexpr int64_t kAttentionMaxPooledWidth = kAttentionStage / 2;  // at least two staged rows

// The geometry of one layer pair. The compared maps have the smaller map's size (h, w); the larger map
// (at least as large in both h and w) is adaptive-average-pooled to it.
struct AttentionGeometry {
    bool comparable;            // false: one map is larger in h, the other in w
    int64_t h, w;               // the common size (valid when comparable)
    bool pool_student;          // the student is the larger map
    int64_t map_blocks;         // blocks of the attention-map kernel per map (student, then teacher)
    int64_t channels_per_block; // student channels per block of the gradient kernel
    int64_t grad_blocks;        // blocks of the gradient kernel: n x ceil(c / channels_per_block)
    bool fits;                  // grids within 2^31 - 1 blocks; a pooled student's window arithmetic within
                                // int: (H + 1)(h + 1) and (W + 1)(w + 1) < 2^31 (the width limit is separate)

    static AttentionGeometry of(const Map4d& s, const Map4d& t)
    {
        AttentionGeometry g{};
        g.comparable = (s.h >= t.h && s.w >= t.w) || (s.h <= t.h && s.w <= t.w);
        if (!g.comparable) return g;
        g.h = s.h < t.h ? s.h : t.h;
        g.w = s.w < t.w ? s.w : t.w;
        g.pool_student = s.h != g.h || s.w != g.w;
        g.map_blocks = (s.n * g.h * g.w + kAttentionMapPositions - 1) / kAttentionMapPositions;
        // Split a sample's channels so that each block writes about kAttentionGradElements gradient elements,
        // and at least kAttentionGradMinChannels channels: every block reads its sample's h*w values of G once,
        // which stays below 1/32 of the bytes the block moves.
        const int64_t by_elements = (kAttentionGradElements + s.hw() - 1) / s.hw();
        const int64_t per_block = by_elements > kAttentionGradMinChannels ? by_elements : kAttentionGradMinChannels;
        g.channels_per_block = per_block < s.c ? per_block : s.c;
        g.grad_blocks = s.n * ((s.c + g.channels_per_block - 1) / g.channels_per_block);
        constexpr int64_t kIntMax = 2147483647;
        g.fits = 2 * g.map_blocks <= kIntMax && g.grad_blocks <= kIntMax &&
                 (!g.pool_student || ((s.h + 1) * (g.h + 1) <= kIntMax && (s.w + 1) * (g.w + 1) <= kIntMax));
        return g;
    }
};

// Workspace: the attention maps before normalisation (v = mean_C f^p, n x h*w floats each), the gradient's
// per-position factor G (n x h*w floats, when a gradient is requested), one loss term per sample, and n + 1
// tickets (one per sample, counting the map blocks that wrote it; one counting the finished samples). Depends on
// the shapes only.
struct AttentionWorkspace {
    float* v_s;
    float* v_t;
    float* g;
    float* sample_loss;
    unsigned* tickets;

    static int64_t map_bytes(const Map4d& s, const AttentionGeometry& g) { return round_up(s.n * g.h * g.w * 4, 256); }
    static int64_t loss_bytes(const Map4d& s) { return round_up(s.n * 4, 256); }
    static int64_t bytes(const Map4d& s, const AttentionGeometry& g)
    {
        return 3 * map_bytes(s, g) + loss_bytes(s) + round_up((s.n + 1) * 4, 256);
    }
    static AttentionWorkspace carve(void* workspace, const Map4d& s, const AttentionGeometry& g)
    {
        auto* base = static_cast<unsigned char*>(workspace);
        const int64_t m = map_bytes(s, g);
        return {reinterpret_cast<float*>(base), reinterpret_cast<float*>(base + m), reinterpret_cast<float*>(base + 2 * m),
                reinterpret_cast<float*>(base + 3 * m), reinterpret_cast<unsigned*>(base + 3 * m + loss_bytes(s))};
    }
    // Zeroes the n + 1 tickets on `stream`.
    cudaError_t prepare(int64_t n, cudaStream_t stream) const
    {
        return cudaMemsetAsync(tickets, 0, static_cast<size_t>(n + 1) * sizeof(unsigned), stream);
    }
};

struct AttentionArgs {
    Map4d s, t;              // f_s (and grad_s) layout, f_t layout; same n, channels may differ
    AttentionGeometry geo;
    float p;                 // power of the maps (AT: p, FT: p1)
    float p2;                // FT: exponent of the difference (1: L1); unused by AT
    float weight;
    float grad_scale;
    bool accumulate;
    const float* f_s;
    const float* f_t;
    const float* grad_loss;  // nullable (= 1)
    float* loss;             // nullable
    float* grad_s;           // nullable
    AttentionWorkspace ws;
};

// A memset of the n + 1 tickets, the map kernel (which also finishes the loss), and the gradient kernel when
// grad_s is requested.
cudaError_t at_launch(const AttentionArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
