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

// Eight elements of type T, the unit of the column walk below: one 16-byte access of fp16 / bf16, two of fp32.
template <typename T>
struct alignas(16) Pack8 {
    T v[8];
};

namespace detail {

// Calls f on columns j0 .. j0 + 3, elements H .. H + 3 of the two packs, returning the four results when STORE.
// One copy of f for the quad (selects, not an indexed array: the values stay in registers).
template <int H, bool STORE, typename T, typename F>
__device__ __forceinline__ float4 visit_quad(const Pack8<T>& va, const Pack8<T>& vb, int64_t j0, F& f)
{
    float4 r = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 1
    for (int i = 0; i < 4; ++i) {
        const T x = i == 0 ? va.v[H] : i == 1 ? va.v[H + 1] : i == 2 ? va.v[H + 2] : va.v[H + 3];
        const T y = i == 0 ? vb.v[H] : i == 1 ? vb.v[H + 1] : i == 2 ? vb.v[H + 2] : vb.v[H + 3];
        if constexpr (STORE) {
            const float v = f(j0 + i, to_float(x), to_float(y));
            r.x = i == 0 ? v : r.x;
            r.y = i == 1 ? v : r.y;
            r.z = i == 2 ? v : r.z;
            r.w = i == 3 ? v : r.w;
        } else {
            f(j0 + i, to_float(x), to_float(y));
        }
    }
    return r;
}

// out[0..7] = lo, hi (or += when accumulating, each add an __fadd_rn in fp32 as in store(), then rounded to T):
// one Pack8 store when `vec` (16-byte aligned), else eight scalar ones; the same bits either way.
template <typename T>
__device__ __forceinline__ void store8(T* out, float4 lo, float4 hi, bool accumulate, bool vec)
{
    const float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    if (!vec) {
#pragma unroll
        for (int i = 0; i < 8; ++i) store(out + i, v[i], accumulate);
        return;
    }
    Pack8<T>* p = reinterpret_cast<Pack8<T>*>(out);
    Pack8<T> o;
    if (accumulate) {
        const Pack8<T> old = *p;
#pragma unroll
        for (int i = 0; i < 8; ++i) o.v[i] = from_float<T>(__fadd_rn(to_float(old.v[i]), v[i]));
    } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) o.v[i] = from_float<T>(v[i]);
    }
    *p = o;
}

template <int BLOCK, bool STORE, typename T, typename F>
__device__ __forceinline__ void column_walk(const T* a, const T* b, int64_t n, bool vec, T* out, bool out_vec,
                                            bool accumulate, F& f)
{
    const int64_t n8 = n / 8;
    for (int64_t k = threadIdx.x; k < n8; k += BLOCK) {
        Pack8<T> va, vb;
        if (vec) {
            va = reinterpret_cast<const Pack8<T>*>(a)[k];
            vb = reinterpret_cast<const Pack8<T>*>(b)[k];
        } else {
#pragma unroll
            for (int i = 0; i < 8; ++i) va.v[i] = a[8 * k + i], vb.v[i] = b[8 * k + i];
        }
        const float4 lo = visit_quad<0, STORE>(va, vb, 8 * k, f);
        const float4 hi = visit_quad<4, STORE>(va, vb, 8 * k + 4, f);
        if constexpr (STORE) {
            if (out) store8(out + 8 * k, lo, hi, accumulate, out_vec);
        }
    }
    for (int64_t j = 8 * n8 + threadIdx.x; j < n; j += BLOCK) {
        if constexpr (STORE) {
            const float v = f(j, to_float(a[j]), to_float(b[j]));
            if (out) store(out + j, v, accumulate);
        } else {
            f(j, to_float(a[j]), to_float(b[j]));
        }
    }
}

}  // namespace detail

// Whether every row of a row-major matrix of T (rows `ld` elements apart, from `base`) starts on a 16-byte
// boundary: the condition of the column walk's vector accesses.
template <typename T>
__host__ __device__ __forceinline__ bool rows_aligned16(const void* base, int64_t ld)
{
    return aligned_to(base, 16) && (ld * static_cast<int64_t>(sizeof(T))) % 16 == 0;
}

// Calls f(j, a[j], b[j]) (as floats) for the columns of one row that belong to this thread of a BLOCK-thread
// block; a and b hold T (float, __half or __nv_bfloat16). Thread k takes columns 8k..8k+7 of each 8*BLOCK
// chunk, in order, then a scalar loop covers the n % 8 tail. With `vec` (both rows 16-byte aligned) an octet is
// one 16-byte load of 16-bit data or two of fp32, otherwise eight scalar loads: the same columns in the same
// order either way, so a sum over them has the same bits whatever the rows' alignment, stride or storage type.
template <int BLOCK, typename T, typename F>
__device__ __forceinline__ void for_each_column_pair(const T* a, const T* b, int64_t n, bool vec, F&& f)
{
    detail::column_walk<BLOCK, false>(a, b, n, vec, static_cast<T*>(nullptr), false, false, f);
}

// The same walk with r = f(j, a[j], b[j]) stored to out[j] (unless out is NULL; out += r when accumulating, as
// store()): with `out_vec` (out 16-byte aligned) eight results are one 16-byte store of 16-bit data or two of
// fp32, otherwise eight scalar stores, with the same bits.
template <int BLOCK, typename T, typename F>
__device__ __forceinline__ void for_each_column_pair(const T* a, const T* b, int64_t n, bool vec, T* out, bool out_vec,
                                                     bool accumulate, F&& f)
{
    detail::column_walk<BLOCK, true>(a, b, n, vec, out, out_vec, accumulate, f);
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
