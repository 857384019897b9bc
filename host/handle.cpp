// kdfCreate / kdfDestroy and the handle's modes.
#include "handle.h"

#include "validate.h"

#include <mutex>
#include <new>
#include <unordered_set>

namespace kdf::host {
namespace {

struct HandleRegistry {
    std::mutex mutex;
    std::unordered_set<const kdfContext*> live;
};

// Never destroyed, so a handle used during static destruction still finds it.
HandleRegistry& registry()
{
    static HandleRegistry* r = new HandleRegistry;
    return *r;
}

}  // namespace

void register_handle(const kdfContext* h)
{
    std::lock_guard<std::mutex> lock(registry().mutex);
    registry().live.insert(h);
}

void unregister_handle(const kdfContext* h)
{
    std::lock_guard<std::mutex> lock(registry().mutex);
    registry().live.erase(h);
}

bool handle_is_live(const kdfContext* h)
{
    std::lock_guard<std::mutex> lock(registry().mutex);
    return registry().live.count(h) != 0;
}

kdfStatus_t cuda_status(const char* call, cudaError_t e)
{
    if (e == cudaSuccess) return succeed();
    return fail(KDF_STATUS_CUDA_ERROR, std::string(call) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

kdfStatus_t cublas_status(const char* call, cublasStatus_t s)
{
    if (s == CUBLAS_STATUS_SUCCESS) return succeed();
    return fail(KDF_STATUS_CUBLAS_ERROR, std::string(call) + ": " + cublasGetStatusName(s) + ": " + cublasGetStatusString(s));
}

}  // namespace kdf::host

using kdf::host::Checker;
using kdf::host::guarded;

extern "C" {

kdfStatus_t kdfCreate(kdfHandle_t* handle)
{
    return guarded("kdfCreate", [&] {
        Checker check("kdfCreate");
        if (!check.required(handle, "handle").ok()) return check.status();
        *handle = nullptr;
        auto* ctx = new (std::nothrow) kdfContext;
        if (ctx == nullptr) return kdf::host::fail(KDF_STATUS_INTERNAL_ERROR, "kdfCreate: out of host memory");
        cudaError_t e = cudaGetDevice(&ctx->device);
        if (e == cudaSuccess) e = cudaDeviceGetAttribute(&ctx->sm_count, cudaDevAttrMultiProcessorCount, ctx->device);
        if (e == cudaSuccess)
            e = cudaDeviceGetAttribute(&ctx->max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx->device);
        if (e != cudaSuccess) {
            delete ctx;
            return kdf::host::cuda_status("kdfCreate", e);
        }
        if (cublasStatus_t s = cublasCreate(&ctx->cublas); s != CUBLAS_STATUS_SUCCESS) {
            delete ctx;
            return kdf::host::fail(KDF_STATUS_CUBLAS_ERROR, std::string("kdfCreate: cublasCreate failed: ") + cublasGetStatusString(s));
        }
        try {
            kdf::host::register_handle(ctx);
        } catch (...) {
            cublasDestroy(ctx->cublas);
            delete ctx;
            throw;
        }
        *handle = ctx;
        return kdf::host::succeed();
    });
}

kdfStatus_t kdfDestroy(kdfHandle_t handle)
{
    return guarded("kdfDestroy", [&] {
        if (handle == nullptr) return kdf::host::succeed();
        Checker check("kdfDestroy");
        if (!check.handle(handle).ok()) return check.status();
        kdf::host::unregister_handle(handle);
        cublasDestroy(handle->cublas);
        delete handle;
        return kdf::host::succeed();
    });
}

kdfStatus_t kdfSetMathMode(kdfHandle_t handle, kdfMathMode_t mode)
{
    Checker check("kdfSetMathMode");
    if (!check.handle(handle).one_of(mode, {KDF_MATH_FP32, KDF_MATH_TF32}, "mode", "kdfMathMode_t").ok()) return check.status();
    handle->math = mode;
    return kdf::host::succeed();
}

kdfStatus_t kdfGetMathMode(kdfHandle_t handle, kdfMathMode_t* mode)
{
    Checker check("kdfGetMathMode");
    if (!check.handle(handle).required(mode, "mode").ok()) return check.status();
    *mode = handle->math;
    return kdf::host::succeed();
}

kdfStatus_t kdfSetDeterminism(kdfHandle_t handle, kdfDeterminism_t mode)
{
    Checker check("kdfSetDeterminism");
    if (!check.handle(handle).one_of(mode, {KDF_DETERMINISTIC, KDF_FAST}, "mode", "kdfDeterminism_t").ok())
        return check.status();
    handle->determinism = mode;
    return kdf::host::succeed();
}

kdfStatus_t kdfGetDeterminism(kdfHandle_t handle, kdfDeterminism_t* mode)
{
    Checker check("kdfGetDeterminism");
    if (!check.handle(handle).required(mode, "mode").ok()) return check.status();
    *mode = handle->determinism;
    return kdf::host::succeed();
}

}  // extern "C"
