// The 16-bit floating-point storage types of cuda_fp16.h / cuda_bf16.h as the SIMT backend sees them:
// __half (IEEE binary16) and __nv_bfloat16 (the top half of an fp32), with the conversions kernels use.
// Conversions to 16 bits round to nearest even, as __float2half_rn / __float2bfloat16_rn do; the
// conversions to float are exact. Only what kdfuse's kernels need: no 16-bit arithmetic.
#pragma once

#include <bit>
#include <cstdint>

namespace kdfuse::simt::api {

struct __half {
    uint16_t bits;
};
struct __nv_bfloat16 {
    uint16_t bits;
};

inline float __half2float(__half h) { return static_cast<float>(std::bit_cast<_Float16>(h.bits)); }
inline __half __float2half_rn(float f) { return {std::bit_cast<uint16_t>(static_cast<_Float16>(f))}; }

inline float __bfloat162float(__nv_bfloat16 b) { return std::bit_cast<float>(static_cast<uint32_t>(b.bits) << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
    const uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {0x7fff};  // NaN: the canonical quiet NaN
    return {static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

}  // namespace kdfuse::simt::api
