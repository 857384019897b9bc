// Gram matrices G = A A^T (n x n) of wide row-major A (n x dim) for the N x N losses (SP, CC, RKD, PKT),
// split over the columns. Host-compilable: the split and the partials' layout are shared by the launchers
// and the workspace size queries; the GEMMs and the reduction kernel are in gram_split.cuh.
//
// Why split. A GEMM sums its k = dim products per entry; cuBLAS's tiled kernels do that in one thread's
// registers (sequentially over k, unless its heuristics choose split-K), and an n x n output of a distillation
// batch (n = 64) is only a few tiles, so one GEMM over dim = 65536 (a flattened 64x32x32 map) both leaves most
// of the GPU idle and sums 65536 same-sign products (the diagonal) in one fp32 accumulator: relative error
// ~1e-5, which the Gram-form losses (RKD's distances and angles, CC's normalised difference) amplify. Here
// the columns are cut into up to kMaxSlices slices of at least kMinSliceColumns (64): one strided-batched GEMM
// computes the slices' partial Grams (plus one GEMM for a shorter last slice), and gram_reduce_kernel adds
// them in slice order (in double, rounded once per entry). On dim = 65536 that is 64 slices of 1024,
// with an error ~40x smaller than one sequential sum (and below a CPU BLAS's). dim <= kMinSliceColumns
// keeps one GEMM straight into G and no partials.
//
// Memory: slices x n x n floats of partials per matrix (at most 64 n^2: 1 MiB at n = 64), independent of dim
// beyond 64 slices.
#pragma once

#include "gemm.h"
#include "grid_sum.h"

#include <cstdint>

namespace kdf {

struct GramSplit {
    static constexpr int64_t kMinSliceColumns = 64;
    static constexpr int64_t kMaxSlices = 64;

    int64_t columns;  // columns per slice
    int64_t full;     // slices of `columns` columns (one strided-batched GEMM)
    int64_t rest;     // columns of the shorter last slice (0 = none)

    int64_t slices() const { return full + (rest > 0 ? 1 : 0); }
    bool split() const { return slices() > 1; }

    static GramSplit of(int64_t dim)
    {
        int64_t slices = (dim + kMinSliceColumns - 1) / kMinSliceColumns;
        if (slices > kMaxSlices) slices = kMaxSlices;
        if (slices < 2) return {dim, 1, 0};
        GramSplit s{};
        s.columns = (dim + slices - 1) / slices;
        s.full = dim / s.columns;
        s.rest = dim - s.full * s.columns;
        return s;
    }
    // Bytes of the partial Grams of an n x dim matrix (0 when it is not split).
    static int64_t partial_bytes(int64_t n, int64_t dim)
    {
        const GramSplit s = of(dim);
        return s.split() ? round_up(s.slices() * n * n * int64_t(sizeof(float)), 256) : 0;
    }
};

// The partial Grams of a student/teacher pair, carved from a loss's workspace.
struct GramPartials {
    float* s;  // nullptr when the student's Gram is one GEMM
    float* t;

    static int64_t bytes(int64_t n, int64_t dim_s, int64_t dim_t)
    {
        return GramSplit::partial_bytes(n, dim_s) + GramSplit::partial_bytes(n, dim_t);
    }
    static GramPartials carve(unsigned char* p, int64_t n, int64_t dim_s, int64_t dim_t)
    {
        const int64_t bs = GramSplit::partial_bytes(n, dim_s), bt = GramSplit::partial_bytes(n, dim_t);
        return {bs ? reinterpret_cast<float*>(p) : nullptr, bt ? reinterpret_cast<float*>(p + bs) : nullptr};
    }
};

}  // namespace kdf
