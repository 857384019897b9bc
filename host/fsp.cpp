// kdfFSP and kdfFSPWorkspaceSize: validation, workspace layout, launch.
#include "../kernels/fsp.h"
#include "call.h"

using kdf::host::Checker;

namespace {

kdf::kernels::FSPGeometry geometry(const kdfFSPParams_t* p)
{
    using kdf::Map4d;
    return kdf::kernels::FSPGeometry::of(Map4d::resolve(p->student_bot), Map4d::resolve(p->student_top),
                                         Map4d::resolve(p->teacher_bot), Map4d::resolve(p->teacher_top));
}

Checker& check_params(Checker& check, const kdfFSPParams_t* p)
{
    if (!check.params(p, "KDF_FSP_PARAMS_INIT").ok()) return check;
    check.feature_map(p->student_bot, "params->student_bot")
        .feature_map(p->student_top, "params->student_top")
        .feature_map(p->teacher_bot, "params->teacher_bot")
        .feature_map(p->teacher_top, "params->teacher_top")
        .same_dims(p->student_bot, p->student_top, "n", "params->student_bot", "params->student_top")
        .same_dims(p->student_bot, p->teacher_bot, "n", "params->student_bot", "params->teacher_bot")
        .same_dims(p->student_bot, p->teacher_top, "n", "params->student_bot", "params->teacher_top")
        .same_dims(p->student_bot, p->teacher_bot, "c", "params->student_bot", "params->teacher_bot")
        .same_dims(p->student_top, p->teacher_top, "c", "params->student_top", "params->teacher_top")
        .dtype(p->dtype, "params->dtype")
        .finite(p->weight, "params->weight");
    if (!check.ok()) return check;
    const auto geo = geometry(p);
    const auto hw = [](const kdfFeatureMap_t& m) { return std::to_string(m.h) + "x" + std::to_string(m.w); };
    if (!geo.s.pool.comparable)
        return check.fail(KDF_STATUS_SHAPE_MISMATCH, "params->student_bot (h x w " + hw(p->student_bot) +
                                                         ") and params->student_top (" + hw(p->student_top) +
                                                         ") are each larger in one dimension: neither can be pooled to "
                                                         "the other's size");
    if (!geo.t.pool.comparable)
        return check.fail(KDF_STATUS_SHAPE_MISMATCH, "params->teacher_bot (h x w " + hw(p->teacher_bot) +
                                                         ") and params->teacher_top (" + hw(p->teacher_top) +
                                                         ") are each larger in one dimension: neither can be pooled to "
                                                         "the other's size");
    if (!geo.fits)
        return check.fail(KDF_STATUS_NOT_SUPPORTED, "channel counts, h*w, n and channel strides must be < 2^31 (cuBLAS "
                                                    "and grid limits)");
    return check;
}

size_t workspace_bytes(const kdfFSPParams_t* p) { return static_cast<size_t>(kdf::kernels::FSPWorkspace::bytes(geometry(p))); }

}  // namespace

extern "C" {

kdfStatus_t kdfFSPWorkspaceSize(const kdfFSPParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfFSPWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfFSP(kdfHandle_t handle, const kdfFSPParams_t* params, const void* s_bot, const void* s_top,
                   const void* t_bot, const void* t_top, float* loss, void* grad_s_bot, void* grad_s_top,
                   const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                   size_t workspace_bytes_given, kdfStream_t stream)
{
    return kdf::host::guarded("kdfFSP", [&] {
        Checker check("kdfFSP");
        check.handle(handle);
        if (!check_params(check, params).ok()) return check.status();
        const size_t ws_bytes = workspace_bytes(params);
        check.required(s_bot, "s_bot")
            .required(s_top, "s_top")
            .required(t_bot, "t_bot")
            .required(t_top, "t_top")
            .aligned(s_bot, sizeof(float), "s_bot")
            .aligned(s_top, sizeof(float), "s_top")
            .aligned(t_bot, sizeof(float), "t_bot")
            .aligned(t_top, sizeof(float), "t_top")
            .aligned(loss, sizeof(float), "loss")
            .aligned(grad_s_bot, sizeof(float), "grad_s_bot")
            .aligned(grad_s_top, sizeof(float), "grad_s_top")
            .aligned(grad_loss, sizeof(float), "grad_loss")
            .finite(grad_scale, "grad_scale")
            .workspace(workspace, workspace_bytes_given, ws_bytes);
        if (!check.ok()) return check.status();
        using kdf::host::map_bytes;
        const uint64_t bot_bytes = map_bytes(params->student_bot, sizeof(float));
        const uint64_t top_bytes = map_bytes(params->student_top, sizeof(float));
        check.disjoint({{s_bot, bot_bytes, "s_bot", false},
                        {s_top, top_bytes, "s_top", false},
                        {t_bot, map_bytes(params->teacher_bot, sizeof(float)), "t_bot", false},
                        {t_top, map_bytes(params->teacher_top, sizeof(float)), "t_top", false},
                        {grad_loss, sizeof(float), "grad_loss", false},
                        {loss, sizeof(float), "loss", true},
                        {grad_s_bot, bot_bytes, "grad_s_bot", true},
                        {grad_s_top, top_bytes, "grad_s_top", true},
                        {workspace, ws_bytes, "workspace", true}});
        if (!check.ok()) return check.status();
        if (loss == nullptr && grad_s_bot == nullptr && grad_s_top == nullptr) return kdf::host::succeed();

        kdf::kernels::FSPArgs args{};
        args.sb = kdf::Map4d::resolve(params->student_bot);
        args.st = kdf::Map4d::resolve(params->student_top);
        args.tb = kdf::Map4d::resolve(params->teacher_bot);
        args.tt = kdf::Map4d::resolve(params->teacher_top);
        args.geo = geometry(params);
        args.weight = params->weight;
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.s_bot = static_cast<const float*>(s_bot);
        args.s_top = static_cast<const float*>(s_top);
        args.t_bot = static_cast<const float*>(t_bot);
        args.t_top = static_cast<const float*>(t_top);
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s_bot = static_cast<float*>(grad_s_bot);
        args.grad_s_top = static_cast<float*>(grad_s_top);
        args.ws = kdf::kernels::FSPWorkspace::carve(workspace, args.geo);
        args.cublas = handle->cublas;
        args.allow_tf32 = handle->math == KDF_MATH_TF32;
        return kdf::host::launch_status("kdfFSP", kdf::kernels::fsp_launch(args, stream));
    });
}

}  // extern "C"
