// Process state shared by the SIMT runtime's translation units.
#pragma once

#include <kdfuse/simt/runtime.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kdfuse::simt::detail {

struct CounterState {
    std::atomic<uint64_t> kernel_launches{0};
    std::atomic<uint64_t> cublas_calls{0};
    std::atomic<uint64_t> cub_calls{0};
    std::atomic<uint64_t> null_stream_ops{0};
    std::atomic<uint64_t> synchronizations{0};
    std::atomic<uint64_t> memsets{0};
    std::atomic<uint64_t> gemm_flops{0};
    std::atomic<uint64_t> bytes_loaded{0};
    std::atomic<uint64_t> bytes_stored{0};
};
CounterState& counter_state();

// Validates a stream handle (0, the legacy/per-thread handles, or one from cudaStreamCreate) and
// counts work issued on stream 0. Reports and returns cudaErrorInvalidResourceHandle otherwise.
cudaError_t use_stream(cudaStream_t stream, const char* what);

// The dynamic shared memory a kernel opted in to with cudaFuncSetAttribute, if it did.
std::optional<size_t> optin_dynamic_smem(const void* kernel);

inline constexpr size_t kDefaultDynamicSmem = 48 * 1024;
inline constexpr size_t kOptinDynamicSmem = 227 * 1024;

// Refuses (reports and returns the driver's error) a launch of `threads` threads per block with `smem` bytes of
// dynamic shared memory that a GPU would refuse, given the kernel's resources in the real build (launch_rules.cpp).
cudaError_t check_launch_rules(const void* kernel, const char* name, uint64_t threads, size_t smem,
                               const std::string& site);

std::string format_location(const std::source_location& where);

// The live cudaMalloc allocations as [base, end) ranges, sorted.
std::vector<std::pair<uintptr_t, uintptr_t>> allocation_ranges();

// The observers of the instrumented build's accesses (traffic.cpp): traffic recording and the weak-memory check.
// The instrumented kernel code reports each access (traffic_hooks.cpp, in another library: hence exported); a
// launch is bracketed by observe_launch_begin (false when neither observer is on) and observe_launch_end;
// memsets, copies and GEMMs add a traffic record each.
KDFUSE_SIMT_API void traffic_access(const void* p, size_t bytes, bool store);
KDFUSE_SIMT_API void mark_traffic_instrumented();
bool observe_launch_begin(const char* name);
void observe_launch_end();
void traffic_counted_launch(const char* name);  // a launch in count-only mode: a record without traffic
void traffic_runtime_op(const char* name, const void* dst, size_t stored, const void* src, size_t loaded, bool modelled);
void reset_traffic();

}  // namespace kdfuse::simt::detail
