// kdfKDSVD and kdfKDSVDWorkspaceSize: validation, workspace layout, launch.
#include "../kernels/kdsvd.h"
#include "call.h"

#include <algorithm>
#include <string>
#include <vector>

using kdf::host::Checker;

namespace {

using kdf::kernels::KDSVDGeometry;

// The layout for a Jacobi kernel with smem_limit bytes of dynamic shared memory: the portable limit for the
// workspace size (shapes alone), the device's for a call.
KDSVDGeometry geometry(const kdfKDSVDParams_t* p, size_t smem_limit = kdf::kernels::kPortableDynamicSmem)
{
    kdf::Map4d s[KDF_KDSVD_MAX_LAYERS], t[KDF_KDSVD_MAX_LAYERS];
    for (int l = 0; l < p->num_layers; ++l) s[l] = kdf::Map4d::resolve(p->student[l]), t[l] = kdf::Map4d::resolve(p->teacher[l]);
    return KDSVDGeometry::of(p->num_layers, s, t, p->k, static_cast<int64_t>(smem_limit));
}

std::string map_name(const char* network, int l) { return "params->" + std::string(network) + "[" + std::to_string(l) + "]"; }

Checker& check_params(Checker& check, const kdfKDSVDParams_t* p)
{
    if (!check.params(p, "KDF_KDSVD_PARAMS_INIT").ok()) return check;
    if (p->num_layers < 2 || p->num_layers > KDF_KDSVD_MAX_LAYERS)
        return check.fail(KDF_STATUS_INVALID_VALUE, "params->num_layers must be in [2, " + std::to_string(KDF_KDSVD_MAX_LAYERS) +
                                                        "] (the losses are between consecutive layers), got " +
                                                        std::to_string(p->num_layers));
    if (p->k < 1 || p->k > KDF_KDSVD_MAX_K)
        return check.fail(KDF_STATUS_INVALID_VALUE, "params->k must be in [1, " + std::to_string(KDF_KDSVD_MAX_K) + "], got " +
                                                        std::to_string(p->k));
    check.dtype(p->dtype, "params->dtype").finite(p->weight, "params->weight");
    if (check.ok() && !(p->gap_rtol >= 0.0f && p->gap_rtol < 1.0f))
        check.fail(KDF_STATUS_INVALID_VALUE, "params->gap_rtol must be in [0, 1), got " + std::to_string(p->gap_rtol));
    for (int l = 0; l < p->num_layers && check.ok(); ++l) {
        const std::string s = map_name("student", l), t = map_name("teacher", l);
        check.feature_map(p->student[l], s).feature_map(p->teacher[l], t);
        check.same_dims(p->student[0], p->student[l], "n", map_name("student", 0), s).same_dims(p->student[l], p->teacher[l], "nc", s, t);
        for (const auto& [m, name] : {std::pair{&p->student[l], &s}, std::pair{&p->teacher[l], &t}}) {
            if (!check.ok()) break;
            if (m->h != m->w)
                check.fail(KDF_STATUS_NOT_SUPPORTED, *name + " is " + std::to_string(m->h) + " x " + std::to_string(m->w) +
                                                         ": KDSVD takes square maps (the seed's view(-1, C, H*H) regroups "
                                                         "the samples of a non-square map)");
            else if (m->c > KDF_KDSVD_MAX_RANK && m->h * m->w > KDF_KDSVD_MAX_RANK)
                check.fail(KDF_STATUS_NOT_SUPPORTED, *name + ": min(c, h*w) must be <= " + std::to_string(KDF_KDSVD_MAX_RANK) +
                                                         " (the order of the Gram decomposed on chip), got c = " + std::to_string(m->c) +
                                                         ", h*w = " + std::to_string(m->h * m->w));
        }
        if (check.ok() && p->k > p->teacher[l].c) check.fail(KDF_STATUS_INVALID_VALUE, "params->k (" + std::to_string(p->k) +
                                                                                        ") exceeds " + t + ".c");
        if (check.ok() && p->k > p->teacher[l].h * p->teacher[l].w)
            check.fail(KDF_STATUS_INVALID_VALUE, "params->k (" + std::to_string(p->k) + ") exceeds " + t + ".h * w");
    }
    if (check.ok() && !geometry(p).fits)
        check.fail(KDF_STATUS_NOT_SUPPORTED, "channel counts, h*w and channel strides must be < 2^31, 2 * num_layers * n and "
                                             "n * ceil(h*w / 32) summed over the layers <= 2^31 - 1 (cuBLAS and grid "
                                             "limits), and n * c <= 2^36 per layer (the workspace)");
    return check;
}

size_t workspace_bytes(const kdfKDSVDParams_t* p) { return static_cast<size_t>(kdf::kernels::KDSVDWorkspace::bytes(geometry(p))); }

}  // namespace

extern "C" {

kdfStatus_t kdfKDSVDWorkspaceSize(const kdfKDSVDParams_t* params, size_t* bytes)
{
    return kdf::host::workspace_size_query("kdfKDSVDWorkspaceSize", params, bytes, check_params, workspace_bytes);
}

kdfStatus_t kdfKDSVD(kdfHandle_t handle, const kdfKDSVDParams_t* params, const void* const* f_s, const void* const* f_t,
                     float* loss, void* const* grad_s, const float* grad_loss, float grad_scale, int accumulate,
                     void* workspace, size_t workspace_bytes_given, kdfStream_t stream)
{
    return kdf::host::guarded("kdfKDSVD", [&] {
        Checker check("kdfKDSVD");
        check.handle(handle);
        if (!check_params(check, params).ok()) return check.status();
        const size_t ws_bytes = workspace_bytes(params);
        const int layers = params->num_layers;
        check.required(f_s, "f_s").required(f_t, "f_t");
        std::vector<std::string> names;  // stable storage for the Buffer names below
        names.reserve(3 * layers);
        for (int l = 0; l < layers && check.ok(); ++l) {
            const std::string i = "[" + std::to_string(l) + "]";
            names.push_back("f_s" + i), names.push_back("f_t" + i), names.push_back("grad_s" + i);
            const char *s = names[3 * l].c_str(), *t = names[3 * l + 1].c_str(), *gs = names[3 * l + 2].c_str();
            check.required(f_s[l], s).required(f_t[l], t).aligned(f_s[l], sizeof(float), s).aligned(f_t[l], sizeof(float), t);
            if (grad_s != nullptr) check.aligned(grad_s[l], sizeof(float), gs);
        }
        check.aligned(loss, sizeof(float), "loss")
            .aligned(grad_loss, sizeof(float), "grad_loss")
            .finite(grad_scale, "grad_scale")
            .workspace(workspace, workspace_bytes_given, ws_bytes);
        if (!check.ok()) return check.status();
        using kdf::host::Buffer;
        using kdf::host::map_bytes;
        const uint64_t pair_bytes = static_cast<uint64_t>(layers - 1) * sizeof(float);
        std::vector<Buffer> buffers{{grad_loss, pair_bytes, "grad_loss", false}, {loss, pair_bytes, "loss", true}};
        bool any_grad = false;
        for (int l = 0; l < layers; ++l) {
            const uint64_t s_bytes = map_bytes(params->student[l], sizeof(float));
            buffers.push_back({f_s[l], s_bytes, names[3 * l].c_str(), false});
            buffers.push_back({f_t[l], map_bytes(params->teacher[l], sizeof(float)), names[3 * l + 1].c_str(), false});
            if (grad_s != nullptr && grad_s[l] != nullptr) {
                buffers.push_back({grad_s[l], s_bytes, names[3 * l + 2].c_str(), true});
                any_grad = true;
            }
        }
        buffers.push_back({workspace, ws_bytes, "workspace", true});  // last, as in every other entry point
        if (!check.disjoint(buffers).ok()) return check.status();
        if (loss == nullptr && !any_grad) return kdf::host::succeed();

        kdf::kernels::KDSVDArgs args{};
        // Never below the portable limit the workspace was sized with (every device the library runs on allows it).
        const size_t device_limit = kdf::kernels::dynamic_smem_limit(handle->max_smem_optin);
        args.geo = geometry(params, std::max(device_limit, kdf::kernels::kPortableDynamicSmem));
        for (int l = 0; l < layers; ++l) {
            args.ms[l] = kdf::Map4d::resolve(params->student[l]);
            args.mt[l] = kdf::Map4d::resolve(params->teacher[l]);
            args.f_s[l] = static_cast<const float*>(f_s[l]);
            args.f_t[l] = static_cast<const float*>(f_t[l]);
            args.grad_s[l] = grad_s != nullptr ? static_cast<float*>(grad_s[l]) : nullptr;
        }
        args.loss = loss;
        args.grad_loss = grad_loss;
        args.weight = params->weight;
        args.gap_rtol = params->gap_rtol;
        args.grad_scale = grad_scale;
        args.accumulate = accumulate != 0;
        args.any_grad = any_grad;
        args.ws = kdf::kernels::KDSVDWorkspace::carve(workspace, args.geo);
        args.cublas = handle->cublas;
        args.allow_tf32 = handle->math == KDF_MATH_TF32;
        return kdf::host::launch_status("kdfKDSVD", kdf::kernels::kdsvd_launch(args, stream));
    });
}

}  // extern "C"
