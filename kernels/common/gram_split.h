// Gram matrices G = A A^T (n x n) of wide row-major A (n x dim) for the N x N losses (SP, CC, RKD, PKT),
// accumulated in double and split over the columns. Host-compilable: the split and the partials' layout are
// shared by the launchers and the workspace size queries; the kernels are in gram_split.cuh.
//
// Why double. These losses subtract Gram entries (RKD's distances and angles, CC's and SP's normalised
// differences, PKT's 1 + cos): an fp32 sum of dim products (cuBLAS accumulates each entry in fp32, sequentially
// over k within a tile) leaves each entry an error of a few ulps times sqrt(dim), which the subtractions
// amplify; fp32 GEMMs left RKD (anti-parallel rows), PKT (rows with a large common offset) 2-2.5x less accurate
// than the seed's fp32 code, which forms differences before its products. Each product of two floats is exact in
// double, so a double accumulator leaves G one rounding per entry. cuBLAS has no GEMM that reads fp32 and
// accumulates in fp64 (DGEMM would need double copies of the inputs), so the Grams are kdfuse's own kernel; the
// gradient GEMMs stay on cuBLAS.
// Why split. An n x n output of a distillation batch (n = 64) is only a few tiles, so one pass over dim = 65536
// (a flattened 64x32x32 map) would leave most of the GPU idle: the columns are cut into up to kMaxSlices slices
// of at least kMinSliceColumns (64), every (tile, slice) is a block of one launch writing the slice's partial
// Gram in double, and gram_reduce_kernel adds the slices in slice order (in double, rounded once per entry).
// dim <= kMinSliceColumns is one slice written straight into G, without partials.
//
// Memory: slices x n x n doubles of partials per matrix (at most 64 n^2: 2 MiB at n = 64), independent of dim
// beyond 64 slices.
#pragma once

#include "grid_sum.h"

#include <cstdint>

namespace kdf {

struct GramSplit {
    static constexpr int64_t kMinSliceColumns = 64;
    static constexpr int64_t kMaxSlices = 64;

    int64_t columns;  // columns per slice
    int64_t full;     // slices of `columns` columns
    int64_t rest;     // columns of the shorter last slice (0 = none)

    __host__ __device__ int64_t slices() const { return full + (rest > 0 ? 1 : 0); }
    __host__ __device__ bool split() const { return slices() > 1; }

    __host__ __device__ static GramSplit of(int64_t dim)
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
        return s.split() ? round_up(s.slices() * n * n * int64_t(sizeof(double)), 256) : 0;
    }
};

// The partial Grams of a student/teacher pair, carved from a loss's workspace.
struct GramPartials {
    double* s;  // nullptr when the student's Gram is one slice
    double* t;

    static int64_t bytes(int64_t n, int64_t dim_s, int64_t dim_t)
    {
        return GramSplit::partial_bytes(n, dim_s) + GramSplit::partial_bytes(n, dim_t);
    }
    static GramPartials carve(unsigned char* p, int64_t n, int64_t dim_s, int64_t dim_t)
    {
        const int64_t bs = GramSplit::partial_bytes(n, dim_s), bt = GramSplit::partial_bytes(n, dim_t);
        return {bs ? reinterpret_cast<double*>(p) : nullptr, bt ? reinterpret_cast<double*>(p + bs) : nullptr};
    }
};

}  // namespace kdf
