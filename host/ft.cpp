// kdfFT and kdfFTWorkspaceSize: validation and launch. FT compares AT's attention maps, so it shares AT's
// layer-pair rules, workspace and kernel arguments (host/attention_pair.cpp, kernels/at.h).
#include "../kernels/ft.h"
#include "attention_pair.h"

using kdf::host::Checker;

namespace {

Checker& check_params(Checker& check, const kdfFTParams_t* p)
{
    if (!check.params(p, "KDF_FT_PARAMS_INIT").ok()) return check;
    return kdf::host::check_attention_pair(check, p->student, p->teacher)
        .dtype(p->dtype, "params->dtype")
        .positive_finite(p->p1, "params->p1")
        .positive_finite(p->p2, "params->p2")
        .finite(p->weight, "params->weight");
}

size_t workspace_bytes(const kdfFTParams_t* p) { return kdf::host::attention_workspace_bytes(p->student, p->teacher); }

}  // namespace

extern "C" {

kdfStatus_t kdfFTWorkspaceSize(const kdfFTParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfFTWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfFT(kdfHandle_t handle, const kdfFTParams_t* params, const void* f_s, const void* f_t, float* loss,
                  void* grad_s, const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                  size_t workspace_bytes_given, kdfStream_t stream)
{
    const kdf::host::StudentTeacherIO io{f_s, f_t, loss, grad_s, grad_loss, grad_scale, workspace, workspace_bytes_given};
    return kdf::host::student_teacher_call("kdfFT", handle, params, io, check_params, workspace_bytes, [&] {
        const auto args = kdf::host::attention_args(params->student, params->teacher, params->p1, params->p2, params->weight, io, accumulate);
        return kdf::kernels::ft_launch(args, stream);
    });
}

}  // extern "C"
