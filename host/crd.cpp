// kdfCRD, kdfCRDWorkspaceSize and kdfCRDDrawContrast: validation, workspace layout, launch.
#include "../kernels/crd.h"
#include "call.h"

#include <string>

using kdf::host::Checker;

namespace {

kdf::kernels::CRDGeometry geometry(const kdfCRDParams_t* p)
{
    return kdf::kernels::CRDGeometry::of(p->rows, p->dim, p->k);
}

Checker& flag(Checker& check, int value, const char* name)
{
    if (check.ok() && value != 0 && value != 1)
        check.fail(KDF_STATUS_INVALID_VALUE, std::string(name) + " must be 0 or 1 (got " + std::to_string(value) + ")");
    return check;
}

Checker& unit_interval(Checker& check, float value, const char* name)
{
    if (check.ok() && !(value >= 0.0f && value <= 1.0f))
        check.fail(KDF_STATUS_INVALID_VALUE, std::string(name) + " must be in [0, 1] (got " + std::to_string(value) + ")");
    return check;
}

// Checks that depend on the params only (shared by the size query and the calls).
Checker& check_params(Checker& check, const kdfCRDParams_t* p)
{
    if (!check.params(p, "KDF_CRD_PARAMS_INIT").ok()) return check;
    check.at_least(p->rows, 1, "params->rows")
        .at_least(p->dim, 1, "params->dim")
        .at_least(p->ld_student, 0, "params->ld_student")
        .at_least(p->ld_teacher, 0, "params->ld_teacher")
        .at_least(p->n_data, 1, "params->n_data")
        .at_least(p->k, 1, "params->k")
        .at_least(kdf::host::leading_dim(p->ld_student, p->dim), p->dim, "params->ld_student")
        .at_least(kdf::host::leading_dim(p->ld_teacher, p->dim), p->dim, "params->ld_teacher")
        .extent(p->rows, kdf::host::leading_dim(p->ld_student, p->dim), "v_s")
        .extent(p->rows, kdf::host::leading_dim(p->ld_teacher, p->dim), "v_t")
        .extent(p->n_data, p->dim, "memory_s")
        .dtype(p->dtype, "params->dtype")
        .one_of(p->index_type, {KDF_INDEX_INT32, KDF_INDEX_INT64}, "params->index_type", "kdfIndexType_t")
        .one_of(p->z_mode, {KDF_CRD_Z_ONCE, KDF_CRD_Z_EMA}, "params->z_mode", "kdfCRDZMode_t")
        .positive_finite(p->temperature, "params->temperature")
        .finite(p->weight, "params->weight");
    unit_interval(check, p->momentum, "params->momentum");
    unit_interval(check, p->z_momentum, "params->z_momentum");
    flag(check, p->normalize_inputs, "params->normalize_inputs");
    flag(check, p->update_memory, "params->update_memory");
    flag(check, p->draw_contrast, "params->draw_contrast");
    if (!check.ok()) return check;
    if (p->dim > kdf::kernels::kCRDMaxDim)
        return check.fail(KDF_STATUS_NOT_SUPPORTED, "params->dim must be <= " + std::to_string(kdf::kernels::kCRDMaxDim) +
                                                        " (got " + std::to_string(p->dim) + ")");
    if (p->temperature < 1.0f / 64.0f)
        return check.fail(KDF_STATUS_NOT_SUPPORTED, "params->temperature must be >= 1/64 (got " + std::to_string(p->temperature) +
                                                        "): Z = mean(exp(<m, v> / T)) * n_data would overflow fp32");
    if (p->k > (int64_t(1) << 40))
        return check.fail(KDF_STATUS_INVALID_VALUE, "params->k must be <= 2^40 (got " + std::to_string(p->k) + ")");
    if (p->index_type == KDF_INDEX_INT32 && p->n_data > 2147483647)
        return check.fail(KDF_STATUS_INVALID_VALUE, "params->n_data (" + std::to_string(p->n_data) +
                                                        ") does not fit KDF_INDEX_INT32 indices");
    if (!geometry(p).fits)
        return check.fail(KDF_STATUS_NOT_SUPPORTED, "params->rows * ceil((params->k + 1) / 1024) * 2 must be < 2^31 (grid limit)");
    return check;
}

size_t workspace_bytes(const kdfCRDParams_t* p) { return static_cast<size_t>(kdf::kernels::CRDWorkspace::bytes(geometry(p))); }

size_t index_bytes(const kdfCRDParams_t* p) { return p->index_type == KDF_INDEX_INT64 ? 8 : 4; }

// Extents of idx (N indices) and contrast_idx (N x (K+1)) for the aliasing rule.
uint64_t idx_extent(const kdfCRDParams_t* p) { return index_bytes(p) * uint64_t(p->rows); }
uint64_t contrast_extent(const kdfCRDParams_t* p) { return idx_extent(p) * uint64_t(p->k + 1); }

kdf::kernels::CRDArgs make_args(const kdfCRDParams_t* p)
{
    kdf::kernels::CRDArgs a{};
    a.geo = geometry(p);
    a.n_data = p->n_data;
    a.ld_s = kdf::host::leading_dim(p->ld_student, p->dim);
    a.ld_t = kdf::host::leading_dim(p->ld_teacher, p->dim);
    a.temperature = p->temperature;
    a.momentum = p->momentum;
    a.z_ema = p->z_mode == KDF_CRD_Z_EMA;
    a.z_momentum = p->z_momentum;
    a.normalize = p->normalize_inputs != 0;
    a.update = p->update_memory != 0;
    a.draw = p->draw_contrast != 0;
    a.index64 = p->index_type == KDF_INDEX_INT64;
    a.seed = p->seed;
    a.offset = p->offset;
    a.weight = p->weight;
    return a;
}

}  // namespace

extern "C" {

kdfStatus_t kdfCRDWorkspaceSize(const kdfCRDParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfCRDWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfCRD(kdfHandle_t handle, const kdfCRDParams_t* params, const void* v_s, const void* v_t, void* memory_s,
                   void* memory_t, const void* idx, const void* contrast_idx, float* z, int32_t* index_status, float* loss, void* grad_s,
                   void* grad_t, const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                   size_t workspace_bytes_given, kdfStream_t stream)
{
    return kdf::host::guarded("kdfCRD", [&] {
        Checker check("kdfCRD");
        check.handle(handle);
        if (!check_params(check, params).ok()) return check.status();
        const size_t ws_bytes = workspace_bytes(params);
        const bool draw = params->draw_contrast != 0, update = params->update_memory != 0;
        check.required(v_s, "v_s").required(v_t, "v_t").required(memory_s, "memory_s").required(memory_t, "memory_t")
            .required(z, "z");
        if (update) check.required(idx, "idx (update_memory = 1 updates the banks at idx)");
        if (draw) check.required(idx, "idx (draw_contrast = 1 takes the positives from idx)");
        if (!draw) check.required(contrast_idx, "contrast_idx (draw_contrast = 0)");
        if (check.ok() && draw && contrast_idx != nullptr)
            return check.fail(KDF_STATUS_INVALID_VALUE, "contrast_idx must be NULL when params->draw_contrast = 1").status();
        check.aligned(v_s, sizeof(float), "v_s")
            .aligned(v_t, sizeof(float), "v_t")
            .aligned(memory_s, sizeof(float), "memory_s")
            .aligned(memory_t, sizeof(float), "memory_t")
            .aligned(idx, index_bytes(params), "idx")
            .aligned(contrast_idx, index_bytes(params), "contrast_idx")
            .aligned(z, sizeof(float), "z")
            .aligned(index_status, sizeof(int32_t), "index_status")
            .aligned(loss, sizeof(float), "loss")
            .aligned(grad_s, sizeof(float), "grad_s")
            .aligned(grad_t, sizeof(float), "grad_t")
            .aligned(grad_loss, sizeof(float), "grad_loss")
            .finite(grad_scale, "grad_scale")
            .workspace(workspace, workspace_bytes_given, ws_bytes);
        if (!check.ok()) return check.status();
        using kdf::host::rows_bytes;
        const int64_t n = params->rows, d = params->dim;
        const uint64_t s_bytes = rows_bytes(n, d, kdf::host::leading_dim(params->ld_student, d), sizeof(float));
        const uint64_t t_bytes = rows_bytes(n, d, kdf::host::leading_dim(params->ld_teacher, d), sizeof(float));
        const uint64_t bank_bytes = rows_bytes(params->n_data, d, d, sizeof(float));
        check.disjoint({{v_s, s_bytes, "v_s", false},
                        {v_t, t_bytes, "v_t", false},
                        {idx, idx_extent(params), "idx", false},
                        {contrast_idx, contrast_extent(params), "contrast_idx", false},
                        {grad_loss, sizeof(float), "grad_loss", false},
                        {memory_s, bank_bytes, "memory_s", true},
                        {memory_t, bank_bytes, "memory_t", true},
                        {z, 2 * sizeof(float), "z", true},
                        {index_status, sizeof(int32_t), "index_status", true},
                        {loss, sizeof(float), "loss", true},
                        {grad_s, s_bytes, "grad_s", true},
                        {grad_t, t_bytes, "grad_t", true},
                        {workspace, ws_bytes, "workspace", true}});
        if (!check.ok()) return check.status();
        if (loss == nullptr && grad_s == nullptr && grad_t == nullptr && !update && index_status == nullptr)
            return kdf::host::succeed();

        kdf::kernels::CRDArgs args = make_args(params);
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.v_s = static_cast<const float*>(v_s);
        args.v_t = static_cast<const float*>(v_t);
        args.memory_s = static_cast<float*>(memory_s);
        args.memory_t = static_cast<float*>(memory_t);
        args.idx = idx;
        args.contrast = contrast_idx;
        args.z = z;
        args.index_status = index_status;
        args.step = loss != nullptr || grad_s != nullptr || grad_t != nullptr || update;
        args.grad_loss = grad_loss;
        args.loss = loss;
        args.grad_s = static_cast<float*>(grad_s);
        args.grad_t = static_cast<float*>(grad_t);
        args.ws = kdf::kernels::CRDWorkspace::carve(workspace, args.geo);
        return kdf::host::launch_status("kdfCRD", kdf::kernels::crd_launch(args, stream));
    });
}

kdfStatus_t kdfCRDDrawContrast(kdfHandle_t handle, const kdfCRDParams_t* params, const void* idx, void* contrast_idx,
                               kdfStream_t stream)
{
    return kdf::host::guarded("kdfCRDDrawContrast", [&] {
        Checker check("kdfCRDDrawContrast");
        check.handle(handle);
        if (!check_params(check, params).ok()) return check.status();
        check.required(idx, "idx")
            .required(contrast_idx, "contrast_idx")
            .aligned(idx, index_bytes(params), "idx")
            .aligned(contrast_idx, index_bytes(params), "contrast_idx")
            .disjoint({{idx, idx_extent(params), "idx", false}, {contrast_idx, contrast_extent(params), "contrast_idx", true}});
        if (!check.ok()) return check.status();
        kdf::kernels::CRDArgs args = make_args(params);
        args.draw = true;
        args.idx = idx;
        return kdf::host::cuda_status("kdfCRDDrawContrast", kdf::kernels::crd_draw_launch(args, contrast_idx, stream));
    });
}

}  // extern "C"
