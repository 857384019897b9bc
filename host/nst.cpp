// kdfNST and kdfNSTWorkspaceSize: validation, workspace layout, launch.
#include "../kernels/nst.h"
#include "call.h"

using kdf::host::Checker;

namespace {

Checker& check_params(Checker& check, const kdfNSTParams_t* p)
{
    if (!check.params(p, "KDF_NST_PARAMS_INIT").ok()) return check;
    check.feature_map(p->student, "params->student")
        .feature_map(p->teacher, "params->teacher")
        .same_dims(p->student, p->teacher, "n", "params->student", "params->teacher")
        .dtype(p->dtype, "params->dtype")
        .finite(p->weight, "params->weight");
    if (check.ok() && p->full_loss != 0 && p->full_loss != 1)
        check.fail(KDF_STATUS_INVALID_VALUE, "params->full_loss must be 0 or 1 (got " + std::to_string(p->full_loss) + ")");
    if (!check.ok()) return check;
    const auto geo = kdf::kernels::NSTGeometry::of(kdf::Map4d::resolve(p->student), kdf::Map4d::resolve(p->teacher));
    const auto hw = [](const kdfFeatureMap_t& m) { return std::to_string(m.h) + "x" + std::to_string(m.w); };
    if (!geo.pool.comparable)
        return check.fail(KDF_STATUS_SHAPE_MISMATCH, "params->student (h x w " + hw(p->student) + ") and params->teacher (" +
                                                         hw(p->teacher) +
                                                         ") are each larger in one dimension: neither can be pooled to "
                                                         "the other's size");
    if (!geo.fits)
        return check.fail(KDF_STATUS_NOT_SUPPORTED, "params->student.c + params->teacher.c must be <= 46340 and "
                                                    "n * (student.c + teacher.c) < 2^31 (cuBLAS and grid limits)");
    return check;
}

kdf::kernels::NSTGeometry geometry(const kdfNSTParams_t* p)
{
    return kdf::kernels::NSTGeometry::of(kdf::Map4d::resolve(p->student), kdf::Map4d::resolve(p->teacher));
}

size_t workspace_bytes(const kdfNSTParams_t* p)
{
    return static_cast<size_t>(kdf::kernels::NSTWorkspace::bytes(geometry(p)));
}

}  // namespace

extern "C" {

kdfStatus_t kdfNSTWorkspaceSize(const kdfNSTParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfNSTWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfNST(kdfHandle_t handle, const kdfNSTParams_t* params, const void* f_s, const void* f_t, float* loss,
                   void* grad_s, const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                   size_t workspace_bytes_given, kdfStream_t stream)
{
    const kdf::host::StudentTeacherIO io{f_s, f_t, loss, grad_s, grad_loss, grad_scale, workspace, workspace_bytes_given};
    return kdf::host::student_teacher_call("kdfNST", handle, params, io, check_params, workspace_bytes, [&] {
        kdf::kernels::NSTArgs args{};
        args.s = kdf::Map4d::resolve(params->student);
        args.t = kdf::Map4d::resolve(params->teacher);
        args.geo = geometry(params);
        args.full_loss = params->full_loss != 0;
        args.weight = params->weight;
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.f_s = static_cast<const float*>(f_s);
        args.f_t = static_cast<const float*>(f_t);
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s = static_cast<float*>(grad_s);
        args.ws = kdf::kernels::NSTWorkspace::carve(workspace, args.geo);
        args.cublas = handle->cublas;
        args.allow_tf32 = handle->math == KDF_MATH_TF32;
        return kdf::kernels::nst_launch(args, stream);
    });
}

}  // extern "C"
