// 16-bit floating-point storage for kernels and host code alike: __half and __nv_bfloat16 from CUDA's
// cuda_fp16.h / cuda_bf16.h, or the SIMT backend's kdfuse/simt/fp16.h (the same round-to-nearest-even
// conversions). Values are computed in fp32: kdf::to_float on load, kdf::from_float<T> on store.
#pragma once

#include "cuda_api.h"

#if defined(KDFUSE_SIMT)
#include <kdfuse/simt/fp16.h>
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace kdf {

__host__ __device__ __forceinline__ float to_float(float x) { return x; }
__host__ __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__host__ __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__host__ __device__ __forceinline__ T from_float(float x);
template <>
__host__ __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__host__ __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__host__ __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

}  // namespace kdf
