// kdfOFD, kdfOFDWorkspaceSize and kdfOFDMarginFromBN: validation, workspace layout, launch.
#include "../kernels/ofd.h"
#include "call.h"

using kdf::host::Checker;

namespace {

Checker& check_params(Checker& check, const kdfOFDParams_t* p)
{
    if (!check.params(p, "KDF_OFD_PARAMS_INIT").ok()) return check;
    return check.feature_map(p->student, "params->student")
        .feature_map(p->teacher, "params->teacher")
        .same_dims(p->student, p->teacher, "nchw", "params->student", "params->teacher")
        .dtype(p->dtype, "params->dtype")
        .one_of(p->variant, {KDF_OFD_SEED, KDF_OFD_ORIGINAL}, "params->variant", "kdfOFDVariant_t")
        .finite(p->weight, "params->weight");
}

bool seed_variant(const kdfOFDParams_t* p) { return kdf::host::enum_value(p->variant) == KDF_OFD_SEED; }

size_t workspace_bytes(const kdfOFDParams_t* p)
{
    return kdf::kernels::ofd_workspace(kdf::Map4d::resolve(p->student), seed_variant(p), nullptr).bytes;
}

}  // namespace

extern "C" {

kdfStatus_t kdfOFDWorkspaceSize(const kdfOFDParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfOFDWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfOFD(kdfHandle_t handle, const kdfOFDParams_t* params, const void* s, const void* t, const float* margin,
                   float* loss, void* grad_s, const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                   size_t workspace_bytes_given, kdfStream_t stream)
{
    return kdf::host::guarded("kdfOFD", [&] {
        Checker check("kdfOFD");
        check.handle(handle);
        if (!check_params(check, params).ok()) return check.status();
        const bool seed = seed_variant(params);
        if (seed && margin != nullptr)
            return check.fail(KDF_STATUS_INVALID_VALUE,
                              "margin must be NULL with KDF_OFD_SEED (the margin is computed from t; pass it with "
                              "KDF_OFD_ORIGINAL)")
                .status();
        if (!seed) check.required(margin, "margin (C floats, required with KDF_OFD_ORIGINAL)");
        const size_t ws_bytes = workspace_bytes(params);
        check.student_teacher(s, t, loss, grad_s, grad_loss, grad_scale, "s", "t")
            .aligned(margin, sizeof(float), "margin")
            .workspace(workspace, workspace_bytes_given, ws_bytes);
        if (!check.ok()) return check.status();
        const auto [s_bytes, t_bytes] = kdf::host::student_teacher_bytes(params);
        check.disjoint({{s, s_bytes, "s", false},
                        {t, t_bytes, "t", false},
                        {margin, sizeof(float) * uint64_t(params->student.c), "margin", false},
                        {grad_loss, sizeof(float), "grad_loss", false},
                        {loss, sizeof(float), "loss", true},
                        {grad_s, s_bytes, "grad_s", true},
                        {workspace, ws_bytes, "workspace", true}});
        if (!check.ok()) return check.status();
        if (loss == nullptr && grad_s == nullptr) return kdf::host::succeed();

        kdf::kernels::OFDArgs args{};
        args.s = kdf::Map4d::resolve(params->student);
        args.t = kdf::Map4d::resolve(params->teacher);
        args.seed = seed;
        args.weight = params->weight;
        // Seed: mean over the N*C*H*W elements; original: sum / N / 1000. Formed in double.
        args.scale = static_cast<float>(seed ? 1.0 / static_cast<double>(args.s.numel())
                                             : 1.0 / (1000.0 * static_cast<double>(args.s.n)));
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.f_s = static_cast<const float*>(s);
        args.f_t = static_cast<const float*>(t);
        args.margin = margin;
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s = static_cast<float*>(grad_s);
        args.ws = kdf::kernels::ofd_workspace(args.s, seed, workspace);
        return kdf::host::cuda_status("kdfOFD", kdf::kernels::ofd_launch(args, stream));
    });
}

kdfStatus_t kdfOFDMarginFromBN(kdfHandle_t handle, int64_t channels, const float* gamma, const float* beta, float* margin,
                               kdfStream_t stream)
{
    return kdf::host::guarded("kdfOFDMarginFromBN", [&] {
        Checker check("kdfOFDMarginFromBN");
        check.handle(handle)
            .at_least(channels, 1, "channels")
            .required(gamma, "gamma")
            .required(beta, "beta")
            .required(margin, "margin")
            .aligned(gamma, sizeof(float), "gamma")
            .aligned(beta, sizeof(float), "beta")
            .aligned(margin, sizeof(float), "margin")
            .extent(channels, 1, "channels");
        if (!check.ok()) return check.status();
        // Element c of margin depends on element c of gamma and beta only: margin may be gamma or beta exactly
        // (in place), but not overlap them otherwise.
        const uint64_t bytes = sizeof(float) * uint64_t(channels);
        check.disjoint({{margin == gamma ? nullptr : gamma, bytes, "gamma", false},
                        {margin == beta ? nullptr : beta, bytes, "beta", false},
                        {margin, bytes, "margin", true}});
        if (!check.ok()) return check.status();
        return kdf::host::cuda_status("kdfOFDMarginFromBN",
                                      kdf::kernels::ofd_margin_from_bn_launch(channels, gamma, beta, margin, stream));
    });
}

}  // extern "C"
