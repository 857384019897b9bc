// The CUDA runtime subset of the SIMT backend: memory with an allocation registry, synchronous
// streams and events, errors, device properties and the per-process counters.
#include "state.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <unordered_map>

namespace kdfuse::simt {
namespace detail {
namespace {

struct ErrorState {
    std::mutex mutex;
    ErrorHook hook = nullptr;
    void* user = nullptr;
    std::atomic<uint64_t> count{0};
};
ErrorState& error_state()
{
    static ErrorState s;
    return s;
}
thread_local cudaError_t tl_last_error = cudaSuccess;

// The emulated devices: identical, sharing one memory (a test sets their number); the current one is per host
// thread, as with CUDA.
std::atomic<int>& device_count_state()
{
    static std::atomic<int> n{1};
    return n;
}
int device_count() { return device_count_state(); }
thread_local int tl_device = 0;

// Every live cudaMalloc allocation: base -> size. Copies and sets whose device range starts inside an
// allocation must end inside it. Memory that cudaMalloc did not return (for example a PyTorch CPU
// tensor handed to the SIMT build as "device" memory) is not checked.
struct Registry {
    std::mutex mutex;
    std::map<uintptr_t, size_t> allocations;
    size_t bytes = 0;
    std::set<cudaStream_t> streams;
    std::set<cudaEvent_t> events;
    std::unordered_map<const void*, int> max_dynamic_smem;
};
Registry& registry()
{
    static Registry r;
    return r;
}

struct Event { std::chrono::steady_clock::time_point when{}; bool recorded = false; };

cudaError_t check_device_range(const void* p, size_t bytes, const std::string& call, const char* side)
{
    if (bytes == 0) return cudaSuccess;
    if (p == nullptr) {
        report(cudaErrorInvalidValue, call + ": " + side + " pointer is NULL");
        return cudaErrorInvalidValue;
    }
    auto addr = reinterpret_cast<uintptr_t>(p);
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.allocations.upper_bound(addr);
    if (it == r.allocations.begin()) return cudaSuccess;
    --it;
    uintptr_t base = it->first;
    size_t size = it->second;
    if (addr >= base + size) return cudaSuccess;
    if (addr + bytes > base + size) {
        report(cudaErrorInvalidValue,
               call + ": out-of-bounds " + side + " range: " + std::to_string(bytes) +
                   " bytes at offset " + std::to_string(addr - base) + " of a " + std::to_string(size) +
                   "-byte allocation");
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

cudaError_t set_last(cudaError_t e)
{
    if (e != cudaSuccess) tl_last_error = e;
    return e;
}

}  // namespace

CounterState& counter_state()
{
    static CounterState c;
    return c;
}

std::string format_location(const std::source_location& where)
{
    return std::string(where.file_name()) + ":" + std::to_string(where.line());
}

void report(cudaError_t code, const std::string& message)
{
    ErrorState& s = error_state();
    s.count.fetch_add(1);
    tl_last_error = code;
    std::string line = "kdfuse-simt error: " + message;
    std::fprintf(stderr, "%s\n", line.c_str());
    ErrorHook hook;
    void* user;
    {
        std::lock_guard<std::mutex> lock(s.mutex);
        hook = s.hook;
        user = s.user;
    }
    if (hook) hook(line.c_str(), user);
}

cudaError_t use_stream(cudaStream_t stream, const char* what)
{
    if (stream == nullptr) {
        counter_state().null_stream_ops.fetch_add(1);
        return cudaSuccess;
    }
    if (stream == cudaStreamLegacy || stream == cudaStreamPerThread) return cudaSuccess;
    Registry& r = registry();
    bool known;
    {
        std::lock_guard<std::mutex> lock(r.mutex);
        known = r.streams.count(stream) != 0;
    }
    if (known) return cudaSuccess;
    report(cudaErrorInvalidResourceHandle, std::string(what) + ": stream was not created by cudaStreamCreate");
    return cudaErrorInvalidResourceHandle;
}

std::vector<std::pair<uintptr_t, uintptr_t>> allocation_ranges()
{
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    std::vector<std::pair<uintptr_t, uintptr_t>> out;
    out.reserve(r.allocations.size());
    for (const auto& [base, size] : r.allocations) out.emplace_back(base, base + size);
    return out;
}

std::optional<size_t> optin_dynamic_smem(const void* kernel)
{
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.max_dynamic_smem.find(kernel);
    if (it == r.max_dynamic_smem.end()) return std::nullopt;
    return static_cast<size_t>(it->second);
}

void count_cublas_call() { counter_state().cublas_calls.fetch_add(1); }

void count_cub_call() { counter_state().cub_calls.fetch_add(1); }

std::atomic<bool>& count_only_state()
{
    static std::atomic<bool> on{false};
    return on;
}

}  // namespace detail

void set_count_only(bool on) { detail::count_only_state() = on; }

bool count_only() { return detail::count_only_state(); }

Counters counters()
{
    auto& c = detail::counter_state();
    return {c.kernel_launches.load(), c.cublas_calls.load(), c.cub_calls.load(), c.null_stream_ops.load(),
            c.synchronizations.load(), c.memsets.load(), c.gemm_flops.load(), c.bytes_loaded.load(),
            c.bytes_stored.load()};
}

void set_device_count(int count)
{
    if (count >= 1) detail::device_count_state() = count;
    if (detail::tl_device >= detail::device_count()) detail::tl_device = 0;
}

void reset_counters()
{
    auto& c = detail::counter_state();
    c.kernel_launches = 0;
    c.cublas_calls = 0;
    c.cub_calls = 0;
    c.null_stream_ops = 0;
    c.synchronizations = 0;
    c.memsets = 0;
    c.gemm_flops = 0;
    c.bytes_loaded = 0;
    c.bytes_stored = 0;
    detail::reset_traffic();
}

void set_error_hook(ErrorHook hook, void* user)
{
    auto& s = detail::error_state();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.hook = hook;
    s.user = user;
}

uint64_t error_count() { return detail::error_state().count.load(); }

size_t bytes_allocated()
{
    auto& r = detail::registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    return r.bytes;
}

namespace api {
using detail::check_device_range;
using detail::registry;
using detail::report;
using detail::set_last;

cudaError_t cudaMalloc(void** ptr, size_t bytes)
{
    if (ptr == nullptr) return set_last(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (bytes == 0) return cudaSuccess;
    void* p = nullptr;
    // Exact size, so AddressSanitizer sees any overrun; 256-byte alignment as cudaMalloc guarantees.
    if (posix_memalign(&p, 256, bytes) != 0) return set_last(cudaErrorMemoryAllocation);
    if (!count_only()) std::memset(p, 0xFF, bytes);  // stale reads of uninitialised device memory show up as NaN / -1
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.allocations[reinterpret_cast<uintptr_t>(p)] = bytes;
    r.bytes += bytes;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void* ptr)
{
    if (ptr == nullptr) return cudaSuccess;
    auto& r = registry();
    {
        std::lock_guard<std::mutex> lock(r.mutex);
        auto it = r.allocations.find(reinterpret_cast<uintptr_t>(ptr));
        if (it != r.allocations.end()) {
            r.bytes -= it->second;
            r.allocations.erase(it);
            std::free(ptr);
            return cudaSuccess;
        }
    }
    report(cudaErrorInvalidValue, "cudaFree: pointer was not returned by cudaMalloc (or was freed already)");
    return cudaErrorInvalidValue;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes)
{
    if (ptr == nullptr) return set_last(cudaErrorInvalidValue);
    *ptr = bytes == 0 ? nullptr : std::malloc(bytes);
    return (bytes != 0 && *ptr == nullptr) ? set_last(cudaErrorMemoryAllocation) : cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr)
{
    std::free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream,
                            std::source_location where)
{
    const std::string call = "cudaMemcpy at " + detail::format_location(where);
    if (cudaError_t e = detail::use_stream(stream, call.c_str())) return e;
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) {
        report(cudaErrorInvalidMemcpyDirection, call + ": invalid cudaMemcpyKind");
        return cudaErrorInvalidMemcpyDirection;
    }
    if (bytes == 0) return cudaSuccess;
    if (dst == nullptr || src == nullptr) {
        report(cudaErrorInvalidValue, call + ": NULL pointer");
        return cudaErrorInvalidValue;
    }
    bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyDefault;
    bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyDefault;
    if (dst_device)
        if (cudaError_t e = check_device_range(dst, bytes, call, "destination")) return e;
    if (src_device)
        if (cudaError_t e = check_device_range(src, bytes, call, "source")) return e;
    std::memmove(dst, src, bytes);
    if (kind == cudaMemcpyDeviceToDevice)
        detail::traffic_runtime_op("cudaMemcpyAsync", dst, bytes, src, bytes, false);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, std::source_location where)
{
    detail::counter_state().synchronizations.fetch_add(1);
    return cudaMemcpyAsync(dst, src, bytes, kind, nullptr, where);
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream, std::source_location where)
{
    const std::string call = "cudaMemset at " + detail::format_location(where);
    if (cudaError_t e = detail::use_stream(stream, call.c_str())) return e;
    if (cudaError_t e = check_device_range(dst, bytes, call, "destination")) return e;
    detail::counter_state().memsets.fetch_add(1);
    if (bytes != 0) std::memset(dst, value, bytes);
    detail::traffic_runtime_op("cudaMemsetAsync", dst, bytes, nullptr, 0, false);
    return cudaSuccess;
}

cudaError_t cudaMemset(void* dst, int value, size_t bytes, std::source_location where)
{
    detail::counter_state().synchronizations.fetch_add(1);
    return cudaMemsetAsync(dst, value, bytes, nullptr, where);
}

cudaError_t cudaGetLastError()
{
    cudaError_t e = detail::tl_last_error;
    detail::tl_last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError() { return detail::tl_last_error; }

const char* cudaGetErrorName(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorUnknown: return "cudaErrorUnknown";
    }
    return "cudaErrorUnrecognized";
}

const char* cudaGetErrorString(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure (SIMT backend: see the report on stderr)";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorUnknown: return "unknown error";
    }
    return "unrecognized error code";
}

cudaError_t cudaDeviceSynchronize()
{
    detail::counter_state().synchronizations.fetch_add(1);
    return detail::tl_last_error;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags)
{
    if (stream == nullptr || flags > cudaStreamNonBlocking) return set_last(cudaErrorInvalidValue);
    // A distinct, never dereferenced address per stream.
    *stream = reinterpret_cast<cudaStream_t>(new char);
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.streams.insert(*stream);
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (r.streams.erase(stream) == 0) return set_last(cudaErrorInvalidResourceHandle);
    delete reinterpret_cast<char*>(stream);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    detail::counter_state().synchronizations.fetch_add(1);
    if (stream != nullptr && stream != cudaStreamLegacy && stream != cudaStreamPerThread) {
        auto& r = registry();
        std::lock_guard<std::mutex> lock(r.mutex);
        if (r.streams.count(stream) == 0) return set_last(cudaErrorInvalidResourceHandle);
    }
    return detail::tl_last_error;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned)
{
    if (event == nullptr) return set_last(cudaErrorInvalidResourceHandle);
    return detail::use_stream(stream, "cudaStreamWaitEvent");
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned)
{
    if (event == nullptr) return set_last(cudaErrorInvalidValue);
    *event = reinterpret_cast<cudaEvent_t>(new detail::Event);
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.events.insert(*event);
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (r.events.erase(event) == 0) return set_last(cudaErrorInvalidResourceHandle);
    delete reinterpret_cast<detail::Event*>(event);
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    if (event == nullptr) return set_last(cudaErrorInvalidResourceHandle);
    if (cudaError_t e = detail::use_stream(stream, "cudaEventRecord")) return e;
    auto* ev = reinterpret_cast<detail::Event*>(event);
    ev->when = std::chrono::steady_clock::now();
    ev->recorded = true;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    detail::counter_state().synchronizations.fetch_add(1);
    return event == nullptr ? set_last(cudaErrorInvalidResourceHandle) : cudaSuccess;
}

// Host wall time between the two records: the emulator's time, never a GPU time.
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end)
{
    if (ms == nullptr || start == nullptr || end == nullptr) return set_last(cudaErrorInvalidValue);
    auto* a = reinterpret_cast<detail::Event*>(start);
    auto* b = reinterpret_cast<detail::Event*>(end);
    if (!a->recorded || !b->recorded) return set_last(cudaErrorInvalidResourceHandle);
    *ms = std::chrono::duration<float, std::milli>(b->when - a->when).count();
    return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count)
{
    if (count == nullptr) return set_last(cudaErrorInvalidValue);
    *count = detail::device_count();
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device)
{
    if (device == nullptr) return set_last(cudaErrorInvalidValue);
    *device = detail::tl_device;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    if (device < 0 || device >= detail::device_count()) return set_last(cudaErrorInvalidDevice);
    detail::tl_device = device;
    return cudaSuccess;
}

// The emulated device reports sm_90-like limits (an H100 SXM) so host-side tuning code takes the
// same branches it would take on the main target.
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device)
{
    if (prop == nullptr) return set_last(cudaErrorInvalidValue);
    if (device < 0 || device >= detail::device_count()) return set_last(cudaErrorInvalidDevice);
    std::memset(prop, 0, sizeof(*prop));
    std::snprintf(prop->name, sizeof(prop->name), "kdfuse SIMT emulator (CPU)");
    prop->totalGlobalMem = size_t(80) << 30;
    prop->sharedMemPerBlock = detail::kDefaultDynamicSmem;
    prop->sharedMemPerBlockOptin = detail::kOptinDynamicSmem;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = 1024;
    prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 2147483647;
    prop->maxGridSize[1] = 65535;
    prop->maxGridSize[2] = 65535;
    prop->multiProcessorCount = 132;
    prop->major = 9;
    prop->minor = 0;
    prop->l2CacheSize = 50 * 1024 * 1024;
    prop->memoryBusWidth = 5120;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device)
{
    if (value == nullptr) return set_last(cudaErrorInvalidValue);
    cudaDeviceProp p;
    if (cudaError_t e = cudaGetDeviceProperties(&p, device)) return e;
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.sharedMemPerBlock); break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrMemoryClockRate: *value = 2619000; break;  // kHz, as an H100 SXM reports
    case cudaDevAttrGlobalMemoryBusWidth: *value = p.memoryBusWidth; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(p.sharedMemPerBlockOptin); break;
    default: return set_last(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttributeErased(const void* func, cudaFuncAttribute attr, int value)
{
    if (func == nullptr || attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        static_cast<size_t>(value) > detail::kOptinDynamicSmem)
        return set_last(cudaErrorInvalidValue);
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.max_dynamic_smem[func] = value;
    return cudaSuccess;
}

}  // namespace api
}  // namespace kdfuse::simt

extern "C" void kdfuse_simt_set_count_only(int on) { kdfuse::simt::set_count_only(on != 0); }
