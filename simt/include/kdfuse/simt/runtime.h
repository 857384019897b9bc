// kdfuse SIMT backend: the CUDA execution model on a CPU.
//
// The kernel sources of kdfuse are compiled twice: by nvcc for real GPUs, and by a host C++ compiler
// against this header so that every test run executes them. Each CUDA thread is a fiber
// (boost::context), a block runs to completion on one OS thread, and the fibers of a block are
// interleaved only at __syncthreads and warp-synchronous operations, in an order chosen by the
// KDFUSE_SIMT_SCHEDULE environment variable (forward, reverse, random[:seed]).
//
// What it models: thread/block indices, static and dynamic shared memory, barriers (with detection
// of divergent barriers), warp shuffles/votes in true lock-step (also when only part of a block
// executes them), atomics, launch-configuration limits, the CUDA runtime calls kdfuse uses (with
// bounds-checked memcpy/memset), and counters of launches, cuBLAS and CUB calls and synchronisations.
// What it cannot model: the memory model, timing, occupancy, registers, tensor cores, real
// CUB/cuBLAS algorithms, stream concurrency. See docs/architecture.md.
//
// Everything that would collide with the real CUDA runtime at link time lives in the namespace
// kdfuse::simt::api and is made visible by a using-directive at the end of this header, so the SIMT
// build can be loaded into a process that also uses the real CUDA runtime (PyTorch, for instance).
#pragma once

#if defined(__CUDACC__)
#error "kdfuse/simt/runtime.h is for host compilers; nvcc builds use the real CUDA runtime"
#endif

#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <source_location>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#define KDFUSE_SIMT_API __attribute__((visibility("default")))

// ---- CUDA keywords -------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// All fibers of a block run on one OS thread, so thread-local statics are exactly block-shared.
#define __shared__ static thread_local

// Opaque handle types share their tags with the real CUDA headers, so a cudaStream_t has one type in
// both builds (the public C API takes `struct CUstream_st*`).
struct CUstream_st;
struct CUevent_st;

namespace kdfuse::simt::api {

// ---- vector types --------------------------------------------------------------------------------
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct alignas(8) float2 { float x, y; };
struct float3 { float x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) double2 { double x, y; };
inline constexpr float2 make_float2(float x, float y) { return {x, y}; }
inline constexpr float3 make_float3(float x, float y, float z) { return {x, y, z}; }
inline constexpr float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline constexpr int2 make_int2(int x, int y) { return {x, y}; }
inline constexpr int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline constexpr uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline constexpr uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline constexpr double2 make_double2(double x, double y) { return {x, y}; }

inline constexpr int warpSize = 32;

// ---- runtime types (values as in the CUDA 13 headers) --------------------------------------------
enum cudaError_t : int {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorUnknown = 999,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind : int {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
using cudaStream_t = ::CUstream_st*;
using cudaEvent_t = ::CUevent_st*;
#define cudaStreamLegacy ((::kdfuse::simt::api::cudaStream_t)0x1)
#define cudaStreamPerThread ((::kdfuse::simt::api::cudaStream_t)0x2)
inline constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
inline constexpr unsigned cudaEventDefault = 0, cudaEventDisableTiming = 2;

enum cudaDeviceAttr : int {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrL2CacheSize = 38,
    cudaDevAttrMemoryClockRate = 36,
    cudaDevAttrGlobalMemoryBusWidth = 37,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaFuncAttribute : int {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int multiProcessorCount;
    int major;
    int minor;
    int l2CacheSize;
    int memoryBusWidth;
};

KDFUSE_SIMT_API cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <typename T>
inline cudaError_t cudaMalloc(T** ptr, size_t bytes) { return cudaMalloc(reinterpret_cast<void**>(ptr), bytes); }
KDFUSE_SIMT_API cudaError_t cudaFree(void* ptr);
KDFUSE_SIMT_API cudaError_t cudaMallocHost(void** ptr, size_t bytes);
KDFUSE_SIMT_API cudaError_t cudaFreeHost(void* ptr);
// Copies and sets record their call site (an extra defaulted argument) for the out-of-bounds report.
KDFUSE_SIMT_API cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                                       std::source_location where = std::source_location::current());
KDFUSE_SIMT_API cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                                            cudaStream_t stream = nullptr,
                                            std::source_location where = std::source_location::current());
KDFUSE_SIMT_API cudaError_t cudaMemset(void* dst, int value, size_t bytes,
                                       std::source_location where = std::source_location::current());
KDFUSE_SIMT_API cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr,
                                            std::source_location where = std::source_location::current());
KDFUSE_SIMT_API cudaError_t cudaGetLastError();
KDFUSE_SIMT_API cudaError_t cudaPeekAtLastError();
KDFUSE_SIMT_API const char* cudaGetErrorString(cudaError_t error);
KDFUSE_SIMT_API const char* cudaGetErrorName(cudaError_t error);
KDFUSE_SIMT_API cudaError_t cudaDeviceSynchronize();
KDFUSE_SIMT_API cudaError_t cudaStreamCreate(cudaStream_t* stream);
KDFUSE_SIMT_API cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
KDFUSE_SIMT_API cudaError_t cudaStreamDestroy(cudaStream_t stream);
KDFUSE_SIMT_API cudaError_t cudaStreamSynchronize(cudaStream_t stream);
KDFUSE_SIMT_API cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);
KDFUSE_SIMT_API cudaError_t cudaEventCreate(cudaEvent_t* event);
KDFUSE_SIMT_API cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
KDFUSE_SIMT_API cudaError_t cudaEventDestroy(cudaEvent_t event);
KDFUSE_SIMT_API cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
KDFUSE_SIMT_API cudaError_t cudaEventSynchronize(cudaEvent_t event);
KDFUSE_SIMT_API cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
KDFUSE_SIMT_API cudaError_t cudaGetDeviceCount(int* count);
KDFUSE_SIMT_API cudaError_t cudaGetDevice(int* device);
KDFUSE_SIMT_API cudaError_t cudaSetDevice(int device);
KDFUSE_SIMT_API cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
KDFUSE_SIMT_API cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
KDFUSE_SIMT_API cudaError_t cudaFuncSetAttributeErased(const void* func, cudaFuncAttribute attr, int value);
template <typename F>
inline cudaError_t cudaFuncSetAttribute(F* func, cudaFuncAttribute attr, int value)
{
    return cudaFuncSetAttributeErased(reinterpret_cast<const void*>(func), attr, value);
}

}  // namespace kdfuse::simt::api

// ---- the emulator's own interface ------------------------------------------------------------------
namespace kdfuse::simt {
using namespace api;

enum class Schedule { Forward, Reverse, Random };

// Per-process counters. Tests read them to prove fusion (kernel launches per loss call) and the
// absence of hidden synchronisation or default-stream work.
struct Counters {
    uint64_t kernel_launches;  // launches made through kdf::launch (not the CUB shim's own)
    uint64_t cublas_calls;     // GEMM calls into the cuBLAS shim
    uint64_t cub_calls;        // device-wide CUB algorithm runs (not size queries)
    uint64_t null_stream_ops;  // launches, async copies/sets and GEMMs issued on stream 0
    uint64_t synchronizations; // device/stream/event synchronisations and synchronous memcpy/memset
    uint64_t memsets;          // cudaMemset / cudaMemsetAsync calls (each is an operation on the GPU's stream)
    uint64_t gemm_flops;       // 2 m n k per GEMM of the cuBLAS shim (batches included), also in count-only mode
    uint64_t bytes_loaded;     // global memory read by kernel code (measured; see traffic())
    uint64_t bytes_stored;     // global memory written by kernel code (measured)
};
KDFUSE_SIMT_API Counters counters();
KDFUSE_SIMT_API void reset_counters();

// Measured global-memory traffic, per launch. Kernel code compiled with the traffic instrumentation (the
// libkdfuse_sim_traffic build: every load and store of kernel code calls the backend) has each access that lies
// in a cudaMalloc allocation attributed to the running launch; shared memory, the stack and host memory do not
// count. Memsets and device copies are recorded as the bytes they write (and read); cuBLAS GEMMs, which the
// shim does not run as kernel code, as their minimum traffic (A and B read once, C written, and read when
// beta != 0), marked `modelled`. In count-only mode launches are recorded too, without traffic (`executed` false),
// so the sequence of operations of a full-size call can be compared with that of a smaller one.
// Recording is off until set_traffic_recording(true); reset_counters() clears it.
// Widths are the CPU's (a 16-byte vector access of the GPU code is four 4-byte accesses here): take vector
// widths from the SASS audit.
struct LaunchTraffic {
    std::string name;       // kernel name (kernel_name), "cudaMemsetAsync", "cudaMemcpyAsync" or "cublas GEMM"
    bool modelled = false;  // true for GEMMs: bytes from the shapes, not measured
    bool executed = true;   // false for a launch in count-only mode (recorded with no traffic)
    uint64_t bytes_loaded = 0, bytes_stored = 0;
    uint64_t unique_bytes = 0;  // distinct bytes touched (loaded or stored)
    uint64_t sectors = 0;       // distinct 32-byte sectors touched
    uint64_t loads_by_width[5] = {}, stores_by_width[5] = {};  // accesses of 1, 2, 4, 8 and 16 bytes
};
KDFUSE_SIMT_API void set_traffic_recording(bool on);

// The weak-memory check (instrumented build only, like the traffic): a global store stays private to the thread
// that made it until that thread executes __threadfence() (or the store is an atomic, or the kernel ends); a
// plain load by another block of a byte stored by a thread that has not fenced since is reported as an error (on
// a GPU it could read the old value). Loads within the storing block are not checked (__syncthreads orders them).
// The initial value comes from KDFUSE_SIMT_MEMORY (weak, or unset / strong), read once.
KDFUSE_SIMT_API void set_memory_check(bool weak);
KDFUSE_SIMT_API bool memory_check();
KDFUSE_SIMT_API std::vector<LaunchTraffic> traffic();
// True in a process whose kernel code carries the instrumentation (a load or store was ever reported).
KDFUSE_SIMT_API bool traffic_instrumented();

// Count-only mode, for exact launch counts at sizes too large to emulate (bench/): launches and cuBLAS
// GEMMs are validated and counted but not executed, and cudaMalloc does not poison (so untouched pages
// stay unallocated). Memory contents are meaningless while it is on.
KDFUSE_SIMT_API void set_count_only(bool on);
KDFUSE_SIMT_API bool count_only();

// Schedule of the fibers between synchronisation points and of the blocks of a grid. The initial
// value comes from KDFUSE_SIMT_SCHEDULE (forward, reverse, random or random:SEED), read once; an invalid
// value makes every launch fail with cudaErrorInvalidValue and a message naming it, until set_schedule.
// Tests may switch it.
KDFUSE_SIMT_API void set_schedule(Schedule schedule, uint64_t seed = 1);
// Parses a KDFUSE_SIMT_SCHEDULE value (NULL or "" = forward). False, with `error` set, when it is invalid.
KDFUSE_SIMT_API bool parse_schedule(const char* text, Schedule& schedule, uint64_t& seed, std::string& error);
KDFUSE_SIMT_API Schedule schedule();
KDFUSE_SIMT_API const char* schedule_name();

// Errors found in kernel code or in runtime calls (divergent barriers, bad warp masks, out-of-bounds
// copies, bad launch configurations). Each is printed to stderr, passed to the hook if one is set
// (test mains turn it into a test failure) and returned by the next cudaGetLastError().
using ErrorHook = void (*)(const char* message, void* user);
KDFUSE_SIMT_API void set_error_hook(ErrorHook hook, void* user);
KDFUSE_SIMT_API uint64_t error_count();

// Bytes of device memory currently allocated through cudaMalloc.
KDFUSE_SIMT_API size_t bytes_allocated();

// The number of emulated devices (default 1; tests of multi-device code set more). They are identical and share
// one memory; cudaSetDevice / cudaGetDevice select and report the calling host thread's current device.
KDFUSE_SIMT_API void set_device_count(int count);

namespace detail {
struct ThreadState { uint3 thread_idx; };
struct BlockState { uint3 block_idx; dim3 block_dim; dim3 grid_dim; unsigned char* dynamic_smem; size_t dynamic_bytes; };
KDFUSE_SIMT_API extern thread_local ThreadState* tl_thread;
KDFUSE_SIMT_API extern thread_local BlockState tl_block;

enum class WarpOp : int { Shfl, ShflUp, ShflDown, ShflXor, Ballot, Any, All, Sync };
KDFUSE_SIMT_API uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int param, int width,
                                 const std::source_location& where);
enum class BarrierOp : int { Sync, Count, And, Or };
KDFUSE_SIMT_API int barrier(BarrierOp op, int predicate, const std::source_location& where);

// Reports an error from kernel code (the calling thread's block is aborted) or from host code.
[[noreturn]] KDFUSE_SIMT_API void kernel_fail(const std::string& message, const std::source_location& where);
KDFUSE_SIMT_API void report(cudaError_t code, const std::string& message);

using Thunk = void (*)(void* closure);
KDFUSE_SIMT_API cudaError_t launch_erased(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem,
                                          cudaStream_t stream, const std::source_location& where, Thunk thunk,
                                          void* closure, bool counted);
KDFUSE_SIMT_API void count_cublas_call();
KDFUSE_SIMT_API void count_cub_call();

// A kernel's name as the GNU demangler writes the real build's symbol, less return type and parameter list
// ("kdf::kernels::(anonymous namespace)::kd_kernel<128, float>"): the key of the resource table. Takes
// typeid(KernelTag<kernel>).name().
template <auto Kernel>
struct KernelTag {};
KDFUSE_SIMT_API std::string kernel_name_from_tag(const char* mangled_tag);

// The weak-memory check's hooks: __threadfence publishes the calling thread's stores; accesses inside an
// AtomicScope (the atomic functions) are coherent.
KDFUSE_SIMT_API void memory_fence();
KDFUSE_SIMT_API extern thread_local int tl_atomic_depth;
struct AtomicScope {
    AtomicScope() { ++tl_atomic_depth; }
    ~AtomicScope() { --tl_atomic_depth; }
    AtomicScope(const AtomicScope&) = delete;
    AtomicScope& operator=(const AtomicScope&) = delete;
};

inline const uint3& thread_idx() { return tl_thread->thread_idx; }
inline const uint3& block_idx() { return tl_block.block_idx; }
inline const dim3& block_dim() { return tl_block.block_dim; }
inline const dim3& grid_dim() { return tl_block.grid_dim; }

template <typename T>
inline uint64_t to_bits(T v)
{
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "warp operations move at most 8 bytes");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T>
inline T from_bits(uint64_t b)
{
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

// A value hidden from the optimiser: a multiply before it cannot be fused with an add after it (the rounding
// intrinsics, kdfuse::simt::api).
inline float opaque(float x)
{
#if defined(__x86_64__) || defined(__i386__)
    asm("" : "+x"(x));
#elif defined(__aarch64__)
    asm("" : "+w"(x));
#else
    volatile float v = x;
    x = v;
#endif
    return x;
}
}  // namespace detail

// The name under which `Kernel` appears in the resource table (see detail::kernel_name_from_tag).
template <auto Kernel>
inline const char* kernel_name()
{
    static const std::string name = detail::kernel_name_from_tag(typeid(detail::KernelTag<Kernel>).name());
    return name.c_str();
}

// The resources of one kernel in the real build for one architecture (sm_80 = 80): registers per thread and
// static shared memory per block. Launches of a kernel that has entries are refused where the GPU would
// refuse them. The generated table (simt/src/kernel_resources.inc) is loaded on first use; tests add entries
// for kernels of their own.
KDFUSE_SIMT_API void set_kernel_resources(const char* name, int arch, int registers, int static_smem);

// Launches `kernel` on the emulator. Arguments are converted to the kernel's parameter types once and
// every CUDA thread receives its own copy, as with <<<>>>. `name` (kernel_name<kernel>(), or NULL for
// the CUB shim's own kernels) selects the resource limits that apply.
template <typename... P, typename... A>
inline cudaError_t launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                          const std::source_location& where, const char* name, bool counted, A&&... args)
{
    static_assert(sizeof...(P) == sizeof...(A), "wrong number of kernel arguments");
    std::tuple<std::decay_t<P>...> bound(std::forward<A>(args)...);
    struct Closure {
        void (*kernel)(P...);
        std::tuple<std::decay_t<P>...>* args;
    } closure{kernel, &bound};
    auto thunk = [](void* c) {
        auto* cl = static_cast<Closure*>(c);
        std::apply([&](auto... copies) { cl->kernel(copies...); }, *cl->args);
    };
    return detail::launch_erased(reinterpret_cast<const void*>(kernel), name, grid, block, smem, stream, where, thunk,
                                 &closure, counted);
}
}  // namespace kdfuse::simt

// ---- device-side built-ins -----------------------------------------------------------------------
#define threadIdx (::kdfuse::simt::detail::thread_idx())
#define blockIdx (::kdfuse::simt::detail::block_idx())
#define blockDim (::kdfuse::simt::detail::block_dim())
#define gridDim (::kdfuse::simt::detail::grid_dim())

namespace kdfuse::simt::api {

inline void __syncthreads(std::source_location where = std::source_location::current())
{
    detail::barrier(detail::BarrierOp::Sync, 0, where);
}
inline int __syncthreads_count(int pred, std::source_location where = std::source_location::current())
{
    return detail::barrier(detail::BarrierOp::Count, pred, where);
}
inline int __syncthreads_and(int pred, std::source_location where = std::source_location::current())
{
    return detail::barrier(detail::BarrierOp::And, pred, where);
}
inline int __syncthreads_or(int pred, std::source_location where = std::source_location::current())
{
    return detail::barrier(detail::BarrierOp::Or, pred, where);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, std::source_location where = std::source_location::current())
{
    detail::warp_op(detail::WarpOp::Sync, mask, 0, 0, 32, where);
}
// Memory fences order nothing on the emulator (a block's fibers share one OS thread), but in the weak-memory check
// (set_memory_check) __threadfence publishes the calling thread's global stores to other blocks.
inline void __threadfence() { detail::memory_fence(); }
inline void __threadfence_block() {}

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
                     std::source_location where = std::source_location::current())
{
    return detail::from_bits<T>(
        detail::warp_op(detail::WarpOp::Shfl, mask, detail::to_bits(var), src_lane, width, where));
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        std::source_location where = std::source_location::current())
{
    return detail::from_bits<T>(detail::warp_op(detail::WarpOp::ShflUp, mask, detail::to_bits(var),
                                                static_cast<int>(delta), width, where));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          std::source_location where = std::source_location::current())
{
    return detail::from_bits<T>(detail::warp_op(detail::WarpOp::ShflDown, mask, detail::to_bits(var),
                                                static_cast<int>(delta), width, where));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                         std::source_location where = std::source_location::current())
{
    return detail::from_bits<T>(
        detail::warp_op(detail::WarpOp::ShflXor, mask, detail::to_bits(var), lane_mask, width, where));
}
inline unsigned __ballot_sync(unsigned mask, int pred, std::source_location where = std::source_location::current())
{
    return static_cast<unsigned>(detail::warp_op(detail::WarpOp::Ballot, mask, pred != 0, 0, 32, where));
}
inline int __any_sync(unsigned mask, int pred, std::source_location where = std::source_location::current())
{
    return static_cast<int>(detail::warp_op(detail::WarpOp::Any, mask, pred != 0, 0, 32, where));
}
inline int __all_sync(unsigned mask, int pred, std::source_location where = std::source_location::current())
{
    return static_cast<int>(detail::warp_op(detail::WarpOp::All, mask, pred != 0, 0, 32, where));
}

// ---- atomics (one OS thread runs a block, but std::atomic_ref keeps them honest anyway); in the weak-memory
// check an atomic is a coherent access (AtomicScope) -----------------------------------------------------------
template <typename T>
inline T atomicAdd(T* address, T value)
{
    const detail::AtomicScope atomic;
    return std::atomic_ref<T>(*address).fetch_add(value);
}
template <typename T>
inline T atomicSub(T* address, T value)
{
    const detail::AtomicScope atomic;
    return std::atomic_ref<T>(*address).fetch_sub(value);
}
template <typename T>
inline T atomicExch(T* address, T value)
{
    const detail::AtomicScope atomic;
    return std::atomic_ref<T>(*address).exchange(value);
}
template <typename T>
inline T atomicCAS(T* address, T compare, T value)
{
    const detail::AtomicScope atomic;
    std::atomic_ref<T>(*address).compare_exchange_strong(compare, value);
    return compare;
}
template <typename T>
inline T atomicMax(T* address, T value)
{
    const detail::AtomicScope atomic;
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (old < value && !ref.compare_exchange_weak(old, value)) {}
    return old;
}
template <typename T>
inline T atomicMin(T* address, T value)
{
    const detail::AtomicScope atomic;
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (value < old && !ref.compare_exchange_weak(old, value)) {}
    return old;
}

// ---- math intrinsics missing from <cmath> (glibc already declares __expf, __logf, __powf, ...) ----
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
// The rounding intrinsics round each operation on its own: CUDA promises they are never merged into a multiply-add,
// and they are not here either when the library is compiled with contraction forced on (KDFUSE_SIMT_CONTRACT).
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fmul_rn(float a, float b) { return kdfuse::simt::detail::opaque(a * b); }
inline float __fadd_rn(float a, float b) { return kdfuse::simt::detail::opaque(a) + kdfuse::simt::detail::opaque(b); }
inline float __fsub_rn(float a, float b) { return kdfuse::simt::detail::opaque(a) - kdfuse::simt::detail::opaque(b); }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline float normcdff(float x) { return 0.5f * std::erfc(-x * 0.70710678118654752f); }
inline double normcdf(double x) { return 0.5 * std::erfc(-x * 0.70710678118654752); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b)
{
    return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(unsigned x) { return std::countl_zero(x); }
inline int __ffs(unsigned x) { return x == 0 ? 0 : std::countr_zero(x) + 1; }
template <typename T>
inline T __ldg(const T* p) { return *p; }
template <typename T>
inline T __ldcg(const T* p) { return *p; }

#define KDFUSE_SIMT_MINMAX(T)                              \
    inline T min(T a, T b) { return b < a ? b : a; }       \
    inline T max(T a, T b) { return a < b ? b : a; }
KDFUSE_SIMT_MINMAX(int)
KDFUSE_SIMT_MINMAX(unsigned)
KDFUSE_SIMT_MINMAX(long)
KDFUSE_SIMT_MINMAX(unsigned long)
KDFUSE_SIMT_MINMAX(long long)
KDFUSE_SIMT_MINMAX(unsigned long long)
#undef KDFUSE_SIMT_MINMAX
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }

}  // namespace kdfuse::simt::api

// kdfuse::simt::set_count_only with C linkage, for a process that loads the SIMT runtime without this header
// (bench/host_overhead.py, through ctypes): on != 0 turns count-only mode on, 0 off.
extern "C" KDFUSE_SIMT_API void kdfuse_simt_set_count_only(int on);

using namespace kdfuse::simt::api;
