#include "device_test.h"

#include <cstdint>

namespace kdftest {

std::vector<float> uniform(size_t n, unsigned seed, float lo, float hi)
{
    std::vector<float> v(n);
    uint64_t s = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (auto& x : v) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x = lo + (hi - lo) * static_cast<float>((s >> 40) * (1.0 / 16777216.0));
    }
    return v;
}

unsigned char* DeviceAllocations::alloc(size_t bytes, const std::vector<unsigned char>& image)
{
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, bytes ? bytes : 1), cudaSuccess);
    EXPECT_EQ(cudaMemset(p, 0, bytes ? bytes : 1), cudaSuccess);
    if (!image.empty()) EXPECT_EQ(cudaMemcpy(p, image.data(), image.size(), cudaMemcpyHostToDevice), cudaSuccess);
    owned_.emplace_back(p, [](void* q) { cudaFree(q); });
    return static_cast<unsigned char*>(p);
}

}  // namespace kdftest
