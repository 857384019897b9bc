// Elementwise walk over a pair of NCHW feature maps of one shape (s and t, plus s's gradient), shared by the
// AB and OFD kernels (device code: include after device.cuh).
//
// Order. The logical (NCHW) elements are taken in groups of 4 consecutive indices, group u = elements
// 4u .. 4u+3. A thread visits groups first, first + stride, first + 2 stride, ... and the elements of a group
// in order. The order depends only on the shape, `first` and `stride` - not on the layout (dense or strided)
// nor on the alignment of the pointers - so a per-thread sum is bitwise the same whichever loop runs:
//   Flat4   both maps dense and s, t (and the gradient) 16-byte aligned: one 16-byte load per group, scalar
//           loads for a last, partial group;
//   Planes4 h*w and every stride a multiple of 4, all pointers 16-byte aligned: one 16-byte load per group
//           (a group never crosses an H x W plane), sample and channel strides honoured;
//   Scalar  anything else: scalar loads through the strides.
// The (n, c, offset) position is carried from group to group with additions only: no 64-bit division in the
// loop (one per thread to find its first position).
#pragma once

#include "device.cuh"
#include "feature_map.h"

#include <cstdint>

namespace kdf {

enum class PairLayout { Flat4, Planes4, Scalar };

// Whether h*w and the strides of `m` are multiples of 4: with a 16-byte aligned base pointer, every group of
// 4 elements inside an H x W plane is then 16-byte aligned.
__host__ __device__ __forceinline__ bool planes4(const Map4d& m)
{
    return m.hw() % 4 == 0 && m.sc % 4 == 0 && m.sn % 4 == 0;
}

// The loop for maps s and t and their pointers (grad may be NULL). `channel`: the visitor needs the channel
// index (a dense walk then prefers Planes4, whose position advances once per group instead of per element).
inline PairLayout pair_layout(const Map4d& s, const Map4d& t, const void* ps, const void* pt, const void* pg, bool channel)
{
    if (!(aligned16(ps) && aligned16(pt) && (pg == nullptr || aligned16(pg)))) return PairLayout::Scalar;
    const bool flat = s.dense() && t.dense();
    if (flat && !channel) return PairLayout::Flat4;
    if (planes4(s) && planes4(t)) return PairLayout::Planes4;
    return flat ? PairLayout::Flat4 : PairLayout::Scalar;
}

// A position in a walk over N x C planes of `len` units each, and a fixed advance of some units.
struct PlanePos {
    int64_t n, c, off;

    __device__ __forceinline__ static PlanePos at(int64_t units, int64_t channels, int64_t len)
    {
        const int64_t plane = units / len;
        return {plane / channels, plane % channels, units - plane * len};
    }
    // += d, where d = PlanePos::at(units) of the advance (d.off < len, d.c < channels).
    __device__ __forceinline__ void advance(const PlanePos& d, int64_t channels, int64_t len)
    {
        off += d.off;
        if (off >= len) {
            off -= len;
            ++c;
        }
        c += d.c;
        if (c >= channels) {
            c -= channels;
            ++n;
        }
        n += d.n;
    }
    // += 1 unit.
    __device__ __forceinline__ void next(int64_t channels, int64_t len)
    {
        if (++off == len) {
            off = 0;
            if (++c == channels) {
                c = 0;
                ++n;
            }
        }
    }
};

// Calls r = f(c, s_i, t_i) for the elements i of the groups first, first + stride, ... of maps ms / mt (one
// shape) and stores r into g (layout of ms) unless g is NULL. CHANNEL: f uses c (else it gets 0). PAIR: t is
// read (else f gets 0 for t_i and t may be NULL).
template <PairLayout LAYOUT, bool CHANNEL, bool PAIR, typename F>
__device__ __forceinline__ void for_each_pair(const Map4d& ms, const Map4d& mt, const float* s, const float* t, float* g,
                                              bool accumulate, int64_t first, int64_t stride, F&& f)
{
    const int64_t total = ms.numel();
    const int64_t groups = (total + 3) / 4;
    if (first >= groups) return;
    const int64_t C = ms.c;
    if constexpr (LAYOUT == PairLayout::Planes4) {
        const int64_t len = ms.hw() / 4;
        PlanePos p = PlanePos::at(first, C, len);
        const PlanePos d = PlanePos::at(stride, C, len);
        for (int64_t u = first; u < groups; u += stride) {
            const int64_t os = ms.offset(p.n, p.c) + 4 * p.off;
            const float4 vs = *reinterpret_cast<const float4*>(s + os);
            float4 vt = {0.0f, 0.0f, 0.0f, 0.0f};
            if constexpr (PAIR) vt = *reinterpret_cast<const float4*>(t + mt.offset(p.n, p.c) + 4 * p.off);
            float4 r;
            r.x = f(p.c, vs.x, vt.x);
            r.y = f(p.c, vs.y, vt.y);
            r.z = f(p.c, vs.z, vt.z);
            r.w = f(p.c, vs.w, vt.w);
            if (g) store4(g + os, r, accumulate);
            p.advance(d, C, len);
        }
    } else {
        // Element positions: needed for the strides (Scalar) or for the channel.
        constexpr bool kPos = LAYOUT == PairLayout::Scalar || CHANNEL;
        const int64_t len = ms.hw();
        PlanePos p{0, 0, 0}, d{0, 0, 0};
        if constexpr (kPos) {
            p = PlanePos::at(4 * first, C, len);
            d = PlanePos::at(4 * stride - 4, C, len);  // after the 4 single steps of a full group
        }
        // The full groups (16-byte loads for Flat4), then the last, partial group if any.
        const int64_t full = total / 4;
        int64_t u = first;
        for (; u < full; u += stride) {
            const int64_t e = 4 * u;
            float4 vs, vt = {0.0f, 0.0f, 0.0f, 0.0f}, r;
            if constexpr (LAYOUT == PairLayout::Flat4) {
                vs = *reinterpret_cast<const float4*>(s + e);
                if constexpr (PAIR) vt = *reinterpret_cast<const float4*>(t + e);
                r.x = f(p.c, vs.x, vt.x);
                if constexpr (kPos) p.next(C, len);
                r.y = f(p.c, vs.y, vt.y);
                if constexpr (kPos) p.next(C, len);
                r.z = f(p.c, vs.z, vt.z);
                if constexpr (kPos) p.next(C, len);
                r.w = f(p.c, vs.w, vt.w);
                if constexpr (kPos) p.next(C, len);
                if (g) store4(g + e, r, accumulate);
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const int64_t os = ms.offset(p.n, p.c) + p.off;
                    float vt1 = 0.0f;
                    if constexpr (PAIR) vt1 = t[mt.offset(p.n, p.c) + p.off];
                    const float r1 = f(p.c, s[os], vt1);
                    if (g) store(g + os, r1, accumulate);
                    p.next(C, len);
                }
            }
            if constexpr (kPos) p.advance(d, C, len);
        }
        if (u < groups) {
            for (int64_t e = 4 * u; e < total; ++e) {
                int64_t os = e, ot = e;
                if constexpr (LAYOUT == PairLayout::Scalar) {
                    os = ms.offset(p.n, p.c) + p.off;
                    ot = mt.offset(p.n, p.c) + p.off;
                }
                float vt1 = 0.0f;
                if constexpr (PAIR) vt1 = t[ot];
                const float r1 = f(p.c, s[os], vt1);
                if (g) store(g + os, r1, accumulate);
                if constexpr (kPos) p.next(C, len);
            }
        }
    }
}

}  // namespace kdf
