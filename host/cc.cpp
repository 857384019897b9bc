// kdfCC and kdfCCWorkspaceSize: validation, workspace layout, launch (both variants).
#include "../kernels/cc.h"
#include "call.h"

using kdf::host::Checker;

namespace {

constexpr int64_t kMaxGramRows = 46339;  // (N+1) x (N+1) fits int (cuBLAS sizes, grid indexing; the mean row)

bool shipped(const kdfCCParams_t* p) { return static_cast<int>(p->variant) == KDF_CC_REPDISTILLER; }

Checker& check_params(Checker& check, const kdfCCParams_t* p)
{
    if (!check.params(p, "KDF_CC_PARAMS_INIT").ok()) return check;
    if (!check.one_of(p->variant, {KDF_CC_SEED, KDF_CC_REPDISTILLER}, "params->variant", "kdfCCVariant_t").ok()) return check;
    // The Gram version builds N x N matrices with cuBLAS; the shipped variant streams rows without GEMMs.
    check.embeddings(p->rows, p->dim_student, p->dim_teacher, p->ld_student, p->ld_teacher,
                     shipped(p) ? INT64_MAX : kMaxGramRows, !shipped(p), "f_s", "f_t");
    if (check.ok() && shipped(p) && p->dim_student != p->dim_teacher)
        return check.fail(KDF_STATUS_SHAPE_MISMATCH, "params->dim_student (" + std::to_string(p->dim_student) +
                                                         ") != params->dim_teacher (" + std::to_string(p->dim_teacher) +
                                                         ") (KDF_CC_REPDISTILLER compares f_s and f_t elementwise)");
    return check.dtype(p->dtype, "params->dtype")
        .finite(p->weight, "params->weight");
}

size_t workspace_bytes(const kdfCCParams_t* p)
{
    return kdf::kernels::cc_workspace_bytes(p->rows, p->dim_student, p->dim_teacher, shipped(p));
}

}  // namespace

extern "C" {

kdfStatus_t kdfCCWorkspaceSize(const kdfCCParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfCCWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfCC(kdfHandle_t handle, const kdfCCParams_t* params, const void* f_s, const void* f_t, float* loss,
                  void* grad_s, void* grad_t, const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                  size_t workspace_bytes_given, kdfStream_t stream)
{
    return kdf::host::guarded("kdfCC", [&] {
        Checker check("kdfCC");
        check.handle(handle);
        if (!check_params(check, params).ok()) return check.status();
        if (!shipped(params) && grad_t != nullptr)
            return check.fail(KDF_STATUS_INVALID_VALUE, "grad_t must be NULL for KDF_CC_SEED (the teacher is a constant; "
                                                        "KDF_CC_REPDISTILLER trains both embeddings)")
                .status();
        const size_t ws_bytes = workspace_bytes(params);
        check.student_teacher(f_s, f_t, loss, grad_s, grad_loss, grad_scale, "f_s", "f_t")
            .aligned(grad_t, sizeof(float), "grad_t")
            .workspace(workspace, workspace_bytes_given, ws_bytes);
        if (!check.ok()) return check.status();
        const auto [s_bytes, t_bytes] = kdf::host::student_teacher_bytes(params);
        check.disjoint({{f_s, s_bytes, "f_s", false},
                        {f_t, t_bytes, "f_t", false},
                        {grad_loss, sizeof(float), "grad_loss", false},
                        {loss, sizeof(float), "loss", true},
                        {grad_s, s_bytes, "grad_s", true},
                        {grad_t, t_bytes, "grad_t", true},
                        {workspace, ws_bytes, "workspace", true}});
        if (!check.ok()) return check.status();
        if (loss == nullptr && grad_s == nullptr && grad_t == nullptr) return kdf::host::succeed();

        kdf::kernels::CCArgs args{};
        args.n = params->rows;
        args.ds = params->dim_student;
        args.dt = params->dim_teacher;
        args.ld_s = kdf::host::leading_dim(params->ld_student, params->dim_student);
        args.ld_t = kdf::host::leading_dim(params->ld_teacher, params->dim_teacher);
        args.shipped = shipped(params);
        args.weight = params->weight;
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.f_s = static_cast<const float*>(f_s);
        args.f_t = static_cast<const float*>(f_t);
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s = static_cast<float*>(grad_s);
        args.grad_t = static_cast<float*>(grad_t);
        if (args.shipped)
            args.sum = kdf::GridSum::carve(workspace, kdf::kernels::cc_shipped_blocks(args.n, args.ds));
        else
            args.ws = kdf::kernels::CentredGramWorkspace::carve(workspace, args.n, args.ds, args.dt,
                                                               kdf::kernels::cc_seed_blocks(args.n));
        args.cublas = handle->cublas;
        args.allow_tf32 = handle->math == KDF_MATH_TF32;
        return kdf::host::launch_status("kdfCC", kdf::kernels::cc_launch(args, stream));
    });
}

}  // extern "C"
