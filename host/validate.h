// Argument checks shared by the C entry points. Each returns KDF_STATUS_SUCCESS or records a detail
// naming the argument (see status.h) and returns the failing status.
#pragma once

#include "../kernels/common/feature_map.h"
#include "handle.h"
#include "status.h"

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace kdf::host {

// A leading dimension as the API takes it: 0 means dense (`dim`).
inline int64_t leading_dim(int64_t ld, int64_t dim) { return ld == 0 ? dim : ld; }

// The most elements a tensor may span: every byte offset (up to 16 bytes an element) fits int64.
constexpr int64_t kMaxElements = INT64_MAX / 16;

// out = a * b or a + b; true on int64 overflow (then `out` is unspecified). For sizes from the caller.
inline bool checked_mul(int64_t a, int64_t b, int64_t& out) { return __builtin_mul_overflow(a, b, &out); }
inline bool checked_add(int64_t a, int64_t b, int64_t& out) { return __builtin_add_overflow(a, b, &out); }

// One buffer of a call for the aliasing rule: its first byte, its extent in bytes (a NULL pointer or 0 bytes
// is absent) and whether the call writes it.
struct Buffer {
    const void* p;
    uint64_t bytes;
    const char* name;
    bool written;

    bool overlaps(const Buffer& o) const
    {
        if (p == nullptr || o.p == nullptr || bytes == 0 || o.bytes == 0) return false;
        const uintptr_t a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(o.p);
        return a < b ? b - a < bytes : a - b < o.bytes;
    }
};

// Byte extents of validated tensors (the validation bounds every product): `rows` rows of `cols` elements, `ld`
// elements apart; a feature map with its strides resolved.
inline uint64_t rows_bytes(int64_t rows, int64_t cols, int64_t ld, size_t element_bytes)
{
    return static_cast<uint64_t>((rows - 1) * ld + cols) * element_bytes;
}
inline uint64_t map_bytes(const kdfFeatureMap_t& m, size_t element_bytes)
{
    const Map4d r = Map4d::resolve(m);
    return static_cast<uint64_t>((r.n - 1) * r.sn + (r.c - 1) * r.sc + r.hw()) * element_bytes;
}

// `call` prefixes every message, e.g. "kdfKD: params->rows must be >= 1 (got 0)".
class Checker {
public:
    explicit Checker(const char* call) : call_(call) {}

    kdfStatus_t status() const { return status_; }
    bool ok() const { return status_ == KDF_STATUS_SUCCESS; }

    Checker& handle(kdfHandle_t h)
    {
        if (!ok()) return *this;
        if (h == nullptr) return fail(KDF_STATUS_NULL_POINTER, "handle is NULL (create one with kdfCreate)");
        if (!handle_is_live(h))
            return fail(KDF_STATUS_INVALID_VALUE, "handle is not a live kdfHandle_t (destroyed, or not from kdfCreate)");
        // The handle's cuBLAS handle and device limits belong to the device that was current at kdfCreate; kernels
        // launch on the current one. A call from another device would mix the two.
        int current = -1;
        if (cudaGetDevice(&current) != cudaSuccess)
            return fail(KDF_STATUS_CUDA_ERROR, "cudaGetDevice failed: " + std::string(cudaGetErrorString(cudaGetLastError())));
        if (current != h->device)
            return fail(KDF_STATUS_INVALID_VALUE, "handle was created on device " + std::to_string(h->device) + " but device " +
                                                      std::to_string(current) + " is current (cudaSetDevice(" +
                                                      std::to_string(h->device) + ") first, or use a handle created on device " +
                                                      std::to_string(current) + ")");
        return *this;
    }

    template <typename Params>
    Checker& params(const Params* p, const char* init_macro)
    {
        if (!ok()) return *this;
        if (p == nullptr) return fail(KDF_STATUS_NULL_POINTER, "params is NULL");
        if (p->struct_size != sizeof(Params))
            return fail(KDF_STATUS_INVALID_VALUE, "params->struct_size is " + std::to_string(p->struct_size) + ", expected " +
                                                      std::to_string(sizeof(Params)) + " (initialise with " + init_macro + ")");
        return *this;
    }

    Checker& at_least(int64_t value, int64_t minimum, const char* name)
    {
        if (ok() && value < minimum)
            fail(KDF_STATUS_INVALID_VALUE, std::string(name) + " must be >= " + std::to_string(minimum) + " (got " +
                                               std::to_string(value) + ")");
        return *this;
    }

    Checker& positive_finite(float value, const char* name)
    {
        if (ok() && !(std::isfinite(value) && value > 0.0f))
            fail(KDF_STATUS_INVALID_VALUE, std::string(name) + " must be finite and > 0 (got " + std::to_string(value) + ")");
        return *this;
    }

    Checker& finite(float value, const char* name)
    {
        if (ok() && !std::isfinite(value))
            fail(KDF_STATUS_INVALID_VALUE, std::string(name) + " must be finite (got " + std::to_string(value) + ")");
        return *this;
    }

    // rows x ld elements must be addressable with int64 offsets.
    Checker& extent(int64_t rows, int64_t ld, const char* name)
    {
        if (ok() && ld > 0 && rows > kMaxElements / ld)
            fail(KDF_STATUS_INVALID_VALUE, std::string(name) + ": rows x leading dimension overflows int64");
        return *this;
    }

    Checker& dtype(const kdfDataType_t& t, const char* name)
    {
        if (!ok()) return *this;
        const int v = enum_value(t);
        if (v == KDF_DTYPE_FP16 || v == KDF_DTYPE_BF16)
            return fail(KDF_STATUS_NOT_SUPPORTED, std::string(name) + ": fp16 and bf16 are not supported yet (use KDF_DTYPE_FP32)");
        if (v != KDF_DTYPE_FP32) return fail(KDF_STATUS_INVALID_VALUE, std::string(name) + " is not a kdfDataType_t");
        return *this;
    }

    // The dtype of a loss that also takes 16-bit tensors: fp32, fp16 or bf16.
    Checker& dtype_with_16bit(const kdfDataType_t& t, const char* name)
    {
        return one_of(t, {KDF_DTYPE_FP32, KDF_DTYPE_FP16, KDF_DTYPE_BF16}, name, "kdfDataType_t");
    }

    // `value` must be one of `allowed`; `type` names the enum in the message.
    template <typename E>
    Checker& one_of(const E& value, std::initializer_list<E> allowed, const char* name, const char* type)
    {
        if (!ok()) return *this;
        const int v = enum_value(value);
        for (E a : allowed)
            if (v == static_cast<int>(a)) return *this;
        return fail(KDF_STATUS_INVALID_VALUE, std::string(name) + " is not a " + type + " (got " + std::to_string(v) + ")");
    }

    // A kdfFeatureMap_t: positive sizes; strides 0 (dense) or large enough that planes and samples do not
    // overlap; the whole map, strides included, int64-addressable in bytes. Every product is overflow-checked:
    // the fields are the caller's and may hold anything.
    Checker& feature_map(const kdfFeatureMap_t& m, const std::string& name)
    {
        if (!ok()) return *this;
        at_least(m.n, 1, (name + ".n").c_str()).at_least(m.c, 1, (name + ".c").c_str());
        at_least(m.h, 1, (name + ".h").c_str()).at_least(m.w, 1, (name + ".w").c_str());
        if (!ok()) return *this;
        int64_t plane = 0, dense_n = 0;
        if (checked_mul(m.h, m.w, plane) || plane > (int64_t(1) << 31) || checked_mul(m.c, plane, dense_n))
            return fail(KDF_STATUS_INVALID_VALUE, name + ": shape too large");
        if (m.stride_c != 0 && m.stride_c < plane)
            return fail(KDF_STATUS_INVALID_VALUE, name + ".stride_c must be 0 or >= h*w (" + std::to_string(plane) + "), got " +
                                                      std::to_string(m.stride_c));
        const int64_t sc = m.stride_c ? m.stride_c : plane;
        int64_t sample = 0;  // elements from a sample's first to its last element, + 1
        if (checked_mul(sc, m.c - 1, sample) || checked_add(sample, plane, sample))
            return fail(KDF_STATUS_INVALID_VALUE, name + ": (c-1)*stride_c + h*w overflows int64");
        if (m.stride_n != 0 && m.stride_n < sample)
            return fail(KDF_STATUS_INVALID_VALUE, name + ".stride_n must be 0 or >= (c-1)*stride_c + h*w (" +
                                                      std::to_string(sample) + "), got " + std::to_string(m.stride_n));
        if (m.stride_n == 0 && dense_n < sample)
            return fail(KDF_STATUS_INVALID_VALUE, name + ".stride_n is 0 (c*h*w = " + std::to_string(dense_n) +
                                                      "), which overlaps samples with stride_c " + std::to_string(sc) +
                                                      ": give stride_n >= " + std::to_string(sample));
        const int64_t sn = m.stride_n ? m.stride_n : dense_n;
        int64_t all_n = 0, all_c = 0, span = 0;
        if (checked_mul(sn, m.n, all_n) || checked_mul(sc, m.c, all_c) || checked_mul(sn, m.n - 1, span) ||
            checked_add(span, sample, span) || all_n > kMaxElements || all_c > kMaxElements || span > kMaxElements)
            return fail(KDF_STATUS_INVALID_VALUE, name + ": strides overflow int64");
        return *this;
    }

    // Two maps that must agree in the listed dimensions (a string of 'n', 'c', 'h', 'w').
    Checker& same_dims(const kdfFeatureMap_t& a, const kdfFeatureMap_t& b, const char* dims, const std::string& a_name,
                       const std::string& b_name)
    {
        if (!ok()) return *this;
        for (const char* d = dims; *d; ++d) {
            const int64_t x = *d == 'n' ? a.n : *d == 'c' ? a.c : *d == 'h' ? a.h : a.w;
            const int64_t y = *d == 'n' ? b.n : *d == 'c' ? b.c : *d == 'h' ? b.h : b.w;
            if (x != y)
                return fail(KDF_STATUS_SHAPE_MISMATCH, a_name + "." + *d + " (" + std::to_string(x) + ") != " + b_name + "." + *d +
                                                          " (" + std::to_string(y) + ")");
        }
        return *this;
    }

    // N x D_s and N x D_t row-major embeddings (rows `ld` elements apart, 0 = dense) of a loss built on
    // N x N matrices: sizes >= 1, ld >= D, N <= max_rows, int64-addressable; with `gemm`, leading
    // dimensions within cuBLAS's int.
    Checker& embeddings(int64_t rows, int64_t dim_s, int64_t dim_t, int64_t ld_s, int64_t ld_t, int64_t max_rows, bool gemm,
                        const char* s_name, const char* t_name)
    {
        at_least(rows, 1, "params->rows").at_least(dim_s, 1, "params->dim_student").at_least(dim_t, 1, "params->dim_teacher");
        at_least(ld_s, 0, "params->ld_student").at_least(ld_t, 0, "params->ld_teacher");
        if (!ok()) return *this;
        if (rows > max_rows)
            return fail(KDF_STATUS_INVALID_VALUE, "params->rows must be <= " + std::to_string(max_rows) +
                                                      " (the N x N matrices), got " + std::to_string(rows));
        const int64_t ls = leading_dim(ld_s, dim_s), lt = leading_dim(ld_t, dim_t);
        at_least(ls, dim_s, "params->ld_student").at_least(lt, dim_t, "params->ld_teacher");
        for (auto [ld, name] : {std::pair{ls, "params->ld_student"}, std::pair{lt, "params->ld_teacher"}})
            if (ok() && gemm && ld > 2147483647)
                fail(KDF_STATUS_INVALID_VALUE, std::string(name) + " must be <= 2147483647 (cuBLAS int, < 2^31), got " +
                                                   std::to_string(ld));
        return extent(rows, ls, s_name).extent(rows, lt, t_name);
    }

    Checker& required(const void* p, const char* name)
    {
        if (ok() && p == nullptr) fail(KDF_STATUS_NULL_POINTER, std::string(name) + " is NULL");
        return *this;
    }

    // NULL passes (optional pointers); otherwise it must be aligned to `alignment` bytes.
    Checker& aligned(const void* p, size_t alignment, const char* name)
    {
        if (ok() && p != nullptr && reinterpret_cast<uintptr_t>(p) % alignment != 0)
            fail(KDF_STATUS_MISALIGNED_POINTER, std::string(name) + " is not " + std::to_string(alignment) + "-byte aligned");
        return *this;
    }

    // The aliasing rule of every entry point (docs/api.md, "Aliasing"): a buffer the call writes shares no byte
    // with any other buffer of the call, partial overlaps included; buffers the call only reads may overlap each
    // other. Each buffer is taken as the byte range from its first to its last element (strides included).
    Checker& disjoint(std::initializer_list<Buffer> buffers) { return disjoint(buffers.begin(), buffers.end()); }
    // The same for a list built at run time (a call with a variable number of tensors).
    Checker& disjoint(const std::vector<Buffer>& buffers) { return disjoint(buffers.data(), buffers.data() + buffers.size()); }
    Checker& disjoint(const Buffer* begin, const Buffer* end)
    {
        if (!ok()) return *this;
        for (auto a = begin; a != end; ++a)
            for (auto b = a + 1; b != end; ++b)
                if ((a->written || b->written) && a->overlaps(*b)) {
                    const Buffer& w = a->written ? *a : *b;
                    const Buffer& o = a->written ? *b : *a;
                    return fail(KDF_STATUS_INVALID_VALUE, std::string(w.name) + " overlaps " + o.name + ": the call writes " +
                                                              w.name + ", so it may not share memory with another argument " +
                                                              "(in-place is not supported)");
                }
        return *this;
    }

    // The tensor checks of a student-teacher call (`s`, `t` named `s_name`, `t_name`): both inputs given; the
    // inputs and the student gradient aligned to their elements (`element_bytes`, fp32 unless the loss takes
    // 16-bit tensors), the loss and grad_loss float-aligned (NULL outputs pass); grad_scale finite. Overlaps
    // are the caller's `disjoint` check, which knows the extents.
    Checker& student_teacher(const void* s, const void* t, const float* loss, const void* grad_s, const float* grad_loss,
                             float grad_scale, const char* s_name, const char* t_name, size_t element_bytes = sizeof(float))
    {
        return required(s, s_name)
            .required(t, t_name)
            .aligned(s, element_bytes, s_name)
            .aligned(t, element_bytes, t_name)
            .aligned(loss, sizeof(float), "loss")
            .aligned(grad_s, element_bytes, "grad_s")
            .aligned(grad_loss, sizeof(float), "grad_loss")
            .finite(grad_scale, "grad_scale");
    }

    Checker& workspace(const void* ws, size_t bytes, size_t required_bytes)
    {
        if (!ok()) return *this;
        if (bytes < required_bytes)
            return fail(KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes is " + std::to_string(bytes) + ", the size query requires " +
                                                             std::to_string(required_bytes));
        if (required_bytes > 0 && ws == nullptr) return fail(KDF_STATUS_NULL_POINTER, "workspace is NULL");
        return aligned(ws, 16, "workspace");
    }

    Checker& fail(kdfStatus_t status, const std::string& detail)
    {
        status_ = kdf::host::fail(status, std::string(call_) + ": " + detail);
        return *this;
    }

private:
    const char* call_;
    kdfStatus_t status_ = KDF_STATUS_SUCCESS;
};

// Maps a CUDA error from a launch or runtime call to a status with the CUDA error string.
kdfStatus_t cuda_status(const char* call, cudaError_t e);
// Maps a cuBLAS status to KDF_STATUS_CUBLAS_ERROR with cuBLAS's name for it.
kdfStatus_t cublas_status(const char* call, cublasStatus_t s);

// Runs `body` and converts any C++ exception into KDF_STATUS_INTERNAL_ERROR: nothing throws across the
// C boundary.
template <typename F>
kdfStatus_t guarded(const char* call, F&& body)
{
    try {
        return body();
    } catch (const std::exception& e) {
        return fail(KDF_STATUS_INTERNAL_ERROR, std::string(call) + ": " + e.what());
    } catch (...) {
        return fail(KDF_STATUS_INTERNAL_ERROR, std::string(call) + ": unknown exception");
    }
}

// The body of every kdf<Loss>WorkspaceSize: `bytes` given, the params valid (`check_params(checker, params)`), then
// `*bytes = workspace_bytes(params)`, a function of the params alone.
template <typename Params, typename CheckParams, typename WorkspaceBytes>
kdfStatus_t workspace_size_query(const char* call, const Params* params, size_t* bytes, CheckParams&& check_params,
                                 WorkspaceBytes&& workspace_bytes)
{
    return guarded(call, [&] {
        Checker check(call);
        if (!check.required(bytes, "bytes").ok() || !check_params(check, params).ok()) return check.status();
        *bytes = workspace_bytes(params);
        return succeed();
    });
}

}  // namespace kdf::host
