// Launcher interface of CC, both variants (internal: host/cc.cpp validates, then calls it).
// Host-compilable; the seed variant uses SP's Gram workspace (sp.h).
#pragma once

#include "sp.h"

namespace kdf::kernels {

struct CCArgs {
    int64_t n, ds, dt;       // rows, feature widths (ds == dt for the shipped variant)
    int64_t ld_s, ld_t;      // row strides of f_s (and grad_s), f_t (and grad_t)
    bool shipped;            // KDF_CC_REPDISTILLER
    float weight;
    float grad_scale;
    bool accumulate;
    const float* f_s;
    const float* f_t;
    const float* grad_loss;  // nullable (= 1)
    float* loss;             // nullable
    float* grad_s;           // nullable
    float* grad_t;           // nullable (shipped variant only)
    CentredGramWorkspace ws; // seed variant: Gram matrices of [c; m], (n+1) x (n+1), and the centred copies
    GridSum sum;             // shipped variant
    cublasHandle_t cublas;
    bool allow_tf32;
};

// Blocks of the seed variant's elementwise N x N kernels (their grid sums hold one partial per block).
int64_t cc_seed_blocks(int64_t n);
// Blocks of the shipped variant's kernel (a function of N and D).
int64_t cc_shipped_blocks(int64_t n, int64_t d);
size_t cc_workspace_bytes(int64_t n, int64_t ds, int64_t dt, bool shipped);
// Seed: the centring kernel, 2 GEMMs, 2 kernels (norms; loss and projection), with grad_s a third kernel and 1 GEMM.
// Shipped: 1 kernel, no GEMM.
LaunchResult cc_launch(const CCArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
