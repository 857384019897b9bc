// The cuBLAS shim against a naive column-major GEMM in double precision: every transpose
// combination, odd sizes, strided batches, beta == 0 ignoring NaN in C, TF32 rounding, validation.
#include "simt_expect.h"

#include "../../kernels/common/cuda_api.h"
#include "../common/device_test.h"

#include <cmath>

namespace {

using kdftest::DeviceBuffer;
using kdftest::uniform;

// C = alpha op(A) op(B) + beta C, column-major, in double.
std::vector<float> naive(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                         const std::vector<float>& A, int lda, const std::vector<float>& B, int ldb, float beta,
                         std::vector<float> C, int ldc)
{
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
            double acc = 0.0;
            for (int p = 0; p < k; ++p) {
                const double a = ta == CUBLAS_OP_N ? A[i + size_t(p) * lda] : A[p + size_t(i) * lda];
                const double b = tb == CUBLAS_OP_N ? B[p + size_t(j) * ldb] : B[j + size_t(p) * ldb];
                acc += a * b;
            }
            float& c = C[i + size_t(j) * ldc];
            c = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : beta * double(c)));
        }
    return C;
}

class CublasShim : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS); }
    void TearDown() override { EXPECT_EQ(cublasDestroy(handle), CUBLAS_STATUS_SUCCESS); }
    cublasHandle_t handle{};
};

TEST_F(CublasShim, SgemmAllTransposesOddSizes)
{
    const cublasOperation_t ops[] = {CUBLAS_OP_N, CUBLAS_OP_T};
    for (auto [m, n, k] : {std::tuple{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 1, 9}}) {
        for (auto ta : ops)
            for (auto tb : ops) {
                const int lda = (ta == CUBLAS_OP_N ? m : k) + 2, ldb = (tb == CUBLAS_OP_N ? k : n) + 1, ldc = m + 3;
                auto A = uniform(size_t(lda) * (ta == CUBLAS_OP_N ? k : m), m * 7 + k);
                auto B = uniform(size_t(ldb) * (tb == CUBLAS_OP_N ? n : k), n * 5 + k);
                auto C = uniform(size_t(ldc) * n, m + n);
                const float alpha = 1.5f, beta = -0.25f;
                auto expected = naive(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
                DeviceBuffer<float> dA(A), dB(B), dC(C);
                ASSERT_EQ(cublasSgemm(handle, ta, tb, m, n, k, &alpha, dA.get(), lda, dB.get(), ldb, &beta, dC.get(), ldc),
                          CUBLAS_STATUS_SUCCESS);
                auto got = dC.download();
                for (size_t i = 0; i < got.size(); ++i)
                    ASSERT_NEAR(got[i], expected[i], 1e-5f * (1 + k)) << m << "x" << n << "x" << k << " ta " << ta << " tb " << tb;
            }
    }
}

TEST_F(CublasShim, StridedBatchedAndGemmEx)
{
    const int m = 5, n = 6, k = 7, batch = 3;
    const long long sA = m * k + 4, sB = k * n + 2, sC = m * n + 1;
    auto A = uniform(sA * batch, 1), B = uniform(sB * batch, 2), C = uniform(sC * batch, 3);
    const float alpha = 0.5f, beta = 0.0f;
    DeviceBuffer<float> dA(A), dB(B), dC(C), dC2(C);
    ASSERT_EQ(cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &alpha, dA.get(), m, sA, dB.get(), n,
                                        sB, &beta, dC.get(), m, sC, batch),
              CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cublasGemmStridedBatchedEx(handle, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &alpha, dA.get(), CUDA_R_32F, m, sA,
                                         dB.get(), CUDA_R_32F, n, sB, &beta, dC2.get(), CUDA_R_32F, m, sC, batch,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    auto got = dC.download(), got2 = dC2.download();
    for (int b = 0; b < batch; ++b) {
        std::vector<float> Ab(A.begin() + b * sA, A.begin() + b * sA + m * k);
        std::vector<float> Bb(B.begin() + b * sB, B.begin() + b * sB + k * n);
        std::vector<float> Cb(C.begin() + b * sC, C.begin() + b * sC + m * n);
        auto expected = naive(CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, alpha, Ab, m, Bb, n, beta, Cb, m);
        for (int i = 0; i < m * n; ++i) {
            EXPECT_NEAR(got[b * sC + i], expected[i], 1e-5f);
            EXPECT_EQ(got2[b * sC + i], got[b * sC + i]);
        }
        EXPECT_EQ(got[b * sC + m * n], C[b * sC + m * n]) << "padding between batches untouched";
    }
}

TEST_F(CublasShim, BetaZeroIgnoresNanInC)
{
    std::vector<float> A = {1, 2}, B = {3, 4}, C = {NAN};
    const float alpha = 1.0f, beta = 0.0f;
    DeviceBuffer<float> dA(A), dB(B), dC(C);
    ASSERT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 2, &alpha, dA.get(), 1, dB.get(), 2, &beta, dC.get(), 1),
              CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(dC.download()[0], 11.0f);
}

TEST_F(CublasShim, Tf32RoundsOnlyWhenAllowed)
{
    // 1 + 2^-12 is not representable in TF32 (10 mantissa bits): it rounds to 1.
    std::vector<float> A = {1.0f + 1.0f / 4096.0f}, B = {1.0f}, C = {0.0f};
    const float alpha = 1.0f, beta = 0.0f;
    DeviceBuffer<float> dA(A), dB(B), dC(C);
    auto run = [&] {
        EXPECT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &alpha, dA.get(), 1, dB.get(), 1, &beta, dC.get(), 1),
                  CUBLAS_STATUS_SUCCESS);
        return dC.download()[0];
    };
    EXPECT_EQ(run(), A[0]);
    ASSERT_EQ(cublasSetMathMode(handle, CUBLAS_TF32_TENSOR_OP_MATH), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(run(), 1.0f);
    ASSERT_EQ(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &alpha, dA.get(), CUDA_R_32F, 1, dB.get(), CUDA_R_32F,
                           1, &beta, dC.get(), CUDA_R_32F, 1, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(dC.download()[0], A[0]);
}

TEST_F(CublasShim, ValidatesArguments)
{
    DeviceBuffer<float> d(64);
    const float one = 1.0f;
    EXPECT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, -1, 2, 2, &one, d.get(), 2, d.get(), 2, &one, d.get(), 2),
              CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 2, &one, d.get(), 3, d.get(), 2, &one, d.get(), 4),
              CUBLAS_STATUS_INVALID_VALUE) << "lda < m";
    EXPECT_EQ(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, 4, 2, 5, &one, d.get(), 4, d.get(), 5, &one, d.get(), 4),
              CUBLAS_STATUS_INVALID_VALUE) << "lda < k for op(A) = A^T";
    EXPECT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 2, &one, d.get(), 4, d.get(), 2, &one, d.get(), 3),
              CUBLAS_STATUS_INVALID_VALUE) << "ldc < m";
    EXPECT_EQ(cublasSgemm(handle, static_cast<cublasOperation_t>(7), CUBLAS_OP_N, 1, 1, 1, &one, d.get(), 1, d.get(), 1,
                          &one, d.get(), 1),
              CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_EQ(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, d.get(), CUDA_R_16F, 1, d.get(), CUDA_R_32F, 1,
                           &one, d.get(), CUDA_R_32F, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_NOT_SUPPORTED);
    EXPECT_EQ(cublasSgemm(nullptr, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, d.get(), 1, d.get(), 1, &one, d.get(), 1),
              CUBLAS_STATUS_NOT_INITIALIZED);
    // m == 0: a quick return that touches nothing.
    EXPECT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 0, 1, 1, &one, nullptr, 1, nullptr, 1, &one, nullptr, 1),
              CUBLAS_STATUS_SUCCESS);
}

// cuBLAS refuses a workspace pointer that is not 256-byte aligned; so does the shim.
TEST_F(CublasShim, WorkspaceMustBe256ByteAligned)
{
    DeviceBuffer<unsigned char> ws(4096);  // cudaMalloc: 256-byte aligned
    EXPECT_EQ(cublasSetWorkspace(handle, ws.get(), 4096), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasSetWorkspace(handle, ws.get() + 256, 1024), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasSetWorkspace(handle, ws.get() + 16, 1024), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_EQ(cublasSetWorkspace(handle, nullptr, 0), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasSetWorkspace(nullptr, ws.get(), 4096), CUBLAS_STATUS_NOT_INITIALIZED);
}

TEST_F(CublasShim, CountsCallsAndUsesTheStream)
{
    cudaStream_t stream;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    ASSERT_EQ(cublasSetStream(handle, stream), CUBLAS_STATUS_SUCCESS);
    cudaStream_t got = nullptr;
    ASSERT_EQ(cublasGetStream(handle, &got), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(got, stream);
    DeviceBuffer<float> d(4);
    const float one = 1.0f, zero = 0.0f;
    kdfuse::simt::reset_counters();
    ASSERT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 0, &one, d.get(), 2, d.get(), 1, &zero, d.get(), 2),
              CUBLAS_STATUS_SUCCESS);
    auto c = kdfuse::simt::counters();
    EXPECT_EQ(c.cublas_calls, 1u);
    EXPECT_EQ(c.null_stream_ops, 0u);
    EXPECT_EQ(d.download(), std::vector<float>(4, 0.0f)) << "k == 0: C = beta C";
    EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST_F(CublasShim, CountOnlyModeCountsWithoutComputing)
{
    DeviceBuffer<float> a(std::vector<float>(4, 1.0f)), c(std::vector<float>(4, 5.0f));
    const float one = 1.0f, zero = 0.0f;
    kdfuse::simt::set_count_only(true);
    kdfuse::simt::reset_counters();
    EXPECT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, a.get(), 2, a.get(), 2, &zero, c.get(), 2),
              CUBLAS_STATUS_SUCCESS);
    kdfuse::simt::set_count_only(false);
    EXPECT_EQ(kdfuse::simt::counters().cublas_calls, 1u);
    EXPECT_EQ(c.download(), std::vector<float>(4, 5.0f)) << "nothing computed";
}

}  // namespace

// kdf::gemm_rm / gemm_rm_batched (kernels/common/gemm.h): row-major products through the column-major API.
#include "../../kernels/common/gemm.h"

namespace {

TEST_F(CublasShim, RowMajorWrappers)
{
    const int m = 3, n = 4, k = 5, batch = 2;
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            const int lda = ta ? m : k, ldb = tb ? k : n;  // row strides of A (k x m if ta) and B (n x k if tb)
            auto A = kdftest::uniform(size_t(batch) * m * k, 1 + ta), B = kdftest::uniform(size_t(batch) * k * n, 3 + tb);
            std::vector<float> C(size_t(batch) * m * n, 0.0f);
            DeviceBuffer<float> dA(A), dB(B), dC(C);
            ASSERT_EQ(kdf::gemm_bind(handle, nullptr, nullptr, false), CUBLAS_STATUS_SUCCESS);
            ASSERT_EQ(kdf::gemm_rm_batched(handle, ta, tb, m, n, k, 1.0f, dA.get(), lda, m * k, dB.get(), ldb, k * n, 0.0f,
                                           dC.get(), n, m * n, batch),
                      CUBLAS_STATUS_SUCCESS);
            auto got = dC.download();
            for (int b = 0; b < batch; ++b)
                for (int i = 0; i < m; ++i)
                    for (int j = 0; j < n; ++j) {
                        double want = 0.0;
                        for (int p = 0; p < k; ++p) {
                            const double a = ta ? A[b * m * k + p * lda + i] : A[b * m * k + i * lda + p];
                            const double bv = tb ? B[b * k * n + j * ldb + p] : B[b * k * n + p * ldb + j];
                            want += a * bv;
                        }
                        EXPECT_NEAR(got[b * m * n + i * n + j], want, 1e-5) << ta << tb << " " << b << i << j;
                    }
            ASSERT_EQ(kdf::gemm_rm(handle, ta, tb, m, n, k, 2.0f, dA.get(), lda, dB.get(), ldb, 0.0f, dC.get(), n),
                      CUBLAS_STATUS_SUCCESS);
            EXPECT_NEAR(dC.download()[0], 2.0f * got[0], 1e-5);
        }
}

}  // namespace
