// kdfAT and kdfATWorkspaceSize: validation and launch. The layer-pair rules, workspace and kernel
// arguments are in host/attention_pair.cpp, shared with host/ft.cpp.
#include "attention_pair.h"

using kdf::host::Checker;

namespace {

Checker& check_params(Checker& check, const kdfATParams_t* p)
{
    if (!check.params(p, "KDF_AT_PARAMS_INIT").ok()) return check;
    return kdf::host::check_attention_pair(check, p->student, p->teacher)
        .dtype(p->dtype, "params->dtype")
        .positive_finite(p->p, "params->p")
        .finite(p->weight, "params->weight");
}

size_t workspace_bytes(const kdfATParams_t* p) { return kdf::host::attention_workspace_bytes(p->student, p->teacher); }

}  // namespace

extern "C" {

kdfStatus_t kdfATWorkspaceSize(const kdfATParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfATWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfAT(kdfHandle_t handle, const kdfATParams_t* params, const void* f_s, const void* f_t, float* loss,
                  void* grad_s, const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                  size_t workspace_bytes_given, kdfStream_t stream)
{
    const kdf::host::StudentTeacherIO io{f_s, f_t, loss, grad_s, grad_loss, grad_scale, workspace, workspace_bytes_given};
    return kdf::host::student_teacher_call("kdfAT", handle, params, io, check_params, workspace_bytes, [&] {
        const auto args = kdf::host::attention_args(params->student, params->teacher, params->p, 2.0f, params->weight, io, accumulate);
        return kdf::kernels::at_launch(args, stream);
    });
}

}  // extern "C"
