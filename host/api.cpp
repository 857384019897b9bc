// Library-wide C entry points: version, backend and status strings.
#include "status.h"

#include <cstring>

namespace kdf::host {
namespace {
// A plain buffer, not a std::string: it has no destructor, so the entry points stay usable while the thread ends
// (a caller's thread_local object that releases its handle then, for example), whatever the order of destruction.
constexpr size_t kLastErrorCapacity = 1024;
thread_local char tl_last_error[kLastErrorCapacity];
}  // namespace

kdfStatus_t fail(kdfStatus_t status, std::string detail)
{
    constexpr char kCut[] = " [...]";
    if (detail.size() >= kLastErrorCapacity) {
        detail.resize(kLastErrorCapacity - sizeof(kCut));
        detail += kCut;
    }
    std::memcpy(tl_last_error, detail.c_str(), detail.size() + 1);
    return status;
}

kdfStatus_t succeed()
{
    tl_last_error[0] = '\0';
    return KDF_STATUS_SUCCESS;
}

const char* last_error() { return tl_last_error; }

}  // namespace kdf::host

extern "C" {

int kdfGetVersion(void) { return KDFUSE_VERSION; }

const char* kdfGetBackendName(void)
{
#if defined(KDFUSE_SIMT)
    return "simt";
#else
    return "cuda";
#endif
}

const char* kdfGetStatusName(kdfStatus_t status)
{
    switch (kdf::host::enum_value(status)) {
    case KDF_STATUS_SUCCESS: return "KDF_STATUS_SUCCESS";
    case KDF_STATUS_INVALID_VALUE: return "KDF_STATUS_INVALID_VALUE";
    case KDF_STATUS_NULL_POINTER: return "KDF_STATUS_NULL_POINTER";
    case KDF_STATUS_MISALIGNED_POINTER: return "KDF_STATUS_MISALIGNED_POINTER";
    case KDF_STATUS_SHAPE_MISMATCH: return "KDF_STATUS_SHAPE_MISMATCH";
    case KDF_STATUS_WORKSPACE_TOO_SMALL: return "KDF_STATUS_WORKSPACE_TOO_SMALL";
    case KDF_STATUS_NOT_SUPPORTED: return "KDF_STATUS_NOT_SUPPORTED";
    case KDF_STATUS_CUDA_ERROR: return "KDF_STATUS_CUDA_ERROR";
    case KDF_STATUS_CUBLAS_ERROR: return "KDF_STATUS_CUBLAS_ERROR";
    case KDF_STATUS_INTERNAL_ERROR: return "KDF_STATUS_INTERNAL_ERROR";
    }
    return "KDF_STATUS_UNKNOWN";
}

const char* kdfGetStatusString(kdfStatus_t status)
{
    switch (kdf::host::enum_value(status)) {
    case KDF_STATUS_SUCCESS: return "success";
    case KDF_STATUS_INVALID_VALUE: return "an argument is out of its valid range";
    case KDF_STATUS_NULL_POINTER: return "a required pointer is NULL";
    case KDF_STATUS_MISALIGNED_POINTER: return "a pointer is not aligned to its element type";
    case KDF_STATUS_SHAPE_MISMATCH: return "tensor shapes do not agree";
    case KDF_STATUS_WORKSPACE_TOO_SMALL: return "the workspace is smaller than the size query returned";
    case KDF_STATUS_NOT_SUPPORTED: return "not supported by this build";
    case KDF_STATUS_CUDA_ERROR: return "the CUDA runtime reported an error";
    case KDF_STATUS_CUBLAS_ERROR: return "cuBLAS reported an error";
    case KDF_STATUS_INTERNAL_ERROR: return "internal error in kdfuse";
    }
    return "unknown status value";
}

const char* kdfGetLastErrorString(void) { return kdf::host::last_error(); }

}  // extern "C"
