// The library handle: per-device state only (no stream, no workspace).
#pragma once

#include <kdfuse/kdfuse.h>

#include "../kernels/common/cuda_api.h"

#include <cstdint>

struct kdfContext {
    int device = 0;
    int sm_count = 0;
    int max_smem_optin = 0;  // bytes of dynamic shared memory a kernel may opt in to
    cublasHandle_t cublas = nullptr;
    kdfMathMode_t math = KDF_MATH_FP32;
    kdfDeterminism_t determinism = KDF_DETERMINISTIC;
};

namespace kdf::host {

// The registry of live handles: kdfCreate adds a handle, kdfDestroy removes it, and every entry point asks
// `handle_is_live` before touching one, so a destroyed (or never created) handle is reported as
// KDF_STATUS_INVALID_VALUE without reading the memory it points to. Thread-safe.
void register_handle(const kdfContext* h);
void unregister_handle(const kdfContext* h);
bool handle_is_live(const kdfContext* h);

}  // namespace kdf::host
