// cuBLAS shim: see kdfuse/simt/cublas.h for the contract.
#include <kdfuse/simt/cublas.h>

#include "state.h"

#include <cmath>
#include <set>

struct cublasContext {
    cudaStream_t stream = nullptr;
    cublasMath_t math = CUBLAS_DEFAULT_MATH;
    cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
};

namespace kdfuse::simt::api {
namespace {

std::mutex handles_mutex;
std::set<cublasHandle_t> handles;

bool valid(cublasHandle_t h)
{
    std::lock_guard<std::mutex> lock(handles_mutex);
    return h != nullptr && handles.count(h) != 0;
}

// Round to TF32 (8-bit exponent, 10-bit mantissa), to nearest with ties away from zero, as the
// tensor-core conversion cvt.rna.tf32.f32 does. Infinities and NaN pass through.
float to_tf32(float x)
{
    uint32_t u = std::bit_cast<uint32_t>(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;
    u = (u + 0x1000u) & 0xffffe000u;
    return std::bit_cast<float>(u);
}

struct Gemm {
    cublasOperation_t ta, tb;
    int m, n, k;
    float alpha, beta;
    const float* A;
    int lda;
    long long sA;
    const float* B;
    int ldb;
    long long sB;
    float* C;
    int ldc;
    long long sC;
    int batch;
    bool tf32;
};

cublasStatus_t validate(const Gemm& g)
{
    auto op_ok = [](cublasOperation_t t) { return t == CUBLAS_OP_N || t == CUBLAS_OP_T || t == CUBLAS_OP_C; };
    if (!op_ok(g.ta) || !op_ok(g.tb) || g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    const int a_rows = g.ta == CUBLAS_OP_N ? g.m : g.k;
    const int b_rows = g.tb == CUBLAS_OP_N ? g.k : g.n;
    if (g.lda < std::max(1, a_rows) || g.ldb < std::max(1, b_rows) || g.ldc < std::max(1, g.m))
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

void run(const Gemm& g)
{
    for (int b = 0; b < g.batch; ++b) {
        const float* A = g.A + b * g.sA;
        const float* B = g.B + b * g.sB;
        float* C = g.C + b * g.sC;
        for (int j = 0; j < g.n; ++j) {
            for (int i = 0; i < g.m; ++i) {
                float acc = 0.0f;
                if (g.alpha != 0.0f) {
                    for (int p = 0; p < g.k; ++p) {
                        float a = g.ta == CUBLAS_OP_N ? A[i + int64_t(p) * g.lda] : A[p + int64_t(i) * g.lda];
                        float bv = g.tb == CUBLAS_OP_N ? B[p + int64_t(j) * g.ldb] : B[j + int64_t(p) * g.ldb];
                        if (g.tf32) {
                            a = to_tf32(a);
                            bv = to_tf32(bv);
                        }
                        acc = std::fma(a, bv, acc);
                    }
                }
                float& c = C[i + int64_t(j) * g.ldc];
                // beta == 0: C is write-only (NaN or Inf in C does not propagate).
                c = g.beta == 0.0f ? g.alpha * acc : std::fma(g.alpha, acc, g.beta * c);
            }
        }
    }
}

cublasStatus_t gemm(cublasHandle_t h, Gemm g, const float* alpha, const float* beta)
{
    if (!valid(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    if (cublasStatus_t s = validate(g)) return s;
    if (detail::use_stream(h->stream, "cuBLAS GEMM") != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
    g.alpha = *alpha;  // host and device pointer modes read the same memory on the emulator
    g.beta = *beta;
    detail::count_cublas_call();
    // The FLOPs and the minimum traffic of the call (A and B read once, C written, and read when beta != 0).
    const uint64_t batch = static_cast<uint64_t>(g.batch), m = static_cast<uint64_t>(g.m),
                   n = static_cast<uint64_t>(g.n), k = static_cast<uint64_t>(g.k);
    detail::counter_state().gemm_flops.fetch_add(2 * batch * m * n * k);
    const uint64_t c_bytes = batch * m * n * sizeof(float);
    detail::traffic_runtime_op("cublas GEMM", nullptr, c_bytes, nullptr,
                               batch * (m + n) * k * sizeof(float) + (g.beta != 0.0f ? c_bytes : 0), true);
    if (g.m == 0 || g.n == 0 || g.batch == 0 || count_only()) return CUBLAS_STATUS_SUCCESS;
    if ((g.alpha != 0.0f && g.k > 0 && (g.A == nullptr || g.B == nullptr)) || g.C == nullptr)
        return CUBLAS_STATUS_INVALID_VALUE;
    run(g);
    return CUBLAS_STATUS_SUCCESS;
}

bool handle_allows_tf32(cublasHandle_t h) { return (h->math & 0xf) == CUBLAS_TF32_TENSOR_OP_MATH; }

// Ex variants: fp32 data only. FAST_TF32 rounds; COMPUTE_32F follows the handle's math mode.
cublasStatus_t ex_types(cublasHandle_t h, cudaDataType a, cudaDataType b, cudaDataType c, cublasComputeType_t ct,
                        bool& tf32)
{
    if (a != CUDA_R_32F || b != CUDA_R_32F || c != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (ct == CUBLAS_COMPUTE_32F_FAST_TF32) tf32 = true;
    else if (ct == CUBLAS_COMPUTE_32F) tf32 = handle_allows_tf32(h);
    else if (ct == CUBLAS_COMPUTE_32F_PEDANTIC) tf32 = false;
    else return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle)
{
    if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new cublasContext;
    std::lock_guard<std::mutex> lock(handles_mutex);
    handles.insert(*handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    std::lock_guard<std::mutex> lock(handles_mutex);
    if (handle == nullptr || handles.erase(handle) == 0) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream)
{
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream)
{
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (stream == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *stream = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    const int base = mode & 0xf;
    if ((base != CUBLAS_DEFAULT_MATH && base != CUBLAS_PEDANTIC_MATH && base != CUBLAS_TF32_TENSOR_OP_MATH) ||
        (mode & ~0x1f) != 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode)
{
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->math;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode)
{
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE) return CUBLAS_STATUS_INVALID_VALUE;
    handle->pointer_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetPointerMode(cublasHandle_t handle, cublasPointerMode_t* mode)
{
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->pointer_mode;
    return CUBLAS_STATUS_SUCCESS;
}

// As cuBLAS: a workspace pointer not aligned to 256 bytes is refused.
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t)
{
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    return reinterpret_cast<uintptr_t>(workspace) % 256 != 0 ? CUBLAS_STATUS_INVALID_VALUE : CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    }
    return "unknown error";
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float* alpha, const float* A, int lda, const float* B, int ldb,
                           const float* beta, float* C, int ldc)
{
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    Gemm g{transa, transb, m, n, k, 0, 0, A, lda, 0, B, ldb, 0, C, ldc, 0, 1, handle_allows_tf32(handle)};
    return gemm(handle, g, alpha, beta);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float* alpha, const float* A, int lda,
                                         long long strideA, const float* B, int ldb, long long strideB,
                                         const float* beta, float* C, int ldc, long long strideC, int batchCount)
{
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    Gemm g{transa, transb, m,   n,       k, 0,          0, A, lda, strideA, B, ldb, strideB, C, ldc,
           strideC, batchCount, handle_allows_tf32(handle)};
    return gemm(handle, g, alpha, beta);
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t)
{
    return cublasGemmStridedBatchedEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0, beta,
                                      C, Ctype, ldc, 0, 1, computeType, CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                          int lda, long long strideA, const void* B, cudaDataType Btype, int ldb,
                                          long long strideB, const void* beta, void* C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batchCount, cublasComputeType_t computeType,
                                          cublasGemmAlgo_t)
{
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    bool tf32 = false;
    if (cublasStatus_t s = ex_types(handle, Atype, Btype, Ctype, computeType, tf32)) return s;
    Gemm g{transa,
           transb,
           m,
           n,
           k,
           0,
           0,
           static_cast<const float*>(A),
           lda,
           strideA,
           static_cast<const float*>(B),
           ldb,
           strideB,
           static_cast<float*>(C),
           ldc,
           strideC,
           batchCount,
           tf32};
    return gemm(handle, g, static_cast<const float*>(alpha), static_cast<const float*>(beta));
}

}  // namespace kdfuse::simt::api
