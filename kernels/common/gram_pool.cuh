// Device helpers shared by the Gram losses on feature maps (kernels/nst.cu, kernels/fsp.cu): adaptive
// average pooling of one H x W plane to h x w read straight from the input (no pooled tensor of the input's
// size), and its adjoint (the gradient of an input pixel gathered from the pooled gradient).
//
// Windows follow PyTorch's adaptive_avg_pool2d (kdf::adaptive_window): output o covers
// [floor(o*in/out), ceil((o+1)*in/out)). Pooling only shrinks here (in >= out), so an input pixel lies in
// at most two windows per dimension: those o in [floor(y*out/in), ceil((y+1)*out/in) - 1].
#pragma once

#include "device.cuh"
#include "feature_map.h"

namespace kdf::gram {

// Mean of the window of output position (oy, ox) of `plane` (H x W, rows W apart) pooled to h x w.
__device__ __forceinline__ float pool_at(const float* plane, int64_t H, int64_t W, int64_t h, int64_t w, int64_t oy,
                                         int64_t ox)
{
    int64_t y0, y1, x0, x1;
    adaptive_window(oy, H, h, y0, y1);
    adaptive_window(ox, W, w, x0, x1);
    float s = 0.0f;
    for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x) s += plane[y * W + x];
    return s / static_cast<float>((y1 - y0) * (x1 - x0));
}

// d(input pixel (y, x)) = sum over the windows o containing it of dpool[o] / |window o|, dpool dense h x w.
__device__ __forceinline__ float unpool_at(const float* dpool, int64_t H, int64_t W, int64_t h, int64_t w, int64_t y,
                                           int64_t x)
{
    const int64_t oy0 = (y * h) / H, oy1 = ((y + 1) * h + H - 1) / H;  // candidate rows [oy0, oy1)
    const int64_t ox0 = (x * w) / W, ox1 = ((x + 1) * w + W - 1) / W;
    float s = 0.0f;
    for (int64_t oy = oy0; oy < oy1 && oy < h; ++oy) {
        int64_t y0, y1;
        adaptive_window(oy, H, h, y0, y1);
        if (y < y0 || y >= y1) continue;
        for (int64_t ox = ox0; ox < ox1 && ox < w; ++ox) {
            int64_t x0, x1;
            adaptive_window(ox, W, w, x0, x1);
            if (x < x0 || x >= x1) continue;
            s += dpool[oy * w + ox] / static_cast<float>((y1 - y0) * (x1 - x0));
        }
    }
    return s;
}

}  // namespace kdf::gram
