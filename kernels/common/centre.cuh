// Mean-centred copies of row-major matrices (host side: centre.h), for the losses whose Gram form cancels when rows are close
// relative to their norms (RKD, CC's seed variant). Included by their .cu files (the kernel template is
// instantiated in each).
//
// For an n x dim matrix e (rows ld apart) the copy holds c_i = e_i - m, m the mean row (a thread per column,
// summed in row order), dense (rows dim apart), and with `mean_row` also m itself as row n. The same m is
// subtracted from every row, so differences of rows are kept (exactly, for rows within a factor 2 of m:
// Sterbenz); the Gram matrix of [c; m] then gives e e^T as G'_ij + (G'_in + G'_jn) + G'_nn, where each term
// was summed relative to its own size instead of |e|^2 (gram_of_centred).
#pragma once

#include "centre.h"
#include "gram_split.cuh"
#include "portability.cuh"

#include <cstdint>

namespace kdf {

namespace centre_detail {

constexpr int kCentreBlock = 128;

// Columns of s, then of t; a thread per column (coalesced across a warp).
template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) centre_kernel(CentreJob s, CentreJob t, int64_t n, bool mean_row)
{
    const int64_t columns = s.dim + t.dim;
    for (int64_t col = static_cast<int64_t>(blockIdx.x) * BLOCK + threadIdx.x; col < columns;
         col += static_cast<int64_t>(gridDim.x) * BLOCK) {
        const bool first = col < s.dim;
        // Field by field: a reference to either parameter would put both in local memory (a stack frame).
        const CentreJob job{first ? s.e : t.e, first ? s.ld : t.ld, first ? s.dim : t.dim, first ? s.out : t.out};
        const int64_t j = first ? col : col - s.dim;
        float sum = 0.0f;
        for (int64_t i = 0; i < n; ++i) sum += job.e[i * job.ld + j];
        const float mean = sum / static_cast<float>(n);
        for (int64_t i = 0; i < n; ++i) job.out[i * job.dim + j] = job.e[i * job.ld + j] - mean;
        if (mean_row) job.out[n * job.dim + j] = mean;
    }
}

}  // namespace centre_detail

// Both copies in one kernel on `stream`.
inline cudaError_t centre_rows(cudaStream_t stream, int64_t n, const CentreJob& s, const CentreJob& t, bool mean_row)
{
    constexpr int B = centre_detail::kCentreBlock;
    const int64_t blocks = (s.dim + t.dim + B - 1) / B;
    const dim3 grid(static_cast<unsigned>(blocks < 65535 ? blocks : 65535));
    return kdf::launch<centre_detail::centre_kernel<B>>({grid, dim3(B), 0, stream}, s, t, n, mean_row);
}

// The (n+1) x (n+1) Gram matrices of [c; m] of both matrices: the centring kernel, then build_grams over the
// centred copies (s.out, t.out).
inline cudaError_t centred_grams(cudaStream_t stream, int64_t n, const CentreJob& s, const CentreJob& t, float* gram_s,
                                 float* gram_t, const GramPartials& partials)
{
    const cudaError_t e = centre_rows(stream, n, s, t, true);
    if (e != cudaSuccess) return e;
    return build_grams(stream, n + 1, {s.out, s.dim, s.dim, gram_s, partials.s, 0}, {t.out, t.dim, t.dim, gram_t, partials.t, 0});
}

// (e e^T)_ij for i, j < n from the (n+1) x (n+1) Gram matrix g of [c; m], in double: the four terms (the small
// centred one, the rank-one pair, the mean's square) are added without rounding to float, so a caller that
// goes on in double (CC's normalised differences) keeps the small parts that rounding at |m|^2 would lose.
__host__ __device__ __forceinline__ double gram_of_centred(const float* g, int64_t n, int64_t i, int64_t j)
{
    const int64_t n1 = n + 1;
    return (double(g[i * n1 + j]) + (double(g[i * n1 + n]) + double(g[j * n1 + n]))) + double(g[n * n1 + n]);
}

}  // namespace kdf
