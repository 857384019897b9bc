// kdfVID and kdfVIDWorkspaceSize: validation, workspace layout, launch.
#include "../kernels/vid.h"
#include "validate.h"

#include <string>

using kdf::host::Checker;

namespace {

// The target is pooled to pred's H x W, so it may not be smaller in either.
Checker& target_covers_pred(Checker& check, const kdfVIDParams_t* p)
{
    if (!check.ok()) return check;
    for (const char d : {'h', 'w'}) {
        const int64_t pred = d == 'h' ? p->pred.h : p->pred.w;
        const int64_t target = d == 'h' ? p->target.h : p->target.w;
        if (target < pred)
            return check.fail(KDF_STATUS_SHAPE_MISMATCH, std::string("params->target.") + d + " (" + std::to_string(target) +
                                                             ") < params->pred." + d + " (" + std::to_string(pred) +
                                                             "): the target is pooled to pred's size, it cannot be smaller");
    }
    return check;
}

Checker& check_params(Checker& check, const kdfVIDParams_t* p)
{
    if (!check.params(p, "KDF_VID_PARAMS_INIT").ok()) return check;
    check.feature_map(p->pred, "params->pred")
        .feature_map(p->target, "params->target")
        .same_dims(p->pred, p->target, "nc", "params->pred", "params->target");
    return target_covers_pred(check, p)
        .dtype(p->dtype, "params->dtype")
        .positive_finite(p->eps, "params->eps")
        .finite(p->weight, "params->weight");
}

size_t workspace_bytes(const kdfVIDParams_t* p)
{
    const kdf::Map4d pred = kdf::Map4d::resolve(p->pred);
    return static_cast<size_t>(kdf::kernels::VIDStats::bytes(pred.n, pred.c));
}

}  // namespace

extern "C" {

kdfStatus_t kdfVIDWorkspaceSize(const kdfVIDParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfVIDWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfVID(kdfHandle_t handle, const kdfVIDParams_t* params, const void* pred_mean, const void* target,
                   const float* log_scale, float* loss, void* grad_pred, float* grad_log_scale, const float* grad_loss,
                   float grad_scale, int accumulate, void* workspace, size_t workspace_bytes_given, kdfStream_t stream)
{
    return kdf::host::guarded("kdfVID", [&] {
        Checker check("kdfVID");
        check.handle(handle);
        if (!check_params(check, params).ok()) return check.status();
        const size_t ws_bytes = workspace_bytes(params);
        check.required(pred_mean, "pred_mean")
            .required(target, "target")
            .required(log_scale, "log_scale")
            .aligned(pred_mean, sizeof(float), "pred_mean")
            .aligned(target, sizeof(float), "target")
            .aligned(log_scale, sizeof(float), "log_scale")
            .aligned(loss, sizeof(float), "loss")
            .aligned(grad_pred, sizeof(float), "grad_pred")
            .aligned(grad_log_scale, sizeof(float), "grad_log_scale")
            .aligned(grad_loss, sizeof(float), "grad_loss")
            .finite(grad_scale, "grad_scale")
            .workspace(workspace, workspace_bytes_given, ws_bytes);
        if (!check.ok()) return check.status();
        const uint64_t p_bytes = kdf::host::map_bytes(params->pred, sizeof(float));
        const uint64_t c_bytes = sizeof(float) * uint64_t(params->pred.c);
        check.disjoint({{pred_mean, p_bytes, "pred_mean", false},
                        {target, kdf::host::map_bytes(params->target, sizeof(float)), "target", false},
                        {log_scale, c_bytes, "log_scale", false},
                        {grad_loss, sizeof(float), "grad_loss", false},
                        {loss, sizeof(float), "loss", true},
                        {grad_pred, p_bytes, "grad_pred", true},
                        {grad_log_scale, c_bytes, "grad_log_scale", true},
                        {workspace, ws_bytes, "workspace", true}});
        if (!check.ok()) return check.status();
        if (loss == nullptr && grad_pred == nullptr && grad_log_scale == nullptr) return kdf::host::succeed();

        kdf::kernels::VIDArgs args{};
        args.p = kdf::Map4d::resolve(params->pred);
        args.t = kdf::Map4d::resolve(params->target);
        args.eps = params->eps;
        args.weight = params->weight;
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.pred = static_cast<const float*>(pred_mean);
        args.target = static_cast<const float*>(target);
        args.log_scale = log_scale;
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_pred = static_cast<float*>(grad_pred);
        args.grad_log_scale = grad_log_scale;
        args.stats = kdf::kernels::VIDStats::carve(workspace, args.p.n, args.p.c);
        return kdf::host::cuda_status("kdfVID", kdf::kernels::vid_launch(args, stream));
    });
}

}  // extern "C"
