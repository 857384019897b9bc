// kdfRKD and kdfRKDWorkspaceSize: validation, workspace layout, launch.
#include "../kernels/rkd.h"
#include "call.h"

#include <string>

using kdf::host::Checker;

namespace {

// Checks that depend on the params only (shared by the size query and the call).
Checker& check_params(Checker& check, const kdfRKDParams_t* p)
{
    if (!check.params(p, "KDF_RKD_PARAMS_INIT").ok()) return check;
    return check
        .embeddings(p->rows, p->dim_student, p->dim_teacher, p->ld_student, p->ld_teacher, int64_t(1) << 20, true, "e_s", "e_t")
        .dtype(p->dtype, "params->dtype")
        .finite(p->distance_weight, "params->distance_weight")
        .finite(p->angle_weight, "params->angle_weight")
        .finite(p->weight, "params->weight");
}

size_t workspace_bytes(const kdfRKDParams_t* p) { return static_cast<size_t>(kdf::kernels::RKDWorkspace::bytes(p->rows, p->dim_student, p->dim_teacher)); }

}  // namespace

extern "C" {

kdfStatus_t kdfRKDWorkspaceSize(const kdfRKDParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfRKDWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfRKD(kdfHandle_t handle, const kdfRKDParams_t* params, const void* e_s, const void* e_t, float* loss,
                   void* grad_s, const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                   size_t workspace_bytes_given, kdfStream_t stream)
{
    const kdf::host::StudentTeacherIO io{e_s, e_t, loss, grad_s, grad_loss, grad_scale, workspace, workspace_bytes_given, "e_s", "e_t"};
    return kdf::host::student_teacher_call("kdfRKD", handle, params, io, check_params, workspace_bytes, [&] {
        kdf::kernels::RKDArgs args{};
        args.rows = params->rows;
        args.dim_s = params->dim_student;
        args.dim_t = params->dim_teacher;
        args.ld_s = kdf::host::leading_dim(params->ld_student, params->dim_student);
        args.ld_t = kdf::host::leading_dim(params->ld_teacher, params->dim_teacher);
        args.w_d = params->distance_weight;
        args.w_a = params->angle_weight;
        args.weight = params->weight;
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.e_s = static_cast<const float*>(e_s);
        args.e_t = static_cast<const float*>(e_t);
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s = static_cast<float*>(grad_s);
        args.ws = kdf::kernels::RKDWorkspace::carve(workspace, params->rows, params->dim_student, params->dim_teacher);
        args.cublas = handle->cublas;
        args.allow_tf32 = handle->math == KDF_MATH_TF32;
        return kdf::kernels::rkd_launch(args, stream);
    });
}

}  // extern "C"
