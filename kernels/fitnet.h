// Launcher interface of the FitNet kernel (internal: host/fitnet.cpp validates, then calls it).
#pragma once

#include "common/feature_map.h"
#include "common/grid_sum.h"

namespace kdf::kernels {

struct FitNetArgs {
    Map4d s, t;              // f_s (and grad_s) layout, f_t layout; same shape
    float weight;
    float grad_scale;
    bool accumulate;
    const float* f_s;
    const float* f_t;
    const float* grad_loss;  // nullable (= 1)
    float* loss;             // nullable
    float* grad_s;           // nullable
    GridSum sum;             // workspace (loss only)
};

// Blocks of the launch for this shape; the workspace holds one partial per block.
int64_t fitnet_blocks(const Map4d& s);
// One kernel (plus a 4-byte memset of the ticket when the loss is requested).
cudaError_t fitnet_launch(const FitNetArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
