// cuBLAS shim for the SIMT backend: handle, stream, math and pointer modes, and the fp32 GEMMs kdfuse
// uses (cublasSgemm, cublasSgemmStridedBatched, cublasGemmEx, cublasGemmStridedBatchedEx), column-major,
// with cuBLAS's argument validation (CUBLAS_STATUS_INVALID_VALUE for bad sizes, leading dimensions or
// operations), quick returns (m == 0 or n == 0: nothing; k == 0 or alpha == 0: C = beta C) and
// beta == 0 never reading C (NaN in C is overwritten, as in cuBLAS). TF32 is modelled: when the
// math mode or compute type allows it, A and B are rounded to TF32 (10-bit mantissa) before the
// products. The sum runs over k in order in fp32 with fused multiply-adds: not cuBLAS's blocking,
// so compare with a tolerance. Values follow the CUDA 13 headers.
#pragma once

#include <kdfuse/simt/runtime.h>

struct cublasContext;

namespace kdfuse::simt::api {

using cublasHandle_t = ::cublasContext*;

enum cublasStatus_t : int {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum cublasMath_t : int {
    CUBLAS_DEFAULT_MATH = 0,
    CUBLAS_PEDANTIC_MATH = 2,
    CUBLAS_TF32_TENSOR_OP_MATH = 3,
    CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16,
};
enum cublasPointerMode_t : int { CUBLAS_POINTER_MODE_HOST = 0, CUBLAS_POINTER_MODE_DEVICE = 1 };
enum cublasComputeType_t : int {
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_PEDANTIC = 69,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
};
enum cudaDataType_t : int { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
using cudaDataType = cudaDataType_t;
enum cublasGemmAlgo_t : int { CUBLAS_GEMM_DEFAULT = -1, CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99 };

KDFUSE_SIMT_API cublasStatus_t cublasCreate(cublasHandle_t* handle);
KDFUSE_SIMT_API cublasStatus_t cublasDestroy(cublasHandle_t handle);
KDFUSE_SIMT_API cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
KDFUSE_SIMT_API cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream);
KDFUSE_SIMT_API cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
KDFUSE_SIMT_API cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode);
KDFUSE_SIMT_API cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode);
KDFUSE_SIMT_API cublasStatus_t cublasGetPointerMode(cublasHandle_t handle, cublasPointerMode_t* mode);
KDFUSE_SIMT_API cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t bytes);
KDFUSE_SIMT_API const char* cublasGetStatusString(cublasStatus_t status);
KDFUSE_SIMT_API const char* cublasGetStatusName(cublasStatus_t status);

KDFUSE_SIMT_API cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                           int m, int n, int k, const float* alpha, const float* A, int lda,
                                           const float* B, int ldb, const float* beta, float* C, int ldc);
KDFUSE_SIMT_API cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                                         cublasOperation_t transb, int m, int n, int k,
                                                         const float* alpha, const float* A, int lda,
                                                         long long strideA, const float* B, int ldb, long long strideB,
                                                         const float* beta, float* C, int ldc, long long strideC,
                                                         int batchCount);
KDFUSE_SIMT_API cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                            int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                            int lda, const void* B, cudaDataType Btype, int ldb, const void* beta,
                                            void* C, cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                                            cublasGemmAlgo_t algo);
KDFUSE_SIMT_API cublasStatus_t cublasGemmStridedBatchedEx(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, const void* alpha,
    const void* A, cudaDataType Atype, int lda, long long strideA, const void* B, cudaDataType Btype, int ldb,
    long long strideB, const void* beta, void* C, cudaDataType Ctype, int ldc, long long strideC, int batchCount,
    cublasComputeType_t computeType, cublasGemmAlgo_t algo);

}  // namespace kdfuse::simt::api
