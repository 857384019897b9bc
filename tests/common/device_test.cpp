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

}  // namespace kdftest
