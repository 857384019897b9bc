// The library handle: per-device state only (no stream, no workspace).
#pragma once

#include <kdfuse/kdfuse.h>

#include "../kernels/common/cuda_api.h"

#include <cstdint>

struct kdfContext {
    static constexpr uint32_t kLive = 0x6b646675u;  // "kdfu"
    uint32_t magic = kLive;
    int device = 0;
    int sm_count = 0;
    int max_smem_optin = 0;  // bytes of dynamic shared memory a kernel may opt in to
    cublasHandle_t cublas = nullptr;
    kdfMathMode_t math = KDF_MATH_FP32;
    kdfDeterminism_t determinism = KDF_DETERMINISTIC;
};
