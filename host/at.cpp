// kdfAT and kdfATWorkspaceSize: validation, workspace layout, launch. The layer-pair rules are in
// host/attention_pair.cpp, shared with host/ft.cpp.
#include "../kernels/at.h"
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

size_t workspace_bytes(const kdfATParams_t* p)
{
    const kdf::Map4d s = kdf::Map4d::resolve(p->student);
    return static_cast<size_t>(
        kdf::kernels::AttentionWorkspace::bytes(s, kdf::kernels::AttentionGeometry::of(s, kdf::Map4d::resolve(p->teacher))));
}

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
    return kdf::host::guarded("kdfAT", [&] {
        Checker check("kdfAT");
        check.handle(handle);
        if (!check_params(check, params).ok()) return check.status();
        check.student_teacher(f_s, f_t, loss, grad_s, grad_loss, grad_scale, "f_s", "f_t")
            .workspace(workspace, workspace_bytes_given, workspace_bytes(params));
        if (!check.ok()) return check.status();
        if (loss == nullptr && grad_s == nullptr) return kdf::host::succeed();

        kdf::kernels::AttentionArgs args{};
        args.s = kdf::Map4d::resolve(params->student);
        args.t = kdf::Map4d::resolve(params->teacher);
        args.geo = kdf::kernels::AttentionGeometry::of(args.s, args.t);
        args.p = params->p;
        args.p2 = 2.0f;
        args.weight = params->weight;
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.f_s = static_cast<const float*>(f_s);
        args.f_t = static_cast<const float*>(f_t);
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s = static_cast<float*>(grad_s);
        args.ws = kdf::kernels::AttentionWorkspace::carve(workspace, args.s, args.geo);
        return kdf::host::cuda_status("kdfAT", kdf::kernels::at_launch(args, stream));
    });
}

}  // extern "C"
