// Semantics of the emulated built-ins and runtime: indices, shuffles with widths, barrier votes,
// atomics, streams and events, and the counters tests use to prove fusion.
#include "simt_expect.h"

#include "../../kernels/common/portability.cuh"
#include "../common/device_test.h"

#include <cmath>

namespace {

using kdftest::DeviceBuffer;

__global__ void write_indices(unsigned* out)
{
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned i = block * (blockDim.x * blockDim.y * blockDim.z) + thread;
    out[4 * i] = threadIdx.x + 10 * threadIdx.y + 100 * threadIdx.z;
    out[4 * i + 1] = blockIdx.x + 10 * blockIdx.y + 100 * blockIdx.z;
    out[4 * i + 2] = blockDim.x + 10 * blockDim.y + 100 * blockDim.z;
    out[4 * i + 3] = gridDim.x + 10 * gridDim.y + 100 * gridDim.z;
}

// out[4 * lane + k]: shfl idx / up / down / xor with width 8.
__global__ void shuffles_width8(int* out)
{
    const int lane = threadIdx.x;
    out[4 * lane] = __shfl_sync(0xffffffffu, lane, 3, 8);
    out[4 * lane + 1] = __shfl_up_sync(0xffffffffu, lane, 2, 8);
    out[4 * lane + 2] = __shfl_down_sync(0xffffffffu, lane, 3, 8);
    out[4 * lane + 3] = __shfl_xor_sync(0xffffffffu, lane, 5, 8);
}

// Two half-warps shuffle with disjoint masks at the same time.
__global__ void half_warp_masks(double* out)
{
    const unsigned mask = threadIdx.x < 16 ? 0x0000ffffu : 0xffff0000u;
    out[threadIdx.x] = __shfl_sync(mask, 0.5 * threadIdx.x, threadIdx.x < 16 ? 0 : 16);
}

__global__ void barrier_votes(int* out)
{
    const int c = __syncthreads_count(threadIdx.x % 3 == 0);
    const int a = __syncthreads_and(threadIdx.x < 1000);
    const int o = __syncthreads_or(threadIdx.x == 77);
    if (threadIdx.x == 0) {
        out[0] = c;
        out[1] = a;
        out[2] = o;
    }
}

__global__ void atomics(float* fsum, int* imax, unsigned long long* count)
{
    atomicAdd(fsum, 1.0f);
    atomicMax(imax, static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x));
    atomicAdd(count, 1ull);
}

TEST(SimtRuntime, ThreeDimensionalIndices)
{
    const dim3 grid(3, 2, 2), block(4, 3, 2);
    const int n = 12 * 24;
    DeviceBuffer<unsigned> out(4 * n);
    ASSERT_EQ(kdf::launch<write_indices>({grid, block}, out.get()), cudaSuccess);
    auto h = out.download();
    int i = 0;
    for (unsigned bz = 0; bz < 2; ++bz)
        for (unsigned by = 0; by < 2; ++by)
            for (unsigned bx = 0; bx < 3; ++bx)
                for (unsigned tz = 0; tz < 2; ++tz)
                    for (unsigned ty = 0; ty < 3; ++ty)
                        for (unsigned tx = 0; tx < 4; ++tx, ++i) {
                            ASSERT_EQ(h[4 * i], tx + 10 * ty + 100 * tz);
                            ASSERT_EQ(h[4 * i + 1], bx + 10 * by + 100 * bz);
                            ASSERT_EQ(h[4 * i + 2], 4u + 30u + 200u);
                            ASSERT_EQ(h[4 * i + 3], 3u + 20u + 200u);
                        }
}

TEST(SimtRuntime, ShuffleWidthSemantics)
{
    DeviceBuffer<int> out(128);
    ASSERT_EQ(kdf::launch<shuffles_width8>({dim3(1), dim3(32)}, out.get()), cudaSuccess);
    auto h = out.download();
    for (int lane = 0; lane < 32; ++lane) {
        const int base = lane & ~7, offset = lane & 7;
        EXPECT_EQ(h[4 * lane], base + 3) << lane;
        EXPECT_EQ(h[4 * lane + 1], offset >= 2 ? lane - 2 : lane) << lane;
        EXPECT_EQ(h[4 * lane + 2], offset + 3 < 8 ? lane + 3 : lane) << lane;
        EXPECT_EQ(h[4 * lane + 3], lane ^ 5) << lane;
    }
}

TEST(SimtRuntime, DisjointMaskGroupsInOneWarp)
{
    DeviceBuffer<double> out(32);
    ASSERT_EQ(kdf::launch<half_warp_masks>({dim3(1), dim3(32)}, out.get()), cudaSuccess);
    auto h = out.download();
    for (int lane = 0; lane < 32; ++lane) EXPECT_EQ(h[lane], lane < 16 ? 0.0 : 8.0) << lane;
}

TEST(SimtRuntime, BarrierVotes)
{
    DeviceBuffer<int> out(3);
    ASSERT_EQ(kdf::launch<barrier_votes>({dim3(1), dim3(100)}, out.get()), cudaSuccess);
    auto h = out.download();
    EXPECT_EQ(h[0], 34);
    EXPECT_EQ(h[1], 1);
    EXPECT_EQ(h[2], 1);
}

TEST(SimtRuntime, Atomics)
{
    DeviceBuffer<float> fsum(1);
    DeviceBuffer<int> imax(1);
    DeviceBuffer<unsigned long long> count(1);
    ASSERT_EQ(cudaMemset(fsum.get(), 0, sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMemset(imax.get(), 0, sizeof(int)), cudaSuccess);
    ASSERT_EQ(cudaMemset(count.get(), 0, sizeof(unsigned long long)), cudaSuccess);
    ASSERT_EQ(kdf::launch<atomics>({dim3(7), dim3(96)}, fsum.get(), imax.get(), count.get()), cudaSuccess);
    EXPECT_EQ(fsum.download()[0], 672.0f);
    EXPECT_EQ(imax.download()[0], 671);
    EXPECT_EQ(count.download()[0], 672ull);
}

TEST(SimtRuntime, CountersStreamsAndEvents)
{
    DeviceBuffer<unsigned> out(4 * 64);
    cudaStream_t stream;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    cudaEvent_t start, stop;
    ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
    ASSERT_EQ(cudaEventCreate(&stop), cudaSuccess);
    kdfuse::simt::reset_counters();
    ASSERT_EQ(cudaEventRecord(start, stream), cudaSuccess);
    ASSERT_EQ(kdf::launch<write_indices>({dim3(2), dim3(32), 0, stream}, out.get()), cudaSuccess);
    ASSERT_EQ(kdf::launch<write_indices>({dim3(1), dim3(64), 0, stream}, out.get()), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(stop, stream), cudaSuccess);
    auto c = kdfuse::simt::counters();
    EXPECT_EQ(c.kernel_launches, 2u);
    EXPECT_EQ(c.null_stream_ops, 0u);
    EXPECT_EQ(c.synchronizations, 0u);
    ASSERT_EQ(cudaEventSynchronize(stop), cudaSuccess);
    float ms = -1.0f;
    ASSERT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaSuccess);
    EXPECT_GE(ms, 0.0f);
    ASSERT_EQ(kdf::launch<write_indices>({dim3(1), dim3(32)}, out.get()), cudaSuccess);
    c = kdfuse::simt::counters();
    EXPECT_EQ(c.kernel_launches, 3u);
    EXPECT_EQ(c.null_stream_ops, 1u);
    EXPECT_EQ(c.synchronizations, 1u);
    EXPECT_EQ(cudaEventDestroy(start), cudaSuccess);
    EXPECT_EQ(cudaEventDestroy(stop), cudaSuccess);
    EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(SimtRuntime, CountOnlyModeValidatesAndCountsWithoutRunning)
{
    // bench/'s full-size launch counts: launches are checked and counted, kernels do not run.
    DeviceBuffer<unsigned> out(64);
    ASSERT_EQ(cudaMemset(out.get(), 0, 64 * sizeof(unsigned)), cudaSuccess);
    kdfuse::simt::set_count_only(true);
    EXPECT_TRUE(kdfuse::simt::count_only());
    kdfuse::simt::reset_counters();
    EXPECT_EQ(kdf::launch<write_indices>({dim3(1), dim3(16)}, out.get()), cudaSuccess);  // 4 values per thread
    {
        kdftest::ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<write_indices>({dim3(1), dim3(2048)}, out.get()), cudaErrorInvalidConfiguration);
        EXPECT_NE(expect.only().find("invalid launch configuration"), std::string::npos) << "still validated";
    }
    (void)cudaGetLastError();
    EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 1u);
    kdfuse::simt::set_count_only(false);
    EXPECT_EQ(out.download(), std::vector<unsigned>(64, 0u)) << "the kernel did not run";
    ASSERT_EQ(kdf::launch<write_indices>({dim3(1), dim3(16)}, out.get()), cudaSuccess);
    EXPECT_EQ(out.download()[60], 15u) << "and runs again once the mode is off";
}

TEST(SimtRuntime, MallocIsExactAndPoisoned)
{
    const size_t before = kdfuse::simt::bytes_allocated();
    {
        DeviceBuffer<float> d(3);
        EXPECT_EQ(kdfuse::simt::bytes_allocated(), before + 12);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(d.get()) % 256, 0u);
        auto h = d.download();
        for (float v : h) EXPECT_TRUE(v != v) << "fresh device memory reads as NaN";
    }
    EXPECT_EQ(kdfuse::simt::bytes_allocated(), before);
}

}  // namespace

// The 16-bit storage types round to nearest even like __float2half_rn / __float2bfloat16_rn, keep signed
// zeros and infinities, overflow to infinity, have subnormals (fp16), and convert back exactly.
TEST(SimtRuntime, HalfAndBfloat16Conversions)
{
    const auto h = [](float x) { return __float2half_rn(x).bits; };
    const auto b = [](float x) { return __float2bfloat16_rn(x).bits; };
    EXPECT_EQ(h(1.0f), 0x3c00);
    EXPECT_EQ(h(-2.5f), 0xc100);
    EXPECT_EQ(h(-0.0f), 0x8000);
    EXPECT_EQ(h(1.0f + 0x1p-11f), 0x3c00) << "tie: to even";
    EXPECT_EQ(h(1.0f + 3 * 0x1p-11f), 0x3c02) << "tie: to even (up)";
    EXPECT_EQ(h(65504.0f), 0x7bff);
    EXPECT_EQ(h(65520.0f), 0x7c00) << "overflow rounds to infinity";
    EXPECT_EQ(h(0x1p-24f), 0x0001) << "smallest subnormal";
    EXPECT_EQ(h(0x1p-26f), 0x0000);
    EXPECT_EQ(__half2float({0x0001}), 0x1p-24f);
    EXPECT_EQ(__half2float({0xfc00}), -INFINITY);
    EXPECT_TRUE(std::isnan(__half2float({h(NAN)})));

    EXPECT_EQ(b(1.0f), 0x3f80);
    EXPECT_EQ(b(-0.0f), 0x8000);
    EXPECT_EQ(b(1.0f + 0x1p-8f), 0x3f80) << "tie: to even";
    EXPECT_EQ(b(1.0f + 3 * 0x1p-8f), 0x3f82) << "tie: to even (up)";
    EXPECT_EQ(b(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81) << "above the tie: up";
    EXPECT_EQ(b(3.4e38f), 0x7f80) << "overflow rounds to infinity";
    EXPECT_EQ(b(INFINITY), 0x7f80);
    EXPECT_EQ(b(NAN), 0x7fff);
    EXPECT_EQ(__bfloat162float({0x3f81}), 1.0f + 0x1p-7f);
    EXPECT_EQ(__bfloat162float({0x0001}), 0x1p-133f);
}
