// The GPU's launch rules in the emulated launch: registers x threads per block and static + dynamic shared
// memory, with the per-kernel resources of the real build (simt/src/kernel_resources.inc). Kernels of this file
// get resource entries of their own (kdfuse::simt::set_kernel_resources) that model what ptxas reports for a
// kernel of that shape.
#include "simt_expect.h"

#include "../../kernels/common/portability.cuh"
#include "../common/device_test.h"

#include <gmock/gmock.h>

namespace {

using kdftest::DeviceBuffer;
using kdftest::ExpectSimtError;
using ::testing::HasSubstr;

template <int N>
__global__ void touch(float* out)
{
    if (threadIdx.x == 0 && blockIdx.x == 0) out[0] = static_cast<float>(N);
}

// Launches a kernel from kernel code (dynamic parallelism), storing the launch status.
__global__ void launches_from_kernel(float* out, int* status)
{
    if (threadIdx.x == 0) *status = static_cast<int>(kdf::launch<touch<5>>({dim3(1), dim3(32)}, out));
}

}  // namespace

namespace kdftest::named {
__global__ void plain(float*) {}
}  // namespace kdftest::named

namespace {

TEST(SimtLaunchRules, KernelNamesAreTheRealBuildsDemangledNames)
{
    // As c++filt writes the CUDA build's symbol, less return type and parameters (scripts/sass_audit.py).
    EXPECT_STREQ(kdfuse::simt::kernel_name<touch<7>>(), "(anonymous namespace)::touch<7>");
    EXPECT_STREQ(kdfuse::simt::kernel_name<kdftest::named::plain>(), "kdftest::named::plain");
}

// A launch the dynamic-shared-memory check alone accepted (48 KiB is the default limit) and a GPU refuses:
// the kernel's static shared memory counts too. This is how KD failed at 6095-6144 classes (400 bytes static).
TEST(SimtLaunchRules, StaticPlusDynamicSharedMemoryAboveTheDefaultLimitIsRefused)
{
    const char* name = kdfuse::simt::kernel_name<touch<1>>();
    kdfuse::simt::set_kernel_resources(name, 80, 40, 400);
    kdfuse::simt::set_kernel_resources(name, 90, 40, 400);
    DeviceBuffer<float> out(1);
    EXPECT_EQ(kdf::launch<touch<1>>({dim3(1), dim3(512), 48 * 1024 - 400}, out.get()), cudaSuccess);
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<touch<1>>({dim3(1), dim3(512), 48 * 1024}, out.get()), cudaErrorInvalidValue);
        EXPECT_THAT(expect.only(), HasSubstr("49152 bytes of dynamic shared memory + 400 static on sm_80"));
        EXPECT_THAT(expect.only(), HasSubstr("without opting in"));
        EXPECT_THAT(expect.only(), HasSubstr("(anonymous namespace)::touch<1>"));
    }
    {  // 49 KiB of dynamic shared memory, no static use: refused as well
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<touch<2>>({dim3(1), dim3(32), 49 * 1024}, out.get()), cudaErrorInvalidValue);
        EXPECT_THAT(expect.only(), HasSubstr("50176 bytes of dynamic shared memory + 0 static"));
    }
    (void)cudaGetLastError();
}

// 1024 threads at 128 registers need 128K registers; a block may use 64K (allocated per warp in units of 256).
TEST(SimtLaunchRules, RegistersTimesThreadsAboveSixtyFourKIsRefused)
{
    const char* name = kdfuse::simt::kernel_name<touch<3>>();
    kdfuse::simt::set_kernel_resources(name, 90, 128, 0);
    DeviceBuffer<float> out(1);
    EXPECT_EQ(kdf::launch<touch<3>>({dim3(2), dim3(512)}, out.get()), cudaSuccess);
    EXPECT_EQ(out.download()[0], 3.0f);
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<touch<3>>({dim3(1), dim3(1024)}, out.get()), cudaErrorLaunchOutOfResources);
        EXPECT_THAT(expect.only(), HasSubstr("too many resources requested for launch"));
        EXPECT_THAT(expect.only(), HasSubstr("1024 threads x 128 registers on sm_90 need 131072 registers"));
    }
    // 65 registers are allocated as 72 per thread: 896 threads need 64512, 928 threads 66816.
    kdfuse::simt::set_kernel_resources(name, 90, 65, 0);
    EXPECT_EQ(kdf::launch<touch<3>>({dim3(1), dim3(896)}, out.get()), cudaSuccess);
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<touch<3>>({dim3(1), dim3(928)}, out.get()), cudaErrorLaunchOutOfResources);
    }
    (void)cudaGetLastError();
}

// Opting in raises the dynamic limit, up to each architecture's maximum per block (static included):
// 227 KiB on sm_90, 163 KiB on sm_80. The library is built for both, so a launch must fit the smaller.
TEST(SimtLaunchRules, OptInLimitsOfEachArchitecture)
{
    const char* name = kdfuse::simt::kernel_name<touch<4>>();
    kdfuse::simt::set_kernel_resources(name, 80, 32, 1024);
    kdfuse::simt::set_kernel_resources(name, 90, 32, 1024);
    DeviceBuffer<float> out(1);
    ASSERT_EQ(cudaFuncSetAttribute(touch<4>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024), cudaSuccess);
    EXPECT_EQ(kdf::launch<touch<4>>({dim3(1), dim3(32), 162 * 1024}, out.get()), cudaSuccess);
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<touch<4>>({dim3(1), dim3(32), 163 * 1024}, out.get()), cudaErrorInvalidValue);
        EXPECT_THAT(expect.only(), HasSubstr("more than the 166912 bytes sm_80 allows a block"));
    }
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<touch<4>>({dim3(1), dim3(32), 201 * 1024}, out.get()), cudaErrorInvalidValue);
        EXPECT_THAT(expect.only(), HasSubstr("more dynamic shared memory than the 204800 bytes the kernel opted in to"));
    }
    (void)cudaGetLastError();
}

// Dynamic parallelism is not emulated: a launch from kernel code is refused (kdfuse's kernels never launch).
TEST(SimtLaunchRules, LaunchesFromKernelCodeAreRefused)
{
    DeviceBuffer<float> out(1);
    DeviceBuffer<int> status(std::vector<int>{0});
    {
        ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<launches_from_kernel>({dim3(1), dim3(32)}, out.get(), status.get()), cudaSuccess);
        EXPECT_THAT(expect.only(), HasSubstr("kernel launched from kernel code"));
    }
    EXPECT_EQ(status.download()[0], static_cast<int>(cudaErrorNotSupported));
    (void)cudaGetLastError();
}

}  // namespace
