// Launcher interface of the OFD kernels (internal: host/ofd.cpp validates, then calls them).
#pragma once

#include "common/feature_map.h"
#include "common/grid_sum.h"

#include <cstddef>

namespace kdf::kernels {

// Workspace of one OFD call, carved from the caller's buffer (or only sized, base == nullptr).
struct OFDWorkspace {
    GridSum sum;                      // loss: one partial per block of the loss kernel + its ticket
    unsigned* channel_tickets;        // seed: C tickets, right after sum.ticket (one memset zeroes both)
    float* batch_margin;              // seed: the C margins
    float* split_sum;                 // seed: C x splits partial sums of the negative teacher values
    unsigned long long* split_count;  // seed: C x splits partial counts
    size_t bytes;
};

struct OFDArgs {
    Map4d s, t;              // s (and grad_s) layout, t layout; same shape
    bool seed;               // KDF_OFD_SEED: margin from t (kernel 1); else the caller's margin
    float weight;
    float scale;             // seed: 1 / (N*C*H*W); original: 1 / (N * 1000)
    float grad_scale;
    bool accumulate;
    const float* f_s;
    const float* f_t;
    const float* margin;     // the caller's C margins (original), NULL for the seed variant
    const float* grad_loss;  // nullable (= 1)
    float* loss;             // nullable
    float* grad_s;           // nullable
    OFDWorkspace ws;
};

// Blocks of the loss kernel, and per-channel splits of the margin kernel (grid C x splits), for this shape.
int64_t ofd_blocks(const Map4d& s);
int64_t ofd_margin_splits(const Map4d& s);
// The workspace layout for this shape and variant; base == nullptr only sizes it.
OFDWorkspace ofd_workspace(const Map4d& s, bool seed, void* base);
// Seed: the margin kernel then the loss kernel; original: the loss kernel (plus a memset of the tickets
// when the loss or the split margin sums need them).
cudaError_t ofd_launch(const OFDArgs& args, cudaStream_t stream);
// margin[c] from the teacher's BN (gamma, beta), C channels: one kernel.
cudaError_t ofd_margin_from_bn_launch(int64_t channels, const float* gamma, const float* beta, float* margin,
                                      cudaStream_t stream);

}  // namespace kdf::kernels
