// The split Gram matrices of gram_split.h: the partial-Gram kernel (products accumulated in double) and the
// slice reduction. Included by the .cu files of the N x N losses (the kernel templates are instantiated in each).
#pragma once

#include "gram_split.h"
#include "portability.cuh"

namespace kdf {

// One Gram matrix to build: G (n x n, dense) = A A^T, A n x dim with rows ld apart.
struct GramJob {
    const float* a;
    int64_t ld, dim;
    float* gram;
    double* partials;  // from GramPartials; nullptr when not split
    int64_t slices;    // set by build_grams
};

namespace gram_detail {

// One of two kernel parameters, chosen per block. Field by field: a reference to either parameter would make the
// compiler copy both to local memory (a stack frame) to take its address.
__device__ __forceinline__ GramJob select(bool first, const GramJob& s, const GramJob& t)
{
    return {first ? s.a : t.a,       first ? s.ld : t.ld,           first ? s.dim : t.dim,
            first ? s.gram : t.gram, first ? s.partials : t.partials, first ? s.slices : t.slices};
}

constexpr int kTile = 16;   // a block computes kTile x kTile entries
constexpr int kChunk = 32;  // columns staged in shared memory per step
constexpr int kReduceBlock = 256;

// The block's kTile x kTile tile (rows i0.., columns j0..) of sum_{k in [begin, end)} A(i, k) A(j, k), with
// A(i, k) = a[i * rs + k * cs] and i, j < n: this thread's entry (i0 + ty, j0 + tx), accumulated in double (each
// product of two floats is exact in double), the columns staged in shared memory in chunks of K (loads coalesced
// along whichever of rs, cs is 1). Every thread of the block calls it (it has barriers).
template <int T, int K>
__device__ __forceinline__ double gram_tile(const float* a, int64_t rs, int64_t cs, int64_t n, int64_t begin, int64_t end,
                                            int64_t i0, int64_t j0)
{
    __shared__ float rows_i[T][K + 1], rows_j[T][K + 1];
    const int ty = threadIdx.x / T, tx = threadIdx.x % T;
    double acc = 0.0;
    for (int64_t c0 = begin; c0 < end; c0 += K) {
        for (int e = threadIdx.x; e < T * K; e += T * T) {
            const int r = rs == 1 ? e % T : e / K, c = rs == 1 ? e / T : e % K;
            const int64_t col = c0 + c;
            const bool in_col = col < end;
            rows_i[r][c] = in_col && i0 + r < n ? a[(i0 + r) * rs + col * cs] : 0.0f;
            rows_j[r][c] = in_col && j0 + r < n ? a[(j0 + r) * rs + col * cs] : 0.0f;
        }
        __syncthreads();
        for (int c = 0; c < K; ++c) acc += static_cast<double>(rows_i[ty][c]) * static_cast<double>(rows_j[tx][c]);
        __syncthreads();
    }
    return acc;
}

// Writes an entry of a symmetric n x n matrix and, from a tile above the diagonal, its mirror image (tiles below
// the diagonal are skipped, so the matrix is exactly symmetric).
template <typename V>
__device__ __forceinline__ void store_symmetric(V* m, int64_t n, int64_t i, int64_t j, bool mirror, V value)
{
    m[i * n + j] = value;
    if (mirror) m[j * n + i] = value;
}

// blockIdx.z: the slice, of s's slices and then t's; (blockIdx.y, blockIdx.x): the tile row and column (upper tiles).
template <int T, int K>
__global__ void __launch_bounds__(T * T) gram_partial_kernel(GramJob s, GramJob t, int64_t n)
{
    if (blockIdx.x < blockIdx.y) return;
    const bool first = blockIdx.z < s.slices;
    const GramJob job = select(first, s, t);
    const int64_t slice = first ? blockIdx.z : blockIdx.z - s.slices;
    const GramSplit split = GramSplit::of(job.dim);
    const int64_t begin = slice * split.columns;
    const int64_t end = begin + split.columns < job.dim ? begin + split.columns : job.dim;
    const int64_t i0 = int64_t(blockIdx.y) * T, j0 = int64_t(blockIdx.x) * T;
    const double acc = gram_tile<T, K>(job.a, job.ld, 1, n, begin, end, i0, j0);
    const int64_t i = i0 + threadIdx.x / T, j = j0 + threadIdx.x % T;
    if (i >= n || j >= n) return;
    const bool mirror = blockIdx.x != blockIdx.y;
    if (job.partials == nullptr)
        store_symmetric(job.gram, n, i, j, mirror, static_cast<float>(acc));
    else
        store_symmetric(job.partials + slice * n * n, n, i, j, mirror, acc);
}

// blockIdx.y selects the job; every thread adds one entry's slices in slice order, in double, rounding once.
template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) gram_reduce_kernel(GramJob s, GramJob t, int64_t n)
{
    const GramJob job = select(blockIdx.y == 0, s, t);
    if (job.partials == nullptr) return;
    const int64_t slices = job.slices, nn = n * n;
    const int64_t e = static_cast<int64_t>(blockIdx.x) * BLOCK + threadIdx.x;
    if (e >= nn) return;
    double sum = 0.0;
    for (int64_t k = 0; k < slices; ++k) sum += job.partials[k * nn + e];
    job.gram[e] = static_cast<float>(sum);
}

}  // namespace gram_detail

// G_s and G_t on `stream`: one launch of the partial-Gram kernel for every slice of both matrices (a matrix of
// one slice is written straight into G), then one reduction kernel when either is split.
inline cudaError_t build_grams(cudaStream_t stream, int64_t n, GramJob s, GramJob t)
{
    using namespace gram_detail;
    s.slices = GramSplit::of(s.dim).slices();
    t.slices = GramSplit::of(t.dim).slices();
    const unsigned tiles = static_cast<unsigned>((n + kTile - 1) / kTile);
    const dim3 grid(tiles, tiles, static_cast<unsigned>(s.slices + t.slices));
    cudaError_t e = kdf::launch<gram_partial_kernel<kTile, kChunk>>({grid, dim3(kTile * kTile), 0, stream}, s, t, n);
    if (e != cudaSuccess || (s.partials == nullptr && t.partials == nullptr)) return e;
    const int64_t blocks = (n * n + kReduceBlock - 1) / kReduceBlock;
    return kdf::launch<gram_reduce_kernel<kReduceBlock>>({dim3(static_cast<unsigned>(blocks), 2), dim3(kReduceBlock), 0, stream},
                       s, t, n);
}

}  // namespace kdf
