// kdfKD and kdfKDWorkspaceSize: validation, workspace layout, launch.
#include "../kernels/kd.h"
#include "validate.h"

using kdf::host::Checker;

namespace {

// Bytes per element of the logits and gradients (checked params: fp32, fp16 or bf16).
size_t element_bytes(const kdfKDParams_t* p) { return p->dtype == KDF_DTYPE_FP32 ? 4 : 2; }

// Checks that depend on the params only (shared by the size query and the call).
Checker& check_params(Checker& check, const kdfKDParams_t* p)
{
    if (!check.params(p, "KDF_KD_PARAMS_INIT").ok()) return check;
    check.at_least(p->rows, 1, "params->rows")
        .at_least(p->classes, 1, "params->classes")
        .at_least(p->ld_student, 0, "params->ld_student")
        .at_least(p->ld_teacher, 0, "params->ld_teacher");
    if (!check.ok()) return check;
    check.at_least(kdf::host::leading_dim(p->ld_student, p->classes), p->classes, "params->ld_student")
        .at_least(kdf::host::leading_dim(p->ld_teacher, p->classes), p->classes, "params->ld_teacher")
        .extent(p->rows, kdf::host::leading_dim(p->ld_student, p->classes), "y_s")
        .extent(p->rows, kdf::host::leading_dim(p->ld_teacher, p->classes), "y_t")
        .positive_finite(p->temperature, "params->temperature")
        .dtype_with_16bit(p->dtype, "params->dtype")
        .one_of(p->reduction, {KDF_REDUCTION_BATCHMEAN, KDF_REDUCTION_NONE}, "params->reduction", "kdfReduction_t");
    return check;
}

size_t workspace_bytes(const kdfKDParams_t* p)
{
    return static_cast<size_t>(kdf::kernels::kd_workspace_bytes(p->rows, p->reduction == KDF_REDUCTION_NONE));
}

}  // namespace

extern "C" {

kdfStatus_t kdfKDWorkspaceSize(const kdfKDParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfKDWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfKD(kdfHandle_t handle, const kdfKDParams_t* params, const void* y_s, const void* y_t,
                  const float* row_weight, float* loss, void* grad_s, void* grad_t, const float* grad_loss,
                  float grad_scale, int accumulate, void* workspace, size_t workspace_bytes_given, kdfStream_t stream)
{
    return kdf::host::guarded("kdfKD", [&] {
        Checker check("kdfKD");
        check.handle(handle);
        if (!check_params(check, params).ok()) return check.status();
        const size_t ws_bytes = workspace_bytes(params);
        check.student_teacher(y_s, y_t, loss, grad_s, grad_loss, grad_scale, "y_s", "y_t", element_bytes(params))
            .aligned(row_weight, sizeof(float), "row_weight")
            .aligned(grad_t, element_bytes(params), "grad_t")
            .workspace(workspace, workspace_bytes_given, ws_bytes);
        if (!check.ok()) return check.status();
        const int64_t n = params->rows, c = params->classes;
        const uint64_t s_bytes = kdf::host::rows_bytes(n, c, kdf::host::leading_dim(params->ld_student, c), element_bytes(params));
        const uint64_t t_bytes = kdf::host::rows_bytes(n, c, kdf::host::leading_dim(params->ld_teacher, c), element_bytes(params));
        const uint64_t per_row = params->reduction == KDF_REDUCTION_NONE ? sizeof(float) * uint64_t(n) : sizeof(float);
        check.disjoint({{y_s, s_bytes, "y_s", false},
                        {y_t, t_bytes, "y_t", false},
                        {row_weight, sizeof(float) * uint64_t(n), "row_weight", false},
                        {grad_loss, per_row, "grad_loss", false},
                        {loss, per_row, "loss", true},
                        {grad_s, s_bytes, "grad_s", true},
                        {grad_t, t_bytes, "grad_t", true},
                        {workspace, ws_bytes, "workspace", true}});
        if (!check.ok()) return check.status();
        if (loss == nullptr && grad_s == nullptr && grad_t == nullptr) return kdf::host::succeed();  // nothing requested

        kdf::kernels::KDArgs args{};
        args.rows = params->rows;
        args.classes = params->classes;
        args.ld_s = kdf::host::leading_dim(params->ld_student, params->classes);
        args.ld_t = kdf::host::leading_dim(params->ld_teacher, params->classes);
        args.dtype = params->dtype;
        args.temperature = params->temperature;
        args.per_row = params->reduction == KDF_REDUCTION_NONE;
        args.accumulate = accumulate != 0;
        args.grad_scale = grad_scale;
        args.y_s = y_s;
        args.y_t = y_t;
        args.row_weight = row_weight;
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s = grad_s;
        args.grad_t = grad_t;
        args.device_optin_smem = handle->max_smem_optin;
        if (!args.per_row) args.sum = kdf::GridSum::carve(workspace, kdf::kernels::kd_blocks(args.rows));
        return kdf::host::cuda_status("kdfKD", kdf::kernels::kd_launch(args, stream));
    });
}

}  // extern "C"
