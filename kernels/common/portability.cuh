// The one place where kernel code differs between the CUDA build and the SIMT build.
//
// Kernel sources include this header and then use only portable spellings:
//   - kdf::launch<kernel>({grid, block, smem, stream}, args...) instead of kernel<<<...>>>(args...);
//   - kdf::dynamic_shared<T>() instead of `extern __shared__ T buf[]`;
//   - cub::BlockReduce / cub::WarpReduce / cub::Device*Reduce (real CUB or the SIMT shim);
//   - kdf::Sum / kdf::Max / kdf::Min as reduction operators;
//   - __half / __nv_bfloat16 storage read and written through kdf::to_float / kdf::from_float<T> (float16.h).
// tests/lint checks that no other kernel file contains `<<<`, `extern __shared__` or inline `asm`.
#pragma once

#include "cuda_api.h"
#include "float16.h"

#include <cstddef>
#include <utility>

#if defined(KDFUSE_SIMT)
#include <kdfuse/simt/cub.h>

#include <source_location>
#else
#include <cub/block/block_reduce.cuh>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_segmented_reduce.cuh>
#include <cub/warp/warp_reduce.cuh>
#endif

namespace kdf {

struct Sum {
    template <typename T>
    __host__ __device__ __forceinline__ T operator()(const T& a, const T& b) const { return a + b; }
};
struct Max {
    template <typename T>
    __host__ __device__ __forceinline__ T operator()(const T& a, const T& b) const { return a < b ? b : a; }
};
struct Min {
    template <typename T>
    __host__ __device__ __forceinline__ T operator()(const T& a, const T& b) const { return b < a ? b : a; }
};

// Launch configuration. On the SIMT backend `where` records the launch site for error reports
// (nvcc's front end has no std::source_location).
struct LaunchConfig {
    dim3 grid;
    dim3 block;
    size_t smem = 0;
    cudaStream_t stream = nullptr;
#if defined(KDFUSE_SIMT)
    std::source_location where;
    LaunchConfig(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr,
                 std::source_location w = std::source_location::current())
        : grid(g), block(b), smem(s), stream(st), where(w)
    {
    }
#else
    LaunchConfig(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr) : grid(g), block(b), smem(s), stream(st) {}
#endif
};

namespace launch_detail {
template <typename F>
struct Launcher;
template <typename... Params>
struct Launcher<void (*)(Params...)> {
    template <auto Kernel, typename... Args>
    static cudaError_t run(const LaunchConfig& cfg, Args&&... args)
    {
#if defined(KDFUSE_SIMT)
        return ::kdfuse::simt::launch(Kernel, cfg.grid, cfg.block, cfg.smem, cfg.stream, cfg.where,
                                      ::kdfuse::simt::kernel_name<Kernel>(), true, static_cast<Params>(args)...);
#else
        Kernel<<<cfg.grid, cfg.block, cfg.smem, cfg.stream>>>(static_cast<Params>(args)...);
        return cudaGetLastError();
#endif
    }
};
}  // namespace launch_detail

// Launches `Kernel` and returns the launch status (cudaGetLastError() after the launch):
// kdf::launch<my_kernel<256>>({grid, block, smem, stream}, args...). The kernel is a template argument so
// that the SIMT backend knows its name and can apply the real build's resource limits to the launch
// (registers and static shared memory per architecture, from the generated table in simt/src).
template <auto Kernel, typename... Args>
inline cudaError_t launch(const LaunchConfig& cfg, Args&&... args)
{
    return launch_detail::Launcher<decltype(Kernel)>::template run<Kernel>(cfg, std::forward<Args>(args)...);
}

// The block's dynamic shared memory (sized by LaunchConfig::smem), 16-byte aligned.
template <typename T>
__device__ __forceinline__ T* dynamic_shared()
{
#if defined(KDFUSE_SIMT)
    return reinterpret_cast<T*>(::kdfuse::simt::detail::tl_block.dynamic_smem);
#else
    extern __shared__ __align__(16) unsigned char kdf_dynamic_smem[];
    return reinterpret_cast<T*>(kdf_dynamic_smem);
#endif
}

}  // namespace kdf
