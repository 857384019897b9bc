// The handle's device: a handle belongs to the device that was current at kdfCreate (its cuBLAS handle and device
// limits), and kernels launch on the current device, so every entry point refuses a call made while another device
// is current, naming both, and works again once the handle's device is current. Two emulated devices
// (kdfuse::simt::set_device_count).
#include "common/entry_points.h"
#include "common/loss_test.h"

#include <gmock/gmock.h>

#include <memory>

namespace {

using kdftest::Buffer;
using kdftest::Entry;
using kdftest::Pointers;

class Device : public ::testing::Test, protected kdftest::DeviceAllocations {
protected:
    void SetUp() override { kdfuse::simt::set_device_count(2); }
    void TearDown() override
    {
        EXPECT_EQ(cudaSetDevice(0), cudaSuccess);
        kdfuse::simt::set_device_count(1);
    }
};

TEST_F(Device, EveryEntryPointRefusesAHandleOfAnotherDevice)
{
    for (const int handle_device : {0, 1}) {
        ASSERT_EQ(cudaSetDevice(handle_device), cudaSuccess);
        kdfHandle_t handle = nullptr;
        ASSERT_EQ(kdfCreate(&handle), KDF_STATUS_SUCCESS);
        kdftest::Rng rng(7);
        for (const Entry& e : kdftest::entry_points(rng, false)) {
            SCOPED_TRACE(e.name + ", handle of device " + std::to_string(handle_device));
            Pointers p;
            for (const Buffer& b : e.buffers) p.push_back(b.present && b.bytes > 0 ? alloc(b.bytes) : nullptr);
            const int ws = e.workspace_index();
            const size_t ws_bytes = ws < 0 ? 0 : e.buffers[ws].bytes;
            ASSERT_EQ(cudaSetDevice(1 - handle_device), cudaSuccess);
            EXPECT_EQ(e.call(handle, p, ws_bytes, 1.0f, nullptr), KDF_STATUS_INVALID_VALUE);
            EXPECT_THAT(kdfGetLastErrorString(),
                        ::testing::HasSubstr("handle was created on device " + std::to_string(handle_device) +
                                             " but device " + std::to_string(1 - handle_device) + " is current"));
            ASSERT_EQ(cudaSetDevice(handle_device), cudaSuccess);
            EXPECT_EQ(e.call(handle, p, ws_bytes, 1.0f, nullptr), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
        }
        EXPECT_EQ(kdfDestroy(handle), KDF_STATUS_SUCCESS);
    }
}

TEST_F(Device, TheEmulatorHasTheDevicesItWasGiven)
{
    int count = 0, current = -1;
    EXPECT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
    EXPECT_EQ(count, 2);
    EXPECT_EQ(cudaSetDevice(1), cudaSuccess);
    EXPECT_EQ(cudaGetDevice(&current), cudaSuccess);
    EXPECT_EQ(current, 1);
    EXPECT_EQ(cudaSetDevice(2), cudaErrorInvalidDevice);
    (void)cudaGetLastError();
}

}  // namespace
