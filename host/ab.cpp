// kdfAB and kdfABWorkspaceSize: validation, workspace layout, launch.
#include "../kernels/ab.h"
#include "call.h"

using kdf::host::Checker;

namespace {

Checker& check_params(Checker& check, const kdfABParams_t* p)
{
    if (!check.params(p, "KDF_AB_PARAMS_INIT").ok()) return check;
    check.feature_map(p->student, "params->student")
        .feature_map(p->teacher, "params->teacher")
        .same_dims(p->student, p->teacher, "nchw", "params->student", "params->teacher")
        .dtype(p->dtype, "params->dtype")
        .finite(p->margin, "params->margin")
        .finite(p->weight, "params->weight");
    if (check.ok() && p->margin < 0.0f)
        check.fail(KDF_STATUS_INVALID_VALUE, "params->margin must be >= 0 (got " + std::to_string(p->margin) + ")");
    if (check.ok() && p->seed_scaling != 0 && p->seed_scaling != 1)
        check.fail(KDF_STATUS_INVALID_VALUE, "params->seed_scaling must be 0 or 1 (got " + std::to_string(p->seed_scaling) + ")");
    return check;
}

size_t workspace_bytes(const kdfABParams_t* p)
{
    return static_cast<size_t>(kdf::GridSum::bytes(kdf::kernels::ab_blocks(kdf::Map4d::resolve(p->student))));
}

}  // namespace

extern "C" {

kdfStatus_t kdfABWorkspaceSize(const kdfABParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfABWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfAB(kdfHandle_t handle, const kdfABParams_t* params, const void* s, const void* t, float* loss, void* grad_s,
                  const float* grad_loss, float grad_scale, int accumulate, void* workspace, size_t workspace_bytes_given,
                  kdfStream_t stream)
{
    const kdf::host::StudentTeacherIO io{s, t, loss, grad_s, grad_loss, grad_scale, workspace, workspace_bytes_given, "s", "t"};
    return kdf::host::student_teacher_call("kdfAB", handle, params, io, check_params, workspace_bytes, [&] {
        kdf::kernels::ABArgs args{};
        args.s = kdf::Map4d::resolve(params->student);
        args.t = kdf::Map4d::resolve(params->teacher);
        args.margin = params->margin;
        args.weight = params->weight;
        // The seed's `/ bsz / 1000 * 3`, formed in double.
        args.scale = params->seed_scaling ? static_cast<float>(3.0 / (1000.0 * static_cast<double>(args.s.n))) : 1.0f;
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.f_s = static_cast<const float*>(s);
        args.f_t = static_cast<const float*>(t);
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s = static_cast<float*>(grad_s);
        args.sum = kdf::GridSum::carve(workspace, kdf::kernels::ab_blocks(args.s));
        return kdf::kernels::ab_launch(args, stream);
    });
}

}  // extern "C"
