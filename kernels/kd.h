// Launcher interface of the KD kernel (internal: host/kd.cpp validates, then calls it).
#pragma once

#include "common/cuda_api.h"
#include "common/grid_sum.h"

#include <cstddef>
#include <cstdint>

namespace kdf::kernels {

struct KDArgs {
    int64_t rows, classes;
    int64_t ld_s, ld_t;        // elements between rows of y_s/grad_s and of y_t/grad_t
    float temperature;
    bool per_row;              // reduction "none"
    bool accumulate;
    float grad_scale;
    const float* y_s;
    const float* y_t;
    const float* row_weight;   // nullable
    const float* grad_loss;    // nullable (= 1); scalar, or per row when per_row
    float* loss;               // nullable
    float* grad_s;             // nullable
    float* grad_t;             // nullable
    GridSum sum;               // workspace: block sums and ticket (batch-mean loss only)
};

// Blocks of the launch (one row at a time per block, grid-stride over rows).
int64_t kd_blocks(int64_t rows);
// Bytes of workspace the KD call needs (batch-mean loss: one float per block + the ticket).
size_t kd_workspace_bytes(int64_t rows, bool per_row);
// Enqueues the fused forward+backward on `stream`: at most one kernel (plus a 4-byte memset of the
// ticket when the batch-mean loss is requested). Returns the launch status.
cudaError_t kd_launch(const KDArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
