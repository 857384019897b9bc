// The device kernels of torch.ops.kdfuse.<loss>: each one checks its tensors, fills the loss's parameter struct of the
// C API (include/kdfuse/kdfuse.h, the one definition of the ABI) and makes ONE library call.
//
// Built twice (python/csrc/CMakeLists.txt):
//   KDFUSE_TORCH_CUDA=0: libkdfuse_torch_cpu, the CPU kernels, linked to libkdfuse_sim (the CUDA kernels run on
//                        the CPU by the SIMT backend: synchronous, slow, for tests and debugging);
//   KDFUSE_TORCH_CUDA=1: libkdfuse_torch_cuda, the CUDA kernels, linked to libkdfuse, on PyTorch's current stream
//                        of the tensors' device, workspace from PyTorch's caching allocator.
// The two C libraries export the same kdf* names under different symbol versions (cmake/), so both kernel
// libraries can live in one process.
//
// Handles: one per host thread and device, created on first use and destroyed when the thread ends. Workspace:
// the size query of the call's parameters, from the caching allocator (CUDA: stream-ordered reuse, no
// synchronisation) or a per-thread buffer that grows and is reused (CPU: the SIMT call is synchronous).
// Layouts: an input that gets a gradient is made contiguous; the others are read with their strides where the C API
// can describe them (see map_layout / rows_layout). Errors: a refused argument raises ValueError (TypeError for a
// dtype, NotImplementedError for what the library does not support) with the library's status name and detail;
// nothing is launched then.
#include <kdfuse/kdfuse.h>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#if KDFUSE_TORCH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define KDFUSE_DISPATCH_KEY CUDA
#else
#define KDFUSE_DISPATCH_KEY CPU
#endif

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

#if KDFUSE_TORCH_CUDA
constexpr c10::DeviceType kDeviceType = c10::DeviceType::CUDA;
#else
constexpr c10::DeviceType kDeviceType = c10::DeviceType::CPU;
#endif
constexpr size_t kWorkspaceAlignment = 256;  // kdfuse.h requires 16; 256 is what cudaMalloc gives

using Tensor = at::Tensor;
using OptTensor = std::optional<Tensor>;

// ---- errors ------------------------------------------------------------------------------------------------------

// Raises the exception that fits a refused call of `fn` (the C function) made by op `op`: the status name and the
// library's detail of the failure (which names the C function and the offending argument).
[[noreturn]] void refuse(const std::string& op, const char* fn, kdfStatus_t status) {
    const char* detail = kdfGetLastErrorString();
    const std::string message = op + ": " + kdfGetStatusName(status) + ": " + (*detail != '\0' ? detail : fn);
    switch (status) {
        case KDF_STATUS_INVALID_VALUE:
        case KDF_STATUS_NULL_POINTER:
        case KDF_STATUS_MISALIGNED_POINTER:
        case KDF_STATUS_SHAPE_MISMATCH:
        case KDF_STATUS_WORKSPACE_TOO_SMALL:
            C10_THROW_ERROR(ValueError, message);
        case KDF_STATUS_NOT_SUPPORTED:
            C10_THROW_ERROR(NotImplementedError, message);
        default:
            C10_THROW_ERROR(Error, message);
    }
}

void check(kdfStatus_t status, const std::string& op, const char* fn) {
    if (status != KDF_STATUS_SUCCESS) {
        refuse(op, fn, status);
    }
}

// ---- handles, streams, workspace -------------------------------------------------------------------------------

// One handle per device, for the calling thread (the C API allows one host thread per handle).
class ThreadHandles {
  public:
    ThreadHandles() = default;
    ThreadHandles(const ThreadHandles&) = delete;
    ThreadHandles& operator=(const ThreadHandles&) = delete;
    ~ThreadHandles() {
        for (auto& [device, handle] : handles_) {
            kdfDestroy(handle);  // at thread exit: a failure has nobody to report to
        }
    }
    kdfHandle_t get(const std::string& op, c10::DeviceIndex device) {
        auto it = handles_.find(device);
        if (it != handles_.end()) {
            return it->second;
        }
        kdfHandle_t handle = nullptr;
        check(kdfCreate(&handle), op, "kdfCreate");  // the device is current (the caller's guard)
        handles_.emplace(device, handle);
        return handle;
    }

  private:
    std::unordered_map<c10::DeviceIndex, kdfHandle_t> handles_;
};

// A workspace of `bytes` bytes, aligned, valid until the object dies (CUDA: the caching allocator's block, released
// in stream order; CPU: the thread's reused buffer).
class Workspace {
  public:
    Workspace(size_t bytes, const c10::Device& device) : bytes_(bytes) {
        if (bytes == 0) {
            return;
        }
#if KDFUSE_TORCH_CUDA
        block_ = at::empty({static_cast<int64_t>(bytes + kWorkspaceAlignment - 1)},
                           at::TensorOptions().dtype(at::kByte).device(device));
        ptr_ = align(block_.data_ptr());
#else
        (void)device;
        thread_local std::unique_ptr<unsigned char[]> buffer;
        thread_local size_t capacity = 0;
        if (capacity < bytes + kWorkspaceAlignment - 1) {
            capacity = bytes + kWorkspaceAlignment - 1;
            buffer.reset(new unsigned char[capacity]);
        }
        ptr_ = align(buffer.get());
#endif
    }
    void* ptr() const { return ptr_; }
    size_t bytes() const { return bytes_; }

  private:
    static void* align(void* p) {
        const auto address = reinterpret_cast<uintptr_t>(p);
        return reinterpret_cast<void*>((address + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment);
    }
    size_t bytes_;
    void* ptr_ = nullptr;
#if KDFUSE_TORCH_CUDA
    Tensor block_;
#endif
};

// The device of the call: every tensor given (an absent optional is skipped) on one device of this library's type.
struct Named {
    const char* name;
    const Tensor* tensor;
};

c10::Device call_device(const std::string& op, std::initializer_list<Named> tensors) {
    std::optional<c10::Device> device;
    const char* first = nullptr;
    for (const auto& [name, t] : tensors) {
        if (t == nullptr || !t->defined()) {
            continue;
        }
        TORCH_CHECK_VALUE(t->device().type() == kDeviceType, op, ": ", name, " is on ", t->device(),
                          ", the call's other tensors on ", c10::DeviceTypeName(kDeviceType),
                          ": all tensor arguments must be on one device");
        if (!device) {
            device = t->device();
            first = name;
        }
        TORCH_CHECK_VALUE(t->device() == *device, op, ": all tensor arguments must be on one device, got ", first,
                          " on ", *device, " and ", name, " on ", t->device());
    }
    TORCH_CHECK_VALUE(device.has_value(), op, ": no tensor argument");
    return *device;
}

// The calling thread's handle for `device` (which the caller made current). One table per thread for every op (a
// thread_local inside the templated launch() would be one per instantiation: a cuBLAS handle per loss).
kdfHandle_t thread_handle(const std::string& op, const c10::Device& device) {
    thread_local ThreadHandles handles;
    return handles.get(op, device.index());
}

// Makes one library call: `size(&bytes)` is the workspace query, `run(handle, workspace, bytes, stream)` the call.
template <class SizeFn, class RunFn>
void launch(const std::string& op, const char* fn, const c10::Device& device, SizeFn size, RunFn run) {
#if KDFUSE_TORCH_CUDA
    c10::cuda::CUDAGuard guard(device);
    kdfStream_t stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
#else
    kdfStream_t stream = nullptr;
#endif
    kdfHandle_t handle = thread_handle(op, device);
    size_t bytes = 0;
    check(size(&bytes), op, fn);
    Workspace workspace(bytes, device);
    check(run(handle, workspace.ptr(), workspace.bytes(), stream), op, fn);
}

// ---- tensors -> the C API's layouts ----------------------------------------------------------------------------

float* fptr(const Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }
float* fptr(const OptTensor& t) { return t ? fptr(*t) : nullptr; }
void* vptr(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

void check_float32(const std::string& op, const char* name, const Tensor& t) {
    TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, op, ": ", name, " must be float32, got ", t.scalar_type());
}

// Layouts. An input the call computes a gradient for is made contiguous (its gradient, returned contiguous, has the
// layout the C API then gives it); any other input is read in place when the C API can describe its strides (a
// slice of a larger tensor: no copy), and copied only when it cannot (channels_last maps, transposed rows).

// The H x W planes of an N x C x H x W map (or N x D, as N x D x 1 x 1) are contiguous and its channels and samples
// do not overlap: what kdfFeatureMap_t's stride_c / stride_n describe.
bool map_strides_fit(const Tensor& t) {
    if (t.dim() != 2 && t.dim() != 4) {
        return true;  // refused by feature_map with its message
    }
    const int64_t n = t.size(0), c = t.size(1), h = t.dim() == 4 ? t.size(2) : 1, w = t.dim() == 4 ? t.size(3) : 1;
    if (t.dim() == 4 && ((w > 1 && t.stride(3) != 1) || (h > 1 && t.stride(2) != w))) {
        return false;
    }
    const int64_t sc = c > 1 ? t.stride(1) : h * w;
    const int64_t sn = n > 1 ? t.stride(0) : c * sc;
    return sc >= h * w && sn >= (c - 1) * sc + h * w;
}

// Each sample of a rank >= 2 tensor is contiguous (numel / N elements) and the samples do not overlap: rows ld apart.
bool rows_strides_fit(const Tensor& t) {
    if (t.dim() < 2 || t.size(0) == 0) {
        return true;  // refused by rows with its message
    }
    int64_t expected = 1;
    for (int64_t i = t.dim() - 1; i >= 1; --i) {
        if (t.size(i) != 1 && t.stride(i) != expected) {
            return false;
        }
        expected *= t.size(i);
    }
    return t.size(0) == 1 || t.stride(0) >= expected;
}

Tensor map_layout(const Tensor& t, bool gets_gradient) {
    return gets_gradient || !map_strides_fit(t) ? t.contiguous() : t;
}

Tensor rows_layout(const Tensor& t, bool gets_gradient) {
    return gets_gradient || !rows_strides_fit(t) ? t.contiguous() : t;
}

// kdfFeatureMap_t of a float32 N x C x H x W map (N x D: N x D x 1 x 1) laid out as map_layout leaves it.
kdfFeatureMap_t feature_map(const std::string& op, const char* name, const Tensor& t) {
    check_float32(op, name, t);
    TORCH_CHECK_VALUE(t.dim() == 2 || t.dim() == 4, op, ": ", name, " must be N x C x H x W (or N x D), got shape ",
                      t.sizes());
    kdfFeatureMap_t m = KDF_FEATURE_MAP_INIT;
    m.n = t.size(0);
    m.c = t.size(1);
    m.h = t.dim() == 4 ? t.size(2) : 1;
    m.w = t.dim() == 4 ? t.size(3) : 1;
    m.stride_n = m.n > 1 ? t.stride(0) : 0;  // 0: dense
    m.stride_c = m.c > 1 ? t.stride(1) : 0;
    return m;
}

// Rows of a float32 tensor of rank >= 2 read as N rows of D = numel / N elements, ld elements apart (0: dense), laid
// out as rows_layout leaves it.
struct Rows {
    int64_t n, d, ld;
};

Rows rows(const std::string& op, const char* name, const Tensor& t) {
    check_float32(op, name, t);
    TORCH_CHECK_VALUE(t.dim() >= 2, op, ": ", name, " must have rank >= 2 (N x ...), got shape ", t.sizes());
    const int64_t n = t.size(0);
    return {n, n > 0 ? t.numel() / n : 0, n > 1 ? t.stride(0) : 0};
}

Tensor scalar_loss(const c10::Device& device) {
    return at::empty({}, at::TensorOptions().dtype(at::kFloat).device(device));
}

// The gradient of `like` (same shape, contiguous) when `need`, else an empty (0,) tensor.
Tensor grad_for(const Tensor& like, bool need) {
    return need ? at::empty(like.sizes(), like.options()) : at::empty({0}, like.options());
}

using Loss2 = std::tuple<Tensor, Tensor>;
using Loss3 = std::tuple<Tensor, Tensor, Tensor>;

// ---- the losses -------------------------------------------------------------------------------------------------

Loss3 kd(const Tensor& y_s_in, const Tensor& y_t_in, const OptTensor& weight_in, double T, c10::string_view reduction,
         bool need_grad_s, bool need_grad_t) {
    const std::string op = "torch.ops.kdfuse.kd";
    const c10::Device device = call_device(op, {{"y_s", &y_s_in}, {"y_t", &y_t_in},
                                                {"weight", weight_in ? &*weight_in : nullptr}});
    TORCH_CHECK_VALUE(y_s_in.dim() == 2 && y_s_in.sizes() == y_t_in.sizes(), op,
                      ": y_s and y_t must be N x C logits of one shape, got ", y_s_in.sizes(), " and ",
                      y_t_in.sizes());
    TORCH_CHECK_TYPE(y_s_in.scalar_type() == y_t_in.scalar_type(), op, ": y_s is ", y_s_in.scalar_type(), ", y_t ",
                     y_t_in.scalar_type(), " (one dtype per call)");
    kdfKDParams_t p = KDF_KD_PARAMS_INIT;
    switch (y_s_in.scalar_type()) {
        case at::kFloat: p.dtype = KDF_DTYPE_FP32; break;
        case at::kHalf: p.dtype = KDF_DTYPE_FP16; break;
        case at::kBFloat16: p.dtype = KDF_DTYPE_BF16; break;
        default: TORCH_CHECK_TYPE(false, op, ": logits must be float32, float16 or bfloat16, got ", y_s_in.scalar_type());
    }
    TORCH_CHECK_VALUE(reduction == "batchmean" || reduction == "none", op,
                      ": reduction must be 'batchmean' or 'none', not '", reduction, "'");
    const Tensor y_s = rows_layout(y_s_in, need_grad_s), y_t = rows_layout(y_t_in, need_grad_t);
    p.rows = y_s.size(0);
    p.classes = y_s.size(1);
    p.ld_student = p.rows > 1 ? y_s.stride(0) : 0;
    p.ld_teacher = p.rows > 1 ? y_t.stride(0) : 0;
    p.temperature = static_cast<float>(T);
    p.reduction = reduction == "none" ? KDF_REDUCTION_NONE : KDF_REDUCTION_BATCHMEAN;
    OptTensor weight;
    if (weight_in) {
        check_float32(op, "weight", *weight_in);
        TORCH_CHECK_VALUE(weight_in->numel() == p.rows, op, ": weight has ", weight_in->numel(),
                          " elements, expected N = ", p.rows);
        weight = weight_in->contiguous();
    }
    Tensor loss = p.reduction == KDF_REDUCTION_NONE
                      ? at::empty({p.rows}, at::TensorOptions().dtype(at::kFloat).device(device))
                      : scalar_loss(device);
    Tensor grad_s = grad_for(y_s, need_grad_s), grad_t = grad_for(y_t, need_grad_t);
    launch(op, "kdfKD", device, [&](size_t* bytes) { return kdfKDWorkspaceSize(&p, bytes); },
           [&](kdfHandle_t h, void* ws, size_t bytes, kdfStream_t stream) {
               return kdfKD(h, &p, y_s.data_ptr(), y_t.data_ptr(), fptr(weight), fptr(loss),
                            need_grad_s ? grad_s.data_ptr() : nullptr, need_grad_t ? grad_t.data_ptr() : nullptr,
                            nullptr, 1.0f, 0, ws, bytes, stream);
           });
    return {loss, grad_s, grad_t};
}

// The call of a loss with the common argument list (s, t, loss, grad_s, grad_loss, ...) and one student gradient.
template <class Params, class SizeFn, class CallFn>
Loss2 student_grad_call(const std::string& op, const char* fn, const c10::Device& device, const Params& p,
                        const Tensor& s, const Tensor& t, bool need_grad_s, SizeFn size, CallFn call) {
    Tensor loss = scalar_loss(device), grad_s = grad_for(s, need_grad_s);
    launch(op, fn, device, [&](size_t* bytes) { return size(&p, bytes); },
           [&](kdfHandle_t h, void* ws, size_t bytes, kdfStream_t stream) {
               return call(h, &p, s.data_ptr(), t.data_ptr(), fptr(loss), need_grad_s ? grad_s.data_ptr() : nullptr,
                           nullptr, 1.0f, 0, ws, bytes, stream);
           });
    return {loss, grad_s};
}

// The feature-map losses with one student gradient: FitNet, AT, FT, AB, NST. `p` holds the loss's options; the
// maps are filled in here; `call` is the C function with the common argument list.
template <class Params, class SizeFn, class CallFn>
Loss2 map_pair(const char* loss_name, const char* fn, Params p, const Tensor& s_in, const Tensor& t_in,
               const char* s_name, const char* t_name, bool need_grad_s, SizeFn size, CallFn call) {
    const std::string op = std::string("torch.ops.kdfuse.") + loss_name;
    const c10::Device device = call_device(op, {{s_name, &s_in}, {t_name, &t_in}});
    const Tensor s = map_layout(s_in, need_grad_s), t = map_layout(t_in, false);
    p.student = feature_map(op, s_name, s);
    p.teacher = feature_map(op, t_name, t);
    return student_grad_call(op, fn, device, p, s, t, need_grad_s, size, call);
}

void check_same_shape(const char* op, const char* s_name, const Tensor& s, const char* t_name, const Tensor& t) {
    TORCH_CHECK_VALUE(s.sizes() == t.sizes(), op, ": ", s_name, " and ", t_name, " must have one shape, got ",
                      s.sizes(), " and ", t.sizes());
}

Loss2 fitnet(const Tensor& f_s, const Tensor& f_t, bool need_grad_s) {
    check_same_shape("torch.ops.kdfuse.fitnet", "f_s", f_s, "f_t", f_t);
    return map_pair("fitnet", "kdfFitNet", kdfFitNetParams_t(KDF_FITNET_PARAMS_INIT), f_s, f_t, "f_s", "f_t",
                    need_grad_s, kdfFitNetWorkspaceSize, kdfFitNet);
}

Loss2 at_loss(const Tensor& f_s, const Tensor& f_t, double power, bool need_grad_s) {
    kdfATParams_t p = KDF_AT_PARAMS_INIT;
    p.p = static_cast<float>(power);
    return map_pair("at", "kdfAT", p, f_s, f_t, "f_s", "f_t", need_grad_s, kdfATWorkspaceSize, kdfAT);
}

Loss2 ft(const Tensor& f_s, const Tensor& f_t, double p1, double p2, bool need_grad_s) {
    kdfFTParams_t p = KDF_FT_PARAMS_INIT;
    p.p1 = static_cast<float>(p1);
    p.p2 = static_cast<float>(p2);
    return map_pair("ft", "kdfFT", p, f_s, f_t, "f_s", "f_t", need_grad_s, kdfFTWorkspaceSize, kdfFT);
}

Loss2 ab(const Tensor& s, const Tensor& t, double margin, bool seed_scaling, bool need_grad_s) {
    check_same_shape("torch.ops.kdfuse.ab", "s", s, "t", t);
    kdfABParams_t p = KDF_AB_PARAMS_INIT;
    p.margin = static_cast<float>(margin);
    p.seed_scaling = seed_scaling ? 1 : 0;
    return map_pair("ab", "kdfAB", p, s, t, "s", "t", need_grad_s, kdfABWorkspaceSize, kdfAB);
}

Loss2 nst(const Tensor& f_s, const Tensor& f_t, bool full_loss, bool need_grad_s) {
    kdfNSTParams_t p = KDF_NST_PARAMS_INIT;
    p.full_loss = full_loss ? 1 : 0;
    return map_pair("nst", "kdfNST", p, f_s, f_t, "f_s", "f_t", need_grad_s, kdfNSTWorkspaceSize, kdfNST);
}

// A float32 vector of C values (OFD's margin, VID's log_scale), contiguous.
Tensor channel_vector(const std::string& op, const char* name, const Tensor& t, int64_t channels) {
    check_float32(op, name, t);
    TORCH_CHECK_VALUE(t.numel() == channels, op, ": ", name, " has ", t.numel(), " values, expected C = ", channels);
    return t.contiguous();
}

Loss2 ofd(const Tensor& s_in, const Tensor& t_in, const OptTensor& margin_in, c10::string_view variant,
          bool need_grad_s) {
    const std::string op = "torch.ops.kdfuse.ofd";
    const c10::Device device = call_device(op, {{"s", &s_in}, {"t", &t_in},
                                                {"margin", margin_in ? &*margin_in : nullptr}});
    TORCH_CHECK_VALUE(variant == "seed" || variant == "original", op,
                      ": variant must be 'seed' or 'original', not '", variant, "'");
    check_same_shape(op.c_str(), "s", s_in, "t", t_in);
    const Tensor s = map_layout(s_in, need_grad_s), t = map_layout(t_in, false);
    kdfOFDParams_t p = KDF_OFD_PARAMS_INIT;
    p.student = feature_map(op, "s", s);
    p.teacher = feature_map(op, "t", t);
    p.variant = variant == "original" ? KDF_OFD_ORIGINAL : KDF_OFD_SEED;
    const OptTensor margin = margin_in ? OptTensor(channel_vector(op, "margin", *margin_in, p.student.c)) : std::nullopt;
    Tensor loss = scalar_loss(device), grad_s = grad_for(s, need_grad_s);
    launch(op, "kdfOFD", device, [&](size_t* bytes) { return kdfOFDWorkspaceSize(&p, bytes); },
           [&](kdfHandle_t h, void* ws, size_t bytes, kdfStream_t stream) {
               return kdfOFD(h, &p, s.data_ptr(), t.data_ptr(), fptr(margin), fptr(loss),
                             need_grad_s ? grad_s.data_ptr() : nullptr, nullptr, 1.0f, 0, ws, bytes, stream);
           });
    return {loss, grad_s};
}

Loss3 vid(const Tensor& pred_in, const Tensor& target_in, const Tensor& log_scale_in, double eps, bool need_grad_pred,
          bool need_grad_log_scale) {
    const std::string op = "torch.ops.kdfuse.vid";
    const c10::Device device = call_device(op, {{"pred_mean", &pred_in}, {"target", &target_in},
                                                {"log_scale", &log_scale_in}});
    const Tensor pred = map_layout(pred_in, need_grad_pred), target = map_layout(target_in, false);
    kdfVIDParams_t p = KDF_VID_PARAMS_INIT;
    p.pred = feature_map(op, "pred_mean", pred);
    p.target = feature_map(op, "target", target);
    p.eps = static_cast<float>(eps);
    const Tensor log_scale = channel_vector(op, "log_scale", log_scale_in, p.pred.c);
    Tensor loss = scalar_loss(device), grad_pred = grad_for(pred, need_grad_pred),
           grad_ls = grad_for(log_scale, need_grad_log_scale);
    launch(op, "kdfVID", device, [&](size_t* bytes) { return kdfVIDWorkspaceSize(&p, bytes); },
           [&](kdfHandle_t h, void* ws, size_t bytes, kdfStream_t stream) {
               return kdfVID(h, &p, pred.data_ptr(), target.data_ptr(), log_scale.data_ptr<float>(), fptr(loss),
                             need_grad_pred ? grad_pred.data_ptr() : nullptr,
                             need_grad_log_scale ? grad_ls.data_ptr<float>() : nullptr, nullptr, 1.0f, 0, ws, bytes,
                             stream);
           });
    return {loss, grad_pred, grad_ls};
}

// The relational losses of two batches of embeddings with one student gradient: SP, PKT, RKD. `p` holds the
// loss's options; rows and dimensions are filled in here (the same leading members in the three structs).
template <class Params, class SizeFn, class CallFn>
Loss2 rows_pair(const char* loss_name, const char* fn, Params p, const Tensor& s_in, const Tensor& t_in,
                const char* s_name, const char* t_name, bool need_grad_s, SizeFn size, CallFn call) {
    const std::string op = std::string("torch.ops.kdfuse.") + loss_name;
    const c10::Device device = call_device(op, {{s_name, &s_in}, {t_name, &t_in}});
    const Tensor s = rows_layout(s_in, need_grad_s), t = rows_layout(t_in, false);
    const Rows rs = rows(op, s_name, s), rt = rows(op, t_name, t);
    TORCH_CHECK_VALUE(rs.n == rt.n, op, ": ", s_name, " has ", rs.n, " samples, ", t_name, " ", rt.n);
    p.rows = rs.n;
    p.dim_student = rs.d;
    p.dim_teacher = rt.d;
    p.ld_student = rs.ld;
    p.ld_teacher = rt.ld;
    return student_grad_call(op, fn, device, p, s, t, need_grad_s, size, call);
}

Loss2 sp(const Tensor& f_s, const Tensor& f_t, bool need_grad_s) {
    return rows_pair("sp", "kdfSP", kdfSPParams_t(KDF_SP_PARAMS_INIT), f_s, f_t, "f_s", "f_t", need_grad_s,
                     kdfSPWorkspaceSize, kdfSP);
}

Loss2 pkt(const Tensor& f_s, const Tensor& f_t, bool need_grad_s) {
    return rows_pair("pkt", "kdfPKT", kdfPKTParams_t(KDF_PKT_PARAMS_INIT), f_s, f_t, "f_s", "f_t", need_grad_s,
                     kdfPKTWorkspaceSize, kdfPKT);
}

Loss2 rkd(const Tensor& e_s, const Tensor& e_t, double w_d, double w_a, bool need_grad_s) {
    kdfRKDParams_t p = KDF_RKD_PARAMS_INIT;
    p.distance_weight = static_cast<float>(w_d);
    p.angle_weight = static_cast<float>(w_a);
    return rows_pair("rkd", "kdfRKD", p, e_s, e_t, "e_s", "e_t", need_grad_s, kdfRKDWorkspaceSize, kdfRKD);
}

Loss3 cc(const Tensor& s_in, const Tensor& t_in, c10::string_view variant, bool need_grad_s, bool need_grad_t) {
    const std::string op = "torch.ops.kdfuse.cc";
    const c10::Device device = call_device(op, {{"f_s", &s_in}, {"f_t", &t_in}});
    TORCH_CHECK_VALUE(variant == "seed" || variant == "repdistiller", op,
                      ": variant must be 'seed' or 'repdistiller', not '", variant, "'");
    const Tensor s = rows_layout(s_in, need_grad_s), t = rows_layout(t_in, need_grad_t);
    const Rows rs = rows(op, "f_s", s), rt = rows(op, "f_t", t);
    TORCH_CHECK_VALUE(rs.n == rt.n, op, ": f_s has ", rs.n, " samples, f_t ", rt.n);
    kdfCCParams_t p = KDF_CC_PARAMS_INIT;
    p.rows = rs.n;
    p.dim_student = rs.d;
    p.dim_teacher = rt.d;
    p.ld_student = rs.ld;
    p.ld_teacher = rt.ld;
    p.variant = variant == "repdistiller" ? KDF_CC_REPDISTILLER : KDF_CC_SEED;
    Tensor loss = scalar_loss(device), grad_s = grad_for(s, need_grad_s), grad_t = grad_for(t, need_grad_t);
    launch(op, "kdfCC", device, [&](size_t* bytes) { return kdfCCWorkspaceSize(&p, bytes); },
           [&](kdfHandle_t h, void* ws, size_t bytes, kdfStream_t stream) {
               return kdfCC(h, &p, s.data_ptr(), t.data_ptr(), fptr(loss), need_grad_s ? grad_s.data_ptr() : nullptr,
                            need_grad_t ? grad_t.data_ptr() : nullptr, nullptr, 1.0f, 0, ws, bytes, stream);
           });
    return {loss, grad_s, grad_t};
}

Loss3 fsp(const Tensor& s_bot_in, const Tensor& s_top_in, const Tensor& t_bot_in, const Tensor& t_top_in,
          bool need_grad_bot, bool need_grad_top) {
    const std::string op = "torch.ops.kdfuse.fsp";
    const c10::Device device = call_device(op, {{"s_bot", &s_bot_in}, {"s_top", &s_top_in}, {"t_bot", &t_bot_in},
                                                {"t_top", &t_top_in}});
    const Tensor s_bot = map_layout(s_bot_in, need_grad_bot), s_top = map_layout(s_top_in, need_grad_top),
                 t_bot = map_layout(t_bot_in, false), t_top = map_layout(t_top_in, false);
    kdfFSPParams_t p = KDF_FSP_PARAMS_INIT;
    p.student_bot = feature_map(op, "s_bot", s_bot);
    p.student_top = feature_map(op, "s_top", s_top);
    p.teacher_bot = feature_map(op, "t_bot", t_bot);
    p.teacher_top = feature_map(op, "t_top", t_top);
    Tensor loss = scalar_loss(device), grad_bot = grad_for(s_bot, need_grad_bot),
           grad_top = grad_for(s_top, need_grad_top);
    launch(op, "kdfFSP", device, [&](size_t* bytes) { return kdfFSPWorkspaceSize(&p, bytes); },
           [&](kdfHandle_t h, void* ws, size_t bytes, kdfStream_t stream) {
               return kdfFSP(h, &p, s_bot.data_ptr(), s_top.data_ptr(), t_bot.data_ptr(), t_top.data_ptr(), fptr(loss),
                             need_grad_bot ? grad_bot.data_ptr() : nullptr,
                             need_grad_top ? grad_top.data_ptr() : nullptr, nullptr, 1.0f, 0, ws, bytes, stream);
           });
    return {loss, grad_bot, grad_top};
}

// A state tensor CRD reads or updates in place: the given dtype and shape, contiguous (an in-place update cannot go
// through a copy).
void check_state(const std::string& op, const char* name, const Tensor& t, at::ScalarType dtype,
                 c10::IntArrayRef shape) {
    TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.sizes() == shape, op, ": ", name, " has shape ", t.sizes(), ", expected ", shape);
    TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

// Whether the call reads its index status and raises IndexError on a bad index: always on the CPU (the SIMT call
// has finished), on CUDA only with KDFUSE_DEBUG=1 (the read synchronises the stream).
bool check_indices() {
#if KDFUSE_TORCH_CUDA
    const char* debug = std::getenv("KDFUSE_DEBUG");
    return debug != nullptr && std::string_view(debug) == "1";
#else
    return true;
#endif
}

Loss3 crd(const Tensor& v_s_in, const Tensor& v_t_in, const Tensor& memory_s, const Tensor& memory_t,
          const OptTensor& idx, const OptTensor& contrast_idx, const Tensor& z, const Tensor& philox, int64_t k,
          double temperature, double momentum, c10::string_view z_mode, double z_momentum, bool normalize_inputs,
          bool update_memory, bool need_grad_s, bool need_grad_t) {
    const std::string op = "torch.ops.kdfuse.crd";
    const c10::Device device = call_device(
        op, {{"v_s", &v_s_in}, {"v_t", &v_t_in}, {"memory_s", &memory_s}, {"memory_t", &memory_t},
             {"idx", idx ? &*idx : nullptr}, {"contrast_idx", contrast_idx ? &*contrast_idx : nullptr}, {"z", &z}});
    TORCH_CHECK_VALUE(v_s_in.dim() == 2 && v_s_in.sizes() == v_t_in.sizes(), op,
                      ": v_s and v_t must be N x D embeddings of one shape, got ", v_s_in.sizes(), " and ",
                      v_t_in.sizes());
    check_float32(op, "v_s", v_s_in);
    check_float32(op, "v_t", v_t_in);
    TORCH_CHECK_VALUE(z_mode == "once" || z_mode == "ema", op, ": z_mode must be 'once' or 'ema', not '", z_mode, "'");
    const Tensor v_s = v_s_in.contiguous(), v_t = v_t_in.contiguous();
    kdfCRDParams_t p = KDF_CRD_PARAMS_INIT;
    p.rows = v_s.size(0);
    p.dim = v_s.size(1);
    TORCH_CHECK_VALUE(memory_s.dim() == 2, op, ": memory_s must be n_data x D, got shape ", memory_s.sizes());
    p.n_data = memory_s.size(0);
    check_state(op, "memory_s", memory_s, at::kFloat, {p.n_data, p.dim});
    check_state(op, "memory_t", memory_t, at::kFloat, {p.n_data, p.dim});
    check_state(op, "z", z, at::kFloat, {2});
    const OptTensor& index_source = contrast_idx ? contrast_idx : idx;
    const at::ScalarType index_dtype = index_source ? index_source->scalar_type() : at::kLong;
    TORCH_CHECK_TYPE(index_dtype == at::kLong || index_dtype == at::kInt, op,
                     ": indices must be int32 or int64, got ", index_dtype);
    p.index_type = index_dtype == at::kInt ? KDF_INDEX_INT32 : KDF_INDEX_INT64;
    if (contrast_idx) {
        TORCH_CHECK_VALUE(contrast_idx->dim() == 2, op, ": contrast_idx must be N x (K+1), got shape ",
                          contrast_idx->sizes());
        p.k = contrast_idx->size(1) - 1;
        check_state(op, "contrast_idx", *contrast_idx, index_dtype, {p.rows, p.k + 1});
    } else {
        TORCH_CHECK_VALUE(philox.device().is_cpu() && philox.scalar_type() == at::kLong && philox.numel() == 2 &&
                              philox.is_contiguous(),
                          op, ": philox must be a contiguous CPU int64 tensor [seed, offset] (read on the host without "
                          "a device synchronisation)");
        p.k = k;
        p.draw_contrast = 1;
        p.seed = static_cast<uint64_t>(philox.data_ptr<int64_t>()[0]);
        p.offset = static_cast<uint64_t>(philox.data_ptr<int64_t>()[1]);
    }
    if (idx) {
        check_state(op, "idx", *idx, index_dtype, {p.rows});
    }
    p.temperature = static_cast<float>(temperature);
    p.momentum = static_cast<float>(momentum);
    p.z_mode = z_mode == "ema" ? KDF_CRD_Z_EMA : KDF_CRD_Z_ONCE;
    p.z_momentum = static_cast<float>(z_momentum);
    p.normalize_inputs = normalize_inputs ? 1 : 0;
    p.update_memory = update_memory ? 1 : 0;
    const bool read_status = check_indices();
    Tensor index_status = read_status ? at::zeros({1}, at::TensorOptions().dtype(at::kInt).device(device)) : Tensor();
    Tensor loss = scalar_loss(device), grad_s = grad_for(v_s, need_grad_s), grad_t = grad_for(v_t, need_grad_t);
    launch(op, "kdfCRD", device, [&](size_t* bytes) { return kdfCRDWorkspaceSize(&p, bytes); },
           [&](kdfHandle_t h, void* ws, size_t bytes, kdfStream_t stream) {
               return kdfCRD(h, &p, v_s.data_ptr(), v_t.data_ptr(), memory_s.data_ptr(), memory_t.data_ptr(),
                             idx ? idx->data_ptr() : nullptr, contrast_idx ? contrast_idx->data_ptr() : nullptr,
                             z.data_ptr<float>(), read_status ? index_status.data_ptr<int32_t>() : nullptr,
                             fptr(loss), need_grad_s ? grad_s.data_ptr() : nullptr,
                             need_grad_t ? grad_t.data_ptr() : nullptr, nullptr, 1.0f, 0, ws, bytes, stream);
           });
    if (p.draw_contrast) {
        philox.data_ptr<int64_t>()[1] += 1;  // the next call draws new contrasts
    }
    if (read_status) {
        TORCH_CHECK_INDEX(index_status.item<int32_t>() == 0, op, ": an index of idx or contrast_idx is outside "
                          "[0, n_data) = [0, ", p.n_data, "); the banks and z were left unchanged and the outputs are "
                          "NaN");
    }
    return {loss, grad_s, grad_t};
}

// KDSVD over the layer lists: the losses (want_loss), and the student gradients of sum_p grad_losses[p] * loss_p for
// the layers with need[l] (kdsvd_backward).
struct KDSVDCall {
    kdfKDSVDParams_t params = KDF_KDSVD_PARAMS_INIT;
    std::vector<Tensor> g_s, g_t;
    c10::Device device = c10::Device(kDeviceType);
};

KDSVDCall kdsvd_call(const std::string& op, at::TensorList g_s_in, at::TensorList g_t_in, int64_t k,
                     double gap_rtol) {
    TORCH_CHECK_VALUE(g_s_in.size() == g_t_in.size() && g_s_in.size() >= 2 &&
                          g_s_in.size() <= KDF_KDSVD_MAX_LAYERS,
                      op, ": g_s and g_t must be lists of the same length, 2 to ", KDF_KDSVD_MAX_LAYERS,
                      " maps, got ", g_s_in.size(), " and ", g_t_in.size());
    KDSVDCall call;
    std::optional<c10::Device> device;
    for (size_t l = 0; l < g_s_in.size(); ++l) {
        for (const Tensor* t : {&g_s_in[l], &g_t_in[l]}) {
            const c10::Device d = call_device(op, {{"a layer map", t}});
            TORCH_CHECK_VALUE(!device || d == *device, op, ": all maps must be on one device, got ", *device, " and ",
                              d);
            device = d;
        }
        call.g_s.push_back(g_s_in[l].contiguous());
        call.g_t.push_back(map_layout(g_t_in[l], false));
        TORCH_CHECK_VALUE(call.g_s[l].dim() == 4 && call.g_t[l].dim() == 4, op,
                          ": the maps must be N x C x H x W, got shapes ", call.g_s[l].sizes(), " and ",
                          call.g_t[l].sizes());
        call.params.student[l] = feature_map(op, "g_s[l]", call.g_s[l]);
        call.params.teacher[l] = feature_map(op, "g_t[l]", call.g_t[l]);
    }
    call.device = *device;
    call.params.num_layers = static_cast<int>(g_s_in.size());
    call.params.k = static_cast<int>(k);
    TORCH_CHECK_VALUE(k == call.params.k, op, ": k = ", k, " is out of range");
    call.params.gap_rtol = static_cast<float>(gap_rtol);
    return call;
}

void kdsvd_launch(const std::string& op, const KDSVDCall& call, float* loss, void* const* grads,
                  const float* grad_loss) {
    std::vector<const void*> f_s, f_t;
    for (size_t l = 0; l < call.g_s.size(); ++l) {
        f_s.push_back(call.g_s[l].data_ptr());
        f_t.push_back(call.g_t[l].data_ptr());
    }
    launch(op, "kdfKDSVD", call.device, [&](size_t* bytes) { return kdfKDSVDWorkspaceSize(&call.params, bytes); },
           [&](kdfHandle_t h, void* ws, size_t bytes, kdfStream_t stream) {
               return kdfKDSVD(h, &call.params, f_s.data(), f_t.data(), loss, grads, grad_loss, 1.0f, 0, ws, bytes,
                               stream);
           });
}

Tensor kdsvd(at::TensorList g_s, at::TensorList g_t, int64_t k, double gap_rtol) {
    const std::string op = "torch.ops.kdfuse.kdsvd";
    const KDSVDCall call = kdsvd_call(op, g_s, g_t, k, gap_rtol);
    Tensor losses = at::empty({call.params.num_layers - 1}, at::TensorOptions().dtype(at::kFloat).device(call.device));
    kdsvd_launch(op, call, losses.data_ptr<float>(), nullptr, nullptr);
    return losses;
}

// The student gradients a KDSVD call writes: a tensor per layer with need_grad_s[l] (an empty (0,) one otherwise)
// and the pointer array the C API takes.
struct KDSVDGrads {
    std::vector<Tensor> grads;
    std::vector<void*> ptrs;
};

KDSVDGrads kdsvd_grads(const std::string& op, const KDSVDCall& call, const c10::List<bool>& need_grad_s) {
    const int layers = call.params.num_layers;
    TORCH_CHECK_VALUE(static_cast<int>(need_grad_s.size()) == layers, op, ": need_grad_s has ", need_grad_s.size(),
                      " entries, expected one per layer (", layers, ")");
    KDSVDGrads out;
    for (int l = 0; l < layers; ++l) {
        const bool need = need_grad_s.get(l);
        out.grads.push_back(grad_for(call.g_s[l], need));
        out.ptrs.push_back(need ? out.grads.back().data_ptr() : nullptr);
    }
    return out;
}

std::vector<Tensor> kdsvd_backward(at::TensorList g_s, at::TensorList g_t, int64_t k, double gap_rtol,
                                   const Tensor& grad_losses_in, const c10::List<bool>& need_grad_s) {
    const std::string op = "torch.ops.kdfuse.kdsvd_backward";
    const KDSVDCall call = kdsvd_call(op, g_s, g_t, k, gap_rtol);
    const int layers = call.params.num_layers;
    check_float32(op, "grad_losses", grad_losses_in);
    TORCH_CHECK_VALUE(grad_losses_in.numel() == layers - 1 && grad_losses_in.device() == call.device, op,
                      ": grad_losses must be ", layers - 1, " values on ", call.device, ", got shape ",
                      grad_losses_in.sizes(), " on ", grad_losses_in.device());
    const Tensor grad_losses = grad_losses_in.contiguous();
    KDSVDGrads out = kdsvd_grads(op, call, need_grad_s);
    kdsvd_launch(op, call, nullptr, out.ptrs.data(), grad_losses.data_ptr<float>());
    return out.grads;
}

// The sum of the pair losses and its gradients w.r.t. the student maps with need_grad_s, from ONE library call (the
// upstream gradient of every pair is the sum's: its backward is a multiply, as the other losses').
std::tuple<Tensor, std::vector<Tensor>> kdsvd_sum(at::TensorList g_s, at::TensorList g_t, int64_t k, double gap_rtol,
                                                  const c10::List<bool>& need_grad_s) {
    const std::string op = "torch.ops.kdfuse.kdsvd_sum";
    const KDSVDCall call = kdsvd_call(op, g_s, g_t, k, gap_rtol);
    KDSVDGrads out = kdsvd_grads(op, call, need_grad_s);
    Tensor losses = at::empty({call.params.num_layers - 1}, at::TensorOptions().dtype(at::kFloat).device(call.device));
    kdsvd_launch(op, call, losses.data_ptr<float>(), out.ptrs.data(), nullptr);
    return {losses.sum(), std::move(out.grads)};
}

}  // namespace

TORCH_LIBRARY_IMPL(kdfuse, KDFUSE_DISPATCH_KEY, m) {
    m.impl("kd", TORCH_FN(kd));
    m.impl("fitnet", TORCH_FN(fitnet));
    m.impl("at", TORCH_FN(at_loss));
    m.impl("ft", TORCH_FN(ft));
    m.impl("ab", TORCH_FN(ab));
    m.impl("ofd", TORCH_FN(ofd));
    m.impl("vid", TORCH_FN(vid));
    m.impl("sp", TORCH_FN(sp));
    m.impl("cc", TORCH_FN(cc));
    m.impl("pkt", TORCH_FN(pkt));
    m.impl("rkd", TORCH_FN(rkd));
    m.impl("nst", TORCH_FN(nst));
    m.impl("fsp", TORCH_FN(fsp));
    m.impl("crd", TORCH_FN(crd));
    m.impl("kdsvd", TORCH_FN(kdsvd));
    m.impl("kdsvd_backward", TORCH_FN(kdsvd_backward));
    m.impl("kdsvd_sum", TORCH_FN(kdsvd_sum));
}
