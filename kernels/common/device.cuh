// Device helpers shared by the loss kernels.
#pragma once

#include "grid_sum.h"
#include "portability.cuh"

#include <cstdint>

namespace kdf {

// Running log-sum-exp of a stream of values: lse = max + log(sum exp(x - max)). An empty state is
// {-inf, 0}; combining with an empty state returns the other one exactly (no exp(-inf - -inf) = NaN).
struct OnlineLse {
    float max;
    float sum;

    __host__ __device__ __forceinline__ static OnlineLse empty() { return {-INFINITY, 0.0f}; }

    __device__ __forceinline__ void add(float x)
    {
        if (x > max) {
            sum = sum * expf(max - x) + 1.0f;
            max = x;
        } else {
            sum += expf(x - max);
        }
    }

    __device__ __forceinline__ float lse() const { return max + logf(sum); }

    __device__ __forceinline__ static OnlineLse combine(const OnlineLse& a, const OnlineLse& b)
    {
        if (a.sum == 0.0f) return b;
        if (b.sum == 0.0f) return a;
        if (a.max >= b.max) return {a.max, a.sum + b.sum * expf(b.max - a.max)};
        return {b.max, b.sum + a.sum * expf(a.max - b.max)};
    }
};

__host__ __device__ __forceinline__ bool aligned16(const void* p)
{
    return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// Calls f(j, a[j], b[j]) for the columns of one row that belong to this thread of a BLOCK-thread block.
// With `vec` (both rows 16-byte aligned) the main loop uses 16-byte loads, thread k taking columns
// 4k..4k+3 of each 4*BLOCK chunk, and a scalar loop covers the tail; otherwise every load is scalar.
template <int BLOCK, typename F>
__device__ __forceinline__ void for_each_column_pair(const float* a, const float* b, int64_t n, bool vec, F&& f)
{
    int64_t start = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        const float4* a4 = reinterpret_cast<const float4*>(a);
        const float4* b4 = reinterpret_cast<const float4*>(b);
        for (int64_t k = threadIdx.x; k < n4; k += BLOCK) {
            const float4 va = a4[k], vb = b4[k];
            f(4 * k, va.x, vb.x);
            f(4 * k + 1, va.y, vb.y);
            f(4 * k + 2, va.z, vb.z);
            f(4 * k + 3, va.w, vb.w);
        }
        start = n4 * 4;
    }
    for (int64_t j = start + threadIdx.x; j < n; j += BLOCK) f(j, a[j], b[j]);
}

// out = value, or out += value when accumulating.
__device__ __forceinline__ void store(float* out, float value, bool accumulate)
{
    *out = accumulate ? *out + value : value;
}

// Result of grid_sum: `last` is true in the last block, where `total` (valid in thread 0) is the sum
// of the blocks' values in block order.
struct GridSumResult {
    bool last;
    float total;
};

// Called by every thread of every block with the block's value valid in thread 0. Like CUB's
// primitives it has no trailing barrier: a second grid_sum in the same kernel needs a __syncthreads()
// between the two (they share the block's `last` flag and reduction storage).
template <int BLOCK>
__device__ __forceinline__ GridSumResult grid_sum(const GridSum& gs, float block_value)
{
    using Reduce = cub::BlockReduce<float, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    __shared__ bool last;
    if (threadIdx.x == 0) {
        gs.partials[blockIdx.x] = block_value;
        __threadfence();
        last = atomicAdd(gs.ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return {false, 0.0f};
    __threadfence();
    float part = 0.0f;
    for (unsigned b = threadIdx.x; b < gridDim.x; b += BLOCK) part += __ldcg(&gs.partials[b]);
    const float total = Reduce(temp).Sum(part);
    if (threadIdx.x == 0) *gs.ticket = 0;
    return {true, total};
}

}  // namespace kdf
