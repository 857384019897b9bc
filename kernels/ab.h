// Launcher interface of the AB kernel (internal: host/ab.cpp validates, then calls it).
#pragma once

#include "common/feature_map.h"
#include "common/grid_sum.h"

namespace kdf::kernels {

struct ABArgs {
    Map4d s, t;              // s (and grad_s) layout, t layout; same shape
    float margin;
    float weight;
    float scale;             // 3 / (1000 N) with the seed's scaling, else 1
    float grad_scale;
    bool accumulate;
    const float* f_s;
    const float* f_t;
    const float* grad_loss;  // nullable (= 1)
    float* loss;             // nullable
    float* grad_s;           // nullable
    GridSum sum;             // workspace (loss only)
};

// Blocks of the launch for this shape (the shape alone: the workspace holds one partial per block).
int64_t ab_blocks(const Map4d& s);
// One kernel (plus a 4-byte memset of the ticket when the loss is requested).
cudaError_t ab_launch(const ABArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
