// cuBLAS GEMMs on row-major matrices, bound to one call of the C API. Host code (plain C++ in both
// builds): the relational and Gram losses use it from their launchers.
//
// Binding: every call sets the caller's stream, then hands cuBLAS a slice of the caller's workspace from its first
// 256-byte boundary (cublasSetStream resets the workspace, so the order matters) so cuBLAS never allocates, and
// sets the math mode from the handle (fp32 by default, TF32 only when the handle allows it).
#pragma once

#include "cuda_api.h"

#include <cstddef>
#include <cstdint>

namespace kdf {

// Workspace every GEMM-based call reserves for cuBLAS (its recommended minimum; a constant, so the
// size query depends only on the params).
inline constexpr size_t kCublasWorkspaceBytes = size_t(4) << 20;

// Result of a launcher that issues kernels and cuBLAS calls: the first failure of either kind.
struct LaunchResult {
    cudaError_t cuda = cudaSuccess;
    cublasStatus_t cublas = CUBLAS_STATUS_SUCCESS;
};

// cuBLAS refuses a workspace that is not 256-byte aligned (CUBLAS_STATUS_INVALID_VALUE); the caller's workspace,
// and so the slice reserved for cuBLAS, is only 16-byte aligned. The slice is handed over from its first 256-byte
// boundary: at most 240 bytes of it go unused.
inline constexpr uintptr_t kCublasWorkspaceAlignment = 256;

inline cublasStatus_t gemm_bind(cublasHandle_t h, cudaStream_t stream, void* cublas_workspace, bool allow_tf32)
{
    const auto base = reinterpret_cast<uintptr_t>(cublas_workspace);
    const uintptr_t aligned = (base + kCublasWorkspaceAlignment - 1) / kCublasWorkspaceAlignment * kCublasWorkspaceAlignment;
    cublasStatus_t s = cublasSetStream(h, stream);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasSetWorkspace(h, reinterpret_cast<void*>(aligned), kCublasWorkspaceBytes - (aligned - base));
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetMathMode(h, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    return s;
}

// Row-major C (m x n, row stride ldc) = alpha * op(A) op(B) + beta * C, op(A) m x k, op(B) k x n;
// trans_a / trans_b: A is stored k x m / B is stored n x k. A row-major matrix is the column-major
// transpose, so this is the column-major C^T = op(B)^T op(A)^T.
inline cublasStatus_t gemm_rm(cublasHandle_t h, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                              const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc)
{
    return cublasSgemm(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, B,
                       ldb, A, lda, &beta, C, ldc);
}

// The strided-batched form: batch i uses A + i*stride_a, B + i*stride_b, C + i*stride_c.
inline cublasStatus_t gemm_rm_batched(cublasHandle_t h, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                                      const float* A, int lda, long long stride_a, const float* B, int ldb,
                                      long long stride_b, float beta, float* C, int ldc, long long stride_c, int batch)
{
    return cublasSgemmStridedBatched(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                                     &alpha, B, ldb, stride_b, A, lda, stride_a, &beta, C, ldc, stride_c, batch);
}

}  // namespace kdf
