// Device helpers shared by the loss kernels.
#pragma once

#include "grid_sum.h"
#include "portability.cuh"

#include <cstdint>

namespace kdf {

// Running log-sum-exp of a stream of values: lse = max + log(sum exp(x - max)). An empty state is
// {-inf, 0}; -inf values add nothing (a masked logit), and combining with an empty state returns the other one
// exactly (no exp(-inf - -inf) = NaN). All values -inf: lse = -inf. The rescaling multiply-adds are explicit
// FMAs, so every kernel that keeps one gets the same bits whatever the compiler contracts.
struct OnlineLse {
    float max;
    float sum;

    __host__ __device__ __forceinline__ static OnlineLse empty() { return {-INFINITY, 0.0f}; }

    __device__ __forceinline__ void add(float x)
    {
        if (x == -INFINITY) return;
        if (x > max) {
            sum = __fmaf_rn(sum, expf(max - x), 1.0f);
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
        if (a.max >= b.max) return {a.max, __fmaf_rn(b.sum, expf(b.max - a.max), a.sum)};
        return {b.max, __fmaf_rn(a.sum, expf(a.max - b.max), b.sum)};
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
// block; a and b hold T (float, __half or __nv_bfloat16). Thread k takes columns 4k..4k+3 of each 4*BLOCK
// chunk, in order, then a scalar loop covers the n % 4 tail. With `vec` (both rows aligned to a Pack4<T>) a
// quad is one vector load, otherwise four scalar loads: the same columns in the same order either way, so a
// sum over them has the same bits whatever the rows' alignment, stride or storage type.
template <int BLOCK, typename T, typename F>
__device__ __forceinline__ void for_each_column_pair(const T* a, const T* b, int64_t n, bool vec, F&& f)
{
    const int64_t n4 = n / 4;
    for (int64_t k = threadIdx.x; k < n4; k += BLOCK) {
        Pack4<T> va, vb;
        if (vec) {
            va = reinterpret_cast<const Pack4<T>*>(a)[k];
            vb = reinterpret_cast<const Pack4<T>*>(b)[k];
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) va.v[i] = a[4 * k + i], vb.v[i] = b[4 * k + i];
        }
        // One copy of f for the quad (selects, not an indexed array: the values stay in registers).
#pragma unroll 1
        for (int i = 0; i < 4; ++i) {
            const T x = i == 0 ? va.v[0] : i == 1 ? va.v[1] : i == 2 ? va.v[2] : va.v[3];
            const T y = i == 0 ? vb.v[0] : i == 1 ? vb.v[1] : i == 2 ? vb.v[2] : vb.v[3];
            f(4 * k + i, to_float(x), to_float(y));
        }
    }
    for (int64_t j = 4 * n4 + threadIdx.x; j < n; j += BLOCK) f(j, to_float(a[j]), to_float(b[j]));
}

// out = value, or out += value when accumulating (in fp32, rounded once to T). The add is __fadd_rn: a product
// computing `value` is never fused into it, so accumulating gives exactly the old value plus what a plain store
// would have written.
template <typename T>
__device__ __forceinline__ void store(T* out, float value, bool accumulate)
{
    *out = from_float<T>(accumulate ? __fadd_rn(to_float(*out), value) : value);
}

// out[0..3] = v, or += v when accumulating (16-byte aligned; the adds are __fadd_rn, as in store(), so the four
// elements get the bits four store() calls would write).
__device__ __forceinline__ void store4(float* out, float4 v, bool accumulate)
{
    float4* p = reinterpret_cast<float4*>(out);
    if (accumulate) {
        const float4 o = *p;
        v.x = __fadd_rn(o.x, v.x);
        v.y = __fadd_rn(o.y, v.y);
        v.z = __fadd_rn(o.z, v.z);
        v.w = __fadd_rn(o.w, v.w);
    }
    *p = v;
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
