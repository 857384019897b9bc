// Launcher interface of the VID kernel (internal: host/vid.cpp validates, then calls it).
#pragma once

#include "common/feature_map.h"
#include "common/grid_sum.h"

namespace kdf::kernels {

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
    GridSum stats;              // workspace: one partial per (n, c) plane + the ticket (loss or grad_log_scale)
};

// Partials in the workspace: one per (n, c) plane of pred_mean.
int64_t vid_planes(const Map4d& p);
// One kernel (plus a 4-byte memset of the ticket when the loss or grad_log_scale is requested).
cudaError_t vid_launch(const VIDArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
