// Launcher interface of the KD kernel (internal: host/kd.cpp validates, then calls it).
#pragma once

#include <kdfuse/kdfuse.h>

#include "common/cuda_api.h"
#include "common/grid_sum.h"

#include <cstddef>
#include <cstdint>

namespace kdf::kernels {

struct KDArgs {
    int64_t rows, classes;
    int64_t ld_s, ld_t;        // elements between rows of y_s/grad_s and of y_t/grad_t
    kdfDataType_t dtype;       // of y_s, y_t, grad_s, grad_t (the loss, row weights and grad_loss are fp32)
    float temperature;
    bool per_row;              // reduction "none"
    bool accumulate;
    float grad_scale;
    const void* y_s;           // `dtype`
    const void* y_t;
    const float* row_weight;   // nullable
    const float* grad_loss;    // nullable (= 1); scalar, or per row when per_row
    float* loss;               // nullable
    void* grad_s;              // nullable, `dtype`
    void* grad_t;              // nullable, `dtype`
    GridSum sum;               // workspace: block sums and ticket (batch-mean loss only)
    int device_optin_smem;     // the device's opt-in shared memory per block (bytes): bounds the row cache
};

// Blocks of the launch (one row at a time per block, grid-stride over rows).
int64_t kd_blocks(int64_t rows);
// Bytes of workspace the KD call needs (batch-mean loss: one float per block + the ticket).
size_t kd_workspace_bytes(int64_t rows, bool per_row);
// Enqueues the fused forward+backward on `stream`: at most one kernel (plus a 4-byte memset of the
// ticket when the batch-mean loss is requested). Returns the launch status.
cudaError_t kd_launch(const KDArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
