// NCHW feature maps with explicit sample/channel strides (kdfFeatureMap_t resolved), and the adaptive
// average pooling window rule. Shared by the feature-map losses and their host validation.
#pragma once

#include <kdfuse/kdfuse.h>

#include "cuda_api.h"

#include <cstdint>

namespace kdf {

struct Map4d {
    int64_t n, c, h, w;
    int64_t sn, sc;  // resolved strides (elements)

    __host__ __device__ __forceinline__ int64_t hw() const { return h * w; }
    __host__ __device__ __forceinline__ int64_t numel() const { return n * c * h * w; }
    __host__ __device__ __forceinline__ bool dense() const { return sc == h * w && sn == c * h * w; }
    __host__ __device__ __forceinline__ int64_t offset(int64_t in, int64_t ic) const { return in * sn + ic * sc; }

    static Map4d resolve(const kdfFeatureMap_t& m)
    {
        return {m.n, m.c, m.h, m.w, m.stride_n ? m.stride_n : m.c * m.h * m.w, m.stride_c ? m.stride_c : m.h * m.w};
    }
};

// PyTorch's adaptive_avg_pool window for output index o of `out` over an input of `in`:
// [floor(o * in / out), ceil((o + 1) * in / out)). Windows overlap when `in` is not a multiple of `out`.
__host__ __device__ __forceinline__ void adaptive_window(int64_t o, int64_t in, int64_t out, int64_t& begin, int64_t& end)
{
    begin = (o * in) / out;
    end = ((o + 1) * in + out - 1) / out;
}

}  // namespace kdf
