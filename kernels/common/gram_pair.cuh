// Device helpers of the N x N Gram losses (SP, CC): the symmetric combination S = X + X^T of an N x N
// matrix built in place, one thread per unordered pair {i, j}.
#pragma once

#include "device.cuh"

namespace kdf {

// For every unordered pair {i, j} of an N x N row-major matrix, exactly one thread calls
// f(i, j) (i <= j) and nothing else touches (i, j) or (j, i): in-place updates of both entries are safe.
// Grid-stride over the N*N indices (only those with i <= j do work), so any grid size is correct.
template <int BLOCK, typename F>
__device__ __forceinline__ void for_each_upper_pair(int64_t n, F&& f)
{
    const int64_t total = n * n;
    for (int64_t k = blockIdx.x * int64_t(BLOCK) + threadIdx.x; k < total; k += int64_t(gridDim.x) * BLOCK) {
        const int64_t i = k / n, j = k % n;
        if (i <= j) f(i, j);
    }
}

// Blocks of an elementwise launch over an N x N matrix: a function of N only (determinism).
inline int64_t square_blocks(int64_t n, int block)
{
    const int64_t b = (n * n + 4 * block - 1) / (4 * block);
    return b < 1024 ? b : 1024;
}

}  // namespace kdf
