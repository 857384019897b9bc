// The split Gram matrices of gram_split.h: the GEMMs and the slice reduction. Included by the .cu files of
// the N x N losses (the kernel template is instantiated in each).
#pragma once

#include "gram_split.h"
#include "portability.cuh"

namespace kdf {

// One Gram matrix to build: G (n x n, dense) = A A^T, A n x dim with rows ld apart.
struct GramJob {
    const float* a;
    int64_t ld, dim;
    float* gram;
    float* partials;  // from GramPartials; nullptr when not split
    int64_t slices;   // set by build_grams
};

namespace gram_detail {

constexpr int kReduceBlock = 256;

// blockIdx.y selects the job; every thread adds one entry's slices in slice order. (A template, so that
// every .cu file that includes this header can instantiate it.)
template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) gram_reduce_kernel(GramJob s, GramJob t, int64_t n)
{
    const GramJob& job = blockIdx.y == 0 ? s : t;
    if (job.partials == nullptr) return;
    const int64_t slices = job.slices, nn = n * n;
    const int64_t e = static_cast<int64_t>(blockIdx.x) * BLOCK + threadIdx.x;
    if (e >= nn) return;
    double sum = 0.0;  // the slices' sum rounds once
    for (int64_t k = 0; k < slices; ++k) sum += job.partials[k * nn + e];
    job.gram[e] = static_cast<float>(sum);
}

inline cublasStatus_t gram_gemms(cublasHandle_t h, const GramJob& j, int n)
{
    const int ld = static_cast<int>(j.ld);
    const GramSplit s = GramSplit::of(j.dim);
    if (!s.split()) return gemm_rm(h, false, true, n, n, static_cast<int>(j.dim), 1.0f, j.a, ld, j.a, ld, 0.0f, j.gram, n);
    const long long nn = static_cast<long long>(n) * n, cols = s.columns;
    cublasStatus_t st = gemm_rm_batched(h, false, true, n, n, static_cast<int>(s.columns), 1.0f, j.a, ld, cols, j.a, ld,
                                        cols, 0.0f, j.partials, n, nn, static_cast<int>(s.full));
    if (st != CUBLAS_STATUS_SUCCESS || s.rest == 0) return st;
    const float* tail = j.a + s.full * s.columns;
    return gemm_rm(h, false, true, n, n, static_cast<int>(s.rest), 1.0f, tail, ld, tail, ld, 0.0f, j.partials + s.full * nn,
                   n);
}

}  // namespace gram_detail

// G_s and G_t on `stream` (cuBLAS already bound to it): per matrix one GEMM, or a strided-batched GEMM over
// the slices (+ one for a shorter last slice); then one reduction kernel when either is split.
inline LaunchResult build_grams(cublasHandle_t h, cudaStream_t stream, int64_t n, GramJob s, GramJob t)
{
    LaunchResult r;
    s.slices = GramSplit::of(s.dim).slices();
    t.slices = GramSplit::of(t.dim).slices();
    const int ni = static_cast<int>(n);
    if ((r.cublas = gram_detail::gram_gemms(h, s, ni))) return r;
    if ((r.cublas = gram_detail::gram_gemms(h, t, ni))) return r;
    if (s.partials == nullptr && t.partials == nullptr) return r;
    const int64_t blocks = (n * n + gram_detail::kReduceBlock - 1) / gram_detail::kReduceBlock;
    r.cuda = kdf::launch(gram_detail::gram_reduce_kernel<gram_detail::kReduceBlock>,
                         {dim3(static_cast<unsigned>(blocks), 2), dim3(gram_detail::kReduceBlock), 0, stream}, s, t, n);
    return r;
}

}  // namespace kdf
