// Host-visible part of the deterministic grid-wide sum (the device side is kdf::grid_sum in
// device.cuh). Plain C++: host code of the CUDA build includes it without CUB.
#pragma once

#include "cuda_api.h"

#include <cstdint>

namespace kdf {

__host__ __device__ __forceinline__ int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// Deterministic sum of one value per block across the grid, in one launch: every block stores its
// value, takes a ticket, and the last block to arrive adds the values in block order. The ticket must
// be zero at launch (grid_sum_prepare); the last block resets it. No float atomics.
struct GridSum {
    float* partials;   // gridDim.x floats
    unsigned* ticket;

    // Workspace bytes for up to `max_blocks` blocks, and the carving of a workspace into a GridSum.
    static int64_t bytes(int64_t max_blocks) { return round_up(max_blocks * int64_t(sizeof(float)), 256) + 256; }
    static GridSum carve(void* workspace, int64_t max_blocks)
    {
        auto* base = static_cast<unsigned char*>(workspace);
        return {reinterpret_cast<float*>(base),
                reinterpret_cast<unsigned*>(base + round_up(max_blocks * int64_t(sizeof(float)), 256))};
    }
    // Zeroes the ticket on `stream` (a 4-byte memset).
    cudaError_t prepare(cudaStream_t stream) const { return cudaMemsetAsync(ticket, 0, sizeof(unsigned), stream); }
};

}  // namespace kdf
