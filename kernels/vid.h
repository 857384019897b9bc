// Launcher interface of the VID kernel (internal: host/vid.cpp validates, then calls it).
#pragma once

#include "common/feature_map.h"
#include "common/grid_sum.h"

namespace kdf::kernels {

// The workspace of VID's two-level sum (kernels/vid.cu): one partial per (n, c) plane, one loss term per channel,
// and C + 1 tickets, one per channel and one over the channels, zeroed by one memset before the launch.
struct VIDStats {
    float* partials;   // N x C
    float* terms;      // C
    unsigned* tickets; // C channel tickets, then the channels' ticket

    static int64_t bytes(int64_t n, int64_t c)
    {
        return round_up(n * c * 4, 256) + round_up(c * 4, 256) + round_up((c + 1) * 4, 256);
    }
    static VIDStats carve(void* workspace, int64_t n, int64_t c)
    {
        auto* base = static_cast<unsigned char*>(workspace);
        const int64_t partials = round_up(n * c * 4, 256), terms = round_up(c * 4, 256);
        return {reinterpret_cast<float*>(base), reinterpret_cast<float*>(base + partials),
                reinterpret_cast<unsigned*>(base + partials + terms)};
    }
    cudaError_t prepare(int64_t c, cudaStream_t stream) const
    {
        return cudaMemsetAsync(tickets, 0, static_cast<size_t>(c + 1) * sizeof(unsigned), stream);
    }
};

struct VIDArgs {
    Map4d p, t;                 // pred_mean (and grad_pred) layout; target layout (same n, c; h, w >= p's)
    float eps;
    float weight;
    float grad_scale;
    bool accumulate;
    const float* pred;
    const float* target;
    const float* log_scale;     // C values
    const float* grad_loss;     // nullable (= 1)
    float* loss;                // nullable
    float* grad_pred;           // nullable
    float* grad_log_scale;      // nullable; C values
    VIDStats stats;             // workspace (loss or grad_log_scale)
};

// One kernel (plus a memset of the C + 1 tickets when the loss or grad_log_scale is requested).
cudaError_t vid_launch(const VIDArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
