// kdfFT and kdfFTWorkspaceSize: validation, workspace layout, launch. FT compares AT's attention maps, so
// it shares AT's layer-pair rules, geometry and workspace (kernels/at.h).
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

size_t workspace_bytes(const kdfFTParams_t* p)
{
    const kdf::Map4d s = kdf::Map4d::resolve(p->student);
    return static_cast<size_t>(
        kdf::kernels::AttentionWorkspace::bytes(s, kdf::kernels::AttentionGeometry::of(s, kdf::Map4d::resolve(p->teacher))));
}

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
    return kdf::host::guarded("kdfFT", [&] {
        Checker check("kdfFT");
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
        args.p = params->p1;
        args.p2 = params->p2;
        args.weight = params->weight;
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.f_s = static_cast<const float*>(f_s);
        args.f_t = static_cast<const float*>(f_t);
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s = static_cast<float*>(grad_s);
        args.ws = kdf::kernels::AttentionWorkspace::carve(workspace, args.s, args.geo);
        return kdf::host::cuda_status("kdfFT", kdf::kernels::ft_launch(args, stream));
    });
}

}  // extern "C"
