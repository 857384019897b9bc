// Errors in kernel code and in runtime calls are reported with file:line, block and thread, and
// returned as CUDA errors; the emulator keeps working afterwards.
#include "simt_expect.h"

#include "../../kernels/common/portability.cuh"
#include "../common/device_test.h"

#include <gmock/gmock.h>

namespace {

using kdftest::DeviceBuffer;
using kdftest::ExpectSimtError;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;

constexpr int kFirstBarrierLine = __LINE__ + 6;  // the two __syncthreads below
constexpr int kSecondBarrierLine = __LINE__ + 7;
__global__ void divergent_barrier(float* out)
{
    if (threadIdx.x < 32) {
        out[threadIdx.x] = 1.0f;
        __syncthreads();
    } else {
        __syncthreads();
    }
}

__global__ void barrier_after_early_exit(const float* x, float* out, int n)
{
    const int i = threadIdx.x;
    if (i >= n) return;
    __syncthreads();
    out[i] = x[i];
}

__global__ void shuffle_mask_names_missing_lanes(float* out)
{
    // 40 threads: the second warp has 8 lanes, but the mask names all 32.
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1.0f * threadIdx.x, 1);
}

__global__ void shuffle_waits_for_exited_lane(float* out)
{
    if (threadIdx.x == 5) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

__global__ void shuffle_waits_for_lane_at_barrier(float* out)
{
    if (threadIdx.x == 0) {
        __syncthreads();
    } else {
        out[threadIdx.x] = __shfl_sync(0xffffffffu, 2.0f, 0);
        __syncthreads();
    }
}

__global__ void shuffle_without_own_lane(float* out)
{
    out[threadIdx.x] = __shfl_sync(0x1u, 1.0f, 0);
}

__global__ void wrong_block_reduce_shape(const float* x, float* out)
{
    using Reduce = cub::BlockReduce<float, 128>;
    __shared__ typename Reduce::TempStorage storage;
    const float s = Reduce(storage).Sum(x[threadIdx.x]);
    if (threadIdx.x == 0) out[0] = s;
}

__global__ void fill(float* out, float v) { out[blockIdx.x * blockDim.x + threadIdx.x] = v; }

__global__ void uses_dynamic(float* out)
{
    float* buf = kdf::dynamic_shared<float>();
    buf[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = buf[(threadIdx.x + 1) % blockDim.x];
}

TEST(SimtErrors, DivergentBarrierNamesBothSitesBlockAndThread)
{
    DeviceBuffer<float> out(64);
    ExpectSimtError expect;
    EXPECT_EQ(kdf::launch<divergent_barrier>({dim3(2), dim3(64)}, out.get()), cudaErrorLaunchFailure);
    EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "errors are reported once, not sticky";
    const std::string m = expect.only();
    EXPECT_THAT(m, HasSubstr("divergent __syncthreads"));
    EXPECT_THAT(m, HasSubstr("test_simt_errors.cpp:" + std::to_string(kFirstBarrierLine)));
    EXPECT_THAT(m, HasSubstr("test_simt_errors.cpp:" + std::to_string(kSecondBarrierLine)));
    EXPECT_THAT(m, HasSubstr("block ("));
    EXPECT_THAT(m, HasSubstr("thread (32,0,0)"));
}

TEST(SimtErrors, BarrierAfterEarlyExitIsReported)
{
    DeviceBuffer<float> x(64), out(64);
    ExpectSimtError expect;
    EXPECT_EQ(kdf::launch<barrier_after_early_exit>({dim3(1), dim3(64)}, x.get(), out.get(), 50),
              cudaErrorLaunchFailure);
    EXPECT_THAT(expect.only(), HasSubstr("has exited"));
    (void)cudaGetLastError();
}

TEST(SimtErrors, BadWarpMasks)
{
    DeviceBuffer<float> out(64);
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<shuffle_mask_names_missing_lanes>({dim3(1), dim3(40)}, out.get()), cudaErrorLaunchFailure);
        EXPECT_THAT(expect.only(), HasSubstr("names lanes that do not exist"));
        EXPECT_THAT(expect.only(), ContainsRegex("thread \\(3[2-9],0,0\\)")) << "a thread of the short warp";
    }
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<shuffle_waits_for_exited_lane>({dim3(1), dim3(32)}, out.get()), cudaErrorLaunchFailure);
        EXPECT_THAT(expect.only(), HasSubstr("lane 5"));
        EXPECT_THAT(expect.only(), HasSubstr("exited"));
    }
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<shuffle_waits_for_lane_at_barrier>({dim3(1), dim3(32)}, out.get()),
                  cudaErrorLaunchFailure);
        EXPECT_THAT(expect.only(), HasSubstr("waits at __syncthreads"));
    }
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<shuffle_without_own_lane>({dim3(1), dim3(32)}, out.get()), cudaErrorLaunchFailure);
        EXPECT_THAT(expect.only(), HasSubstr("does not include the calling lane"));
    }
    (void)cudaGetLastError();
}

TEST(SimtErrors, BlockReduceShapeMismatch)
{
    DeviceBuffer<float> x(256), out(1);
    ExpectSimtError expect;
    EXPECT_EQ(kdf::launch<wrong_block_reduce_shape>({dim3(1), dim3(256)}, x.get(), out.get()), cudaErrorLaunchFailure);
    EXPECT_THAT(expect.only(), HasSubstr("cub::BlockReduce<BLOCK_DIM_X=128"));
    (void)cudaGetLastError();
}

TEST(SimtErrors, LaunchConfigurationLimits)
{
    DeviceBuffer<float> out(4096);
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<fill>({dim3(1), dim3(2048)}, out.get(), 1.0f), cudaErrorInvalidConfiguration);
        EXPECT_THAT(expect.only(), HasSubstr("2048 threads"));
        EXPECT_THAT(expect.only(), HasSubstr("test_simt_errors.cpp"));
    }
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<fill>({dim3(1), dim3(32, 32, 2)}, out.get(), 1.0f), cudaErrorInvalidConfiguration);
        EXPECT_EQ(kdf::launch<fill>({dim3(0), dim3(32)}, out.get(), 1.0f), cudaErrorInvalidConfiguration);
        EXPECT_EQ(expect.messages().size(), 2u);
    }
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<uses_dynamic>({dim3(1), dim3(32), 64 * 1024}, out.get()), cudaErrorInvalidValue);
        EXPECT_THAT(expect.only(), HasSubstr("dynamic shared memory"));
    }
    // Opting in raises the limit, as cudaFuncSetAttribute does on the GPU.
    ASSERT_EQ(cudaFuncSetAttribute(uses_dynamic, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024), cudaSuccess);
    EXPECT_EQ(kdf::launch<uses_dynamic>({dim3(1), dim3(32), 64 * 1024}, out.get()), cudaSuccess);
    EXPECT_EQ(out.download()[0], 1.0f);
    (void)cudaGetLastError();
}

TEST(SimtErrors, OutOfBoundsMemcpyAndMemset)
{
    DeviceBuffer<float> d(10);
    std::vector<float> host(20, 1.0f);
    ExpectSimtError expect;
    EXPECT_EQ(cudaMemcpy(d.get(), host.data(), 11 * sizeof(float), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
    EXPECT_EQ(cudaMemcpy(host.data(), d.get() + 5, 6 * sizeof(float), cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    EXPECT_EQ(cudaMemset(d.get() + 9, 0, 2 * sizeof(float)), cudaErrorInvalidValue);
    ASSERT_EQ(expect.messages().size(), 3u);
    EXPECT_THAT(expect.messages()[0], HasSubstr("out-of-bounds destination range: 44 bytes at offset 0 of a 40-byte"));
    EXPECT_THAT(expect.messages()[1], HasSubstr("out-of-bounds source range"));
    EXPECT_THAT(expect.messages()[2], HasSubstr("cudaMemset at "));
    EXPECT_THAT(expect.messages()[2], HasSubstr("test_simt_errors.cpp:"));
    // In-bounds copies still work.
    EXPECT_EQ(cudaMemcpy(d.get() + 5, host.data(), 5 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    (void)cudaGetLastError();
}

TEST(SimtErrors, InvalidHandlesAndFrees)
{
    ExpectSimtError expect;
    float local = 0.0f;
    EXPECT_EQ(cudaFree(&local), cudaErrorInvalidValue);
    DeviceBuffer<float> out(32);
    auto bogus = reinterpret_cast<cudaStream_t>(0x1234);
    EXPECT_EQ(kdf::launch<fill>({dim3(1), dim3(32), 0, bogus}, out.get(), 1.0f), cudaErrorInvalidResourceHandle);
    EXPECT_EQ(expect.messages().size(), 2u);
    (void)cudaGetLastError();
}

TEST(SimtErrors, EmulatorRecoversAfterAnAbortedBlock)
{
    DeviceBuffer<float> out(64);
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<divergent_barrier>({dim3(3), dim3(64)}, out.get()), cudaErrorLaunchFailure);
    }
    (void)cudaGetLastError();
    EXPECT_EQ(kdf::launch<fill>({dim3(2), dim3(32)}, out.get(), 3.0f), cudaSuccess);
    auto h = out.download();
    EXPECT_EQ(h[0], 3.0f);
    EXPECT_EQ(h[63], 3.0f);
}

}  // namespace
