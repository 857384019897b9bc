// kdfSP and kdfSPWorkspaceSize: validation, workspace layout, launch.
#include "../kernels/sp.h"
#include "call.h"

using kdf::host::Checker;

namespace {

constexpr int64_t kMaxGramRows = 46339;  // (N+1) x (N+1) fits int (cuBLAS sizes, grid indexing; the mean row)

Checker& check_params(Checker& check, const kdfSPParams_t* p)
{
    if (!check.params(p, "KDF_SP_PARAMS_INIT").ok()) return check;
    return check
        .embeddings(p->rows, p->dim_student, p->dim_teacher, p->ld_student, p->ld_teacher, kMaxGramRows, true, "f_s", "f_t")
        .dtype(p->dtype, "params->dtype")
        .finite(p->weight, "params->weight");
}

size_t workspace_bytes(const kdfSPParams_t* p) { return static_cast<size_t>(kdf::kernels::sp_workspace_bytes(p->rows, p->dim_student, p->dim_teacher)); }

}  // namespace

extern "C" {

kdfStatus_t kdfSPWorkspaceSize(const kdfSPParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfSPWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfSP(kdfHandle_t handle, const kdfSPParams_t* params, const void* f_s, const void* f_t, float* loss,
                  void* grad_s, const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                  size_t workspace_bytes_given, kdfStream_t stream)
{
    const kdf::host::StudentTeacherIO io{f_s, f_t, loss, grad_s, grad_loss, grad_scale, workspace, workspace_bytes_given};
    return kdf::host::student_teacher_call("kdfSP", handle, params, io, check_params, workspace_bytes, [&] {
        kdf::kernels::SPArgs args{};
        args.n = params->rows;
        args.ds = params->dim_student;
        args.dt = params->dim_teacher;
        args.ld_s = kdf::host::leading_dim(params->ld_student, params->dim_student);
        args.ld_t = kdf::host::leading_dim(params->ld_teacher, params->dim_teacher);
        args.weight = params->weight;
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.f_s = static_cast<const float*>(f_s);
        args.f_t = static_cast<const float*>(f_t);
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s = static_cast<float*>(grad_s);
        args.ws = kdf::kernels::CentredGramWorkspace::carve(workspace, args.n, args.ds, args.dt, kdf::kernels::sp_blocks(args.n));
        args.cublas = handle->cublas;
        args.allow_tf32 = handle->math == KDF_MATH_TF32;
        return kdf::kernels::sp_launch(args, stream);
    });
}

}  // extern "C"
