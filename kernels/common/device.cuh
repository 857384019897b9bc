// Device helpers shared by the loss kernels.
#pragma once

#include "grid_sum.h"
#include "portability.cuh"

#include <cstdint>

namespace kdf {

// Running log-sum-exp of a stream of values: lse = max + log(sum exp(x - max)). An empty state is
// {-inf, 0}; -inf values add nothing (a masked logit), and combining with an empty state returns the other one
// exactly (no exp(-inf - -inf) = NaN). All values -inf: lse = -inf.
struct OnlineLse {
    float max;
    float sum;

    __host__ __device__ __forceinline__ static OnlineLse empty() { return {-INFINITY, 0.0f}; }

    __device__ __forceinline__ void add(float x)
    {
        if (x == -INFINITY) return;
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

// max(x, m) that keeps a NaN x NaN, as torch.clamp(min=m) and F.normalize's max(norm, eps) do (fmaxf returns
// the other operand, which would turn a NaN input into finite outputs).
__host__ __device__ __forceinline__ float nan_max(float x, float m) { return x < m ? m : x; }

// Sum over a full warp by a fixed butterfly: every lane gets the same bits.
__device__ __forceinline__ float warp_sum(float x)
{
    for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// p is a multiple of `bytes` (a power of two).
__host__ __device__ __forceinline__ bool aligned_to(const void* p, size_t bytes)
{
    return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}
__host__ __device__ __forceinline__ bool aligned16(const void* p) { return aligned_to(p, 16); }

// Four elements of type T, the unit of one vector load: 16 bytes of fp32, 8 bytes of fp16 / bf16.
template <typename T>
struct alignas(4 * sizeof(T)) Pack4 {
    T v[4];
};

// Calls f(j, a[j], b[j]) (as floats) for the columns of one row that belong to this thread of a BLOCK-thread
// block; a and b hold T (float, __half or __nv_bfloat16). With `vec` (both rows aligned to a Pack4<T>) the
// main loop uses vector loads, thread k taking columns 4k..4k+3 of each 4*BLOCK chunk, and a scalar loop
// covers the tail; otherwise every load is scalar.
template <int BLOCK, typename T, typename F>
__device__ __forceinline__ void for_each_column_pair(const T* a, const T* b, int64_t n, bool vec, F&& f)
{
    int64_t start = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        const Pack4<T>* a4 = reinterpret_cast<const Pack4<T>*>(a);
        const Pack4<T>* b4 = reinterpret_cast<const Pack4<T>*>(b);
        for (int64_t k = threadIdx.x; k < n4; k += BLOCK) {
            const Pack4<T> va = a4[k], vb = b4[k];
            f(4 * k, to_float(va.v[0]), to_float(vb.v[0]));
            f(4 * k + 1, to_float(va.v[1]), to_float(vb.v[1]));
            f(4 * k + 2, to_float(va.v[2]), to_float(vb.v[2]));
            f(4 * k + 3, to_float(va.v[3]), to_float(vb.v[3]));
        }
        start = n4 * 4;
    }
    for (int64_t j = start + threadIdx.x; j < n; j += BLOCK) f(j, to_float(a[j]), to_float(b[j]));
}

// out = value, or out += value when accumulating (in fp32, rounded once to T).
template <typename T>
__device__ __forceinline__ void store(T* out, float value, bool accumulate)
{
    *out = from_float<T>(accumulate ? to_float(*out) + value : value);
}

// Thread 0's `value` in every thread of the block. Every thread calls it; it ends with a barrier, so it may be
// called again at once (its shared slot is reused).
template <typename T>
__device__ __forceinline__ T broadcast_from_thread0(T value)
{
    __shared__ T result;
    if (threadIdx.x == 0) result = value;
    __syncthreads();
    const T out = result;
    __syncthreads();
    return out;
}
// The block-wide sum (or reduction under `op`) of `value`, in CUB's fixed order, in every thread of a BLOCK-thread
// block; like broadcast_from_thread0 it ends with a barrier.
template <int BLOCK, typename T>
__device__ __forceinline__ T block_sum(T value)
{
    using Reduce = cub::BlockReduce<T, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    return broadcast_from_thread0(Reduce(temp).Sum(value));
}
template <int BLOCK, typename T, typename Op>
__device__ __forceinline__ T block_reduce(T value, Op op)
{
    using Reduce = cub::BlockReduce<T, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    return broadcast_from_thread0(Reduce(temp).Reduce(value, op));
}

// Called by every thread of every block once its thread 0 has stored the block's results: thread 0 takes a ticket
// (zero at launch); true in every thread of the last block to arrive, which then sees every block's stores.
__device__ __forceinline__ bool last_block(unsigned* ticket)
{
    __shared__ bool last;
    if (threadIdx.x == 0) {
        __threadfence();
        last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return false;
    __threadfence();
    return true;
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
    if (threadIdx.x == 0) gs.partials[blockIdx.x] = block_value;
    if (!last_block(gs.ticket)) return {false, 0.0f};
    float part = 0.0f;
    for (unsigned b = threadIdx.x; b < gridDim.x; b += BLOCK) part += __ldcg(&gs.partials[b]);
    const float total = Reduce(temp).Sum(part);
    if (threadIdx.x == 0) *gs.ticket = 0;
    return {true, total};
}

}  // namespace kdf
