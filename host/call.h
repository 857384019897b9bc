// The shared body of the student-teacher entry points (kdfSP, kdfAT, ...): the order of the checks, the
// no-output shortcut and the mapping of a launcher's result to a status live here once, so every loss
// reports the same status for the same mistake.
#pragma once

#include "../kernels/common/gemm.h"
#include "validate.h"

namespace kdf::host {

// The tensor arguments of a student-teacher call with one student gradient, as the C entry point took them.
struct StudentTeacherIO {
    const void* s;
    const void* t;
    float* loss;             // nullable
    void* grad_s;            // nullable
    const float* grad_loss;  // nullable (= 1)
    float grad_scale;
    void* workspace;
    size_t workspace_bytes;
    const char* s_name = "f_s";  // the names of the inputs in messages
    const char* t_name = "f_t";
};

// A launcher's result as a status: a cuBLAS failure first (it happened before any later kernel), then CUDA.
inline kdfStatus_t launch_status(const char* call, cudaError_t e) { return cuda_status(call, e); }
inline kdfStatus_t launch_status(const char* call, const LaunchResult& r)
{
    if (r.cublas != CUBLAS_STATUS_SUCCESS) return cublas_status(call, r.cublas);
    return cuda_status(call, r.cuda);
}

// The body of kdf<Loss> for a loss with one student gradient: the handle, the params (`check_params`), the
// tensors and the workspace (against `workspace_bytes(params)`) are checked in that order; a call that
// requests neither the loss nor grad_s succeeds without work; otherwise `launch()` issues the work on the
// caller's stream and its result (cudaError_t or LaunchResult) becomes the status.
template <typename Params, typename CheckParams, typename WorkspaceBytes, typename Launch>
kdfStatus_t student_teacher_call(const char* call, kdfHandle_t handle, const Params* params, const StudentTeacherIO& io,
                                 CheckParams&& check_params, WorkspaceBytes&& workspace_bytes, Launch&& launch)
{
    return guarded(call, [&] {
        Checker check(call);
        check.handle(handle);
        if (!check_params(check, params).ok()) return check.status();
        check.student_teacher(io.s, io.t, io.loss, io.grad_s, io.grad_loss, io.grad_scale, io.s_name, io.t_name)
            .workspace(io.workspace, io.workspace_bytes, workspace_bytes(params));
        if (!check.ok()) return check.status();
        if (io.loss == nullptr && io.grad_s == nullptr) return succeed();
        return launch_status(call, launch());
    });
}

}  // namespace kdf::host
