// kdfFitNet and kdfFitNetWorkspaceSize: validation, workspace layout, launch.
#include "../kernels/fitnet.h"
#include "call.h"

using kdf::host::Checker;

namespace {

Checker& check_params(Checker& check, const kdfFitNetParams_t* p)
{
    if (!check.params(p, "KDF_FITNET_PARAMS_INIT").ok()) return check;
    return check.feature_map(p->student, "params->student")
        .feature_map(p->teacher, "params->teacher")
        .same_dims(p->student, p->teacher, "nchw", "params->student", "params->teacher")
        .dtype(p->dtype, "params->dtype")
        .finite(p->weight, "params->weight");
}

size_t workspace_bytes(const kdfFitNetParams_t* p)
{
    return static_cast<size_t>(kdf::GridSum::bytes(kdf::kernels::fitnet_blocks(kdf::Map4d::resolve(p->student))));
}

}  // namespace

extern "C" {

kdfStatus_t kdfFitNetWorkspaceSize(const kdfFitNetParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfFitNetWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfFitNet(kdfHandle_t handle, const kdfFitNetParams_t* params, const void* f_s, const void* f_t, float* loss,
                      void* grad_s, const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                      size_t workspace_bytes_given, kdfStream_t stream)
{
    const kdf::host::StudentTeacherIO io{f_s, f_t, loss, grad_s, grad_loss, grad_scale, workspace, workspace_bytes_given};
    return kdf::host::student_teacher_call("kdfFitNet", handle, params, io, check_params, workspace_bytes, [&] {
        kdf::kernels::FitNetArgs args{};
        args.s = kdf::Map4d::resolve(params->student);
        args.t = kdf::Map4d::resolve(params->teacher);
        args.weight = params->weight;
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.f_s = static_cast<const float*>(f_s);
        args.f_t = static_cast<const float*>(f_t);
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s = static_cast<float*>(grad_s);
        args.sum = kdf::GridSum::carve(workspace, kdf::kernels::fitnet_blocks(args.s));
        return kdf::kernels::fitnet_launch(args, stream);
    });
}

}  // extern "C"
