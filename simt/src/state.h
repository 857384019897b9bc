// Process state shared by the SIMT runtime's translation units.
#pragma once

#include <kdfuse/simt/runtime.h>

#include <atomic>
#include <mutex>
#include <string>

namespace kdfuse::simt::detail {

struct CounterState {
    std::atomic<uint64_t> kernel_launches{0};
    std::atomic<uint64_t> cublas_calls{0};
    std::atomic<uint64_t> cub_calls{0};
    std::atomic<uint64_t> null_stream_ops{0};
    std::atomic<uint64_t> synchronizations{0};
};
CounterState& counter_state();

// Validates a stream handle (0, the legacy/per-thread handles, or one from cudaStreamCreate) and
// counts work issued on stream 0. Reports and returns cudaErrorInvalidResourceHandle otherwise.
cudaError_t use_stream(cudaStream_t stream, const char* what);

// Largest dynamic shared memory a kernel may request (cudaFuncSetAttribute opt-in, sm_90 limits).
size_t max_dynamic_smem(const void* kernel);

inline constexpr size_t kDefaultDynamicSmem = 48 * 1024;
inline constexpr size_t kOptinDynamicSmem = 227 * 1024;

std::string format_location(const std::source_location& where);

}  // namespace kdfuse::simt::detail
