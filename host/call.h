// The shared body of the student-teacher entry points (kdfSP, kdfAT, ...): the order of the checks, the
// no-output shortcut and the mapping of a launcher's result to a status live here once, so every loss
// reports the same status for the same mistake.
#pragma once

#include "../kernels/common/gemm.h"
#include "validate.h"

#include <utility>

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

// Byte extents of the student and teacher tensors of validated params: feature maps (params with `student`
// and `teacher` maps) or N x D row matrices (params with rows, dims and leading dimensions); fp32.
template <typename Params>
std::pair<uint64_t, uint64_t> student_teacher_bytes(const Params* p)
{
    if constexpr (requires { p->student; })
        return {map_bytes(p->student, sizeof(float)), map_bytes(p->teacher, sizeof(float))};
    else
        return {rows_bytes(p->rows, p->dim_student, leading_dim(p->ld_student, p->dim_student), sizeof(float)),
                rows_bytes(p->rows, p->dim_teacher, leading_dim(p->ld_teacher, p->dim_teacher), sizeof(float))};
}

// A launcher's result as a status: a cuBLAS failure first (it happened before any later kernel), then CUDA.
inline kdfStatus_t launch_status(const char* call, cudaError_t e) { return cuda_status(call, e); }
inline kdfStatus_t launch_status(const char* call, const LaunchResult& r)
{
    if (r.cublas != CUBLAS_STATUS_SUCCESS) return cublas_status(call, r.cublas);
    return cuda_status(call, r.cuda);
}

// The body of kdf<Loss> for a loss with one student gradient: the handle, the params (`check_params`), the
// tensors, the workspace (against `workspace_bytes(params)`) and the aliasing rule are checked in that order; a call that
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
        const size_t ws_bytes = workspace_bytes(params);
        check.student_teacher(io.s, io.t, io.loss, io.grad_s, io.grad_loss, io.grad_scale, io.s_name, io.t_name)
            .workspace(io.workspace, io.workspace_bytes, ws_bytes);
        if (!check.ok()) return check.status();
        const auto [s_bytes, t_bytes] = student_teacher_bytes(params);
        check.disjoint({{io.s, s_bytes, io.s_name, false},
                        {io.t, t_bytes, io.t_name, false},
                        {io.grad_loss, sizeof(float), "grad_loss", false},
                        {io.loss, sizeof(float), "loss", true},
                        {io.grad_s, s_bytes, "grad_s", true},
                        {io.workspace, ws_bytes, "workspace", true}});
        if (!check.ok()) return check.status();
        if (io.loss == nullptr && io.grad_s == nullptr) return succeed();
        return launch_status(call, launch());
    });
}

}  // namespace kdf::host
