// Test helpers shared by the SIMT and the GPU test executables.
#pragma once

#include "../../kernels/common/cuda_api.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <vector>

namespace kdftest {

// Fixture for tests that need a device: on the SIMT build the emulator is always there; on the CUDA
// build the test is skipped, with a message, when no GPU is present.
class DeviceTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
            (void)cudaGetLastError();
            GTEST_SKIP() << "no CUDA device present: GPU test skipped (it runs on the SIMT backend instead)";
        }
    }
};

// A device buffer that frees itself; upload/download are synchronous copies.
template <typename T>
class DeviceBuffer {
public:
    explicit DeviceBuffer(size_t n) : n_(n) { EXPECT_EQ(cudaMalloc(&ptr_, n * sizeof(T)), cudaSuccess); }
    explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
    ~DeviceBuffer() { cudaFree(ptr_); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    T* get() const { return ptr_; }
    size_t size() const { return n_; }
    void upload(const std::vector<T>& host)
    {
        ASSERT_EQ(host.size(), n_);
        ASSERT_EQ(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    }
    std::vector<T> download() const
    {
        std::vector<T> host(n_);
        EXPECT_EQ(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
        return host;
    }

private:
    T* ptr_ = nullptr;
    size_t n_;
};

// Device allocations of raw bytes, each zeroed (or holding an image), freed together when the owner goes.
class DeviceAllocations {
public:
    // `bytes` (at least 1) zeroed bytes, then `image` copied to their start.
    unsigned char* alloc(size_t bytes, const std::vector<unsigned char>& image = {});

private:
    std::vector<std::unique_ptr<void, void (*)(void*)>> owned_;
};

// Deterministic values in [lo, hi) from a fixed-seed generator (no <random> distribution, whose output
// differs between standard libraries).
std::vector<float> uniform(size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f);

}  // namespace kdftest
