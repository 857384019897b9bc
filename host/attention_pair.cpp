// The student/teacher pair shared by AT and FT: validation, workspace, kernel arguments.
#include "attention_pair.h"

namespace kdf::host {

// The student/teacher pair of AT and FT: valid maps with the same n, one at least as large as the other
// in both h and w, and launch geometry this build supports.
Checker& check_attention_pair(Checker& check, const kdfFeatureMap_t& s, const kdfFeatureMap_t& t)
{
    check.feature_map(s, "params->student").feature_map(t, "params->teacher").same_dims(s, t, "n", "params->student",
                                                                                         "params->teacher");
    if (!check.ok()) return check;
    const auto geo = kdf::kernels::AttentionGeometry::of(Map4d::resolve(s), Map4d::resolve(t));
    const auto hw = [](const kdfFeatureMap_t& m) { return std::to_string(m.h) + "x" + std::to_string(m.w); };
    if (!geo.comparable)
        return check.fail(KDF_STATUS_SHAPE_MISMATCH, "params->student (h x w " + hw(s) + ") and params->teacher (" + hw(t) +
                                                         ") are each larger in one dimension: neither can be pooled to "
                                                         "the other's size");
    if (geo.pool_student && geo.w > kdf::kernels::kAttentionMaxPooledWidth)
        return check.fail(KDF_STATUS_NOT_SUPPORTED, "params->student is pooled to width " + std::to_string(geo.w) +
                                                        ", more than the " +
                                                        std::to_string(kdf::kernels::kAttentionMaxPooledWidth) +
                                                        " supported");
    if (!geo.fits)
        return check.fail(KDF_STATUS_NOT_SUPPORTED, "params->student and params->teacher are too large for this build's "
                                                    "kernels (grid of 2^31 blocks; a pooled student needs (h+1)*(h'+1) "
                                                    "and (w+1)*(w'+1) below 2^31 for the pooled h' x w')");
    return check;
}

size_t attention_workspace_bytes(const kdfFeatureMap_t& s, const kdfFeatureMap_t& t)
{
    const Map4d ms = Map4d::resolve(s);
    return static_cast<size_t>(kernels::AttentionWorkspace::bytes(ms, kernels::AttentionGeometry::of(ms, Map4d::resolve(t))));
}

kernels::AttentionArgs attention_args(const kdfFeatureMap_t& s, const kdfFeatureMap_t& t, float p, float p2, float weight,
                                      const StudentTeacherIO& io, int accumulate)
{
    kernels::AttentionArgs args{};
    args.s = Map4d::resolve(s);
    args.t = Map4d::resolve(t);
    args.geo = kernels::AttentionGeometry::of(args.s, args.t);
    args.p = p;
    args.p2 = p2;
    args.weight = weight;
    args.grad_scale = io.grad_scale;
    args.accumulate = accumulate != 0;
    args.f_s = static_cast<const float*>(io.s);
    args.f_t = static_cast<const float*>(io.t);
    args.grad_loss = io.grad_loss;
    args.loss = io.loss;
    args.grad_s = static_cast<float*>(io.grad_s);
    args.ws = kernels::AttentionWorkspace::carve(io.workspace, args.s, args.geo);
    return args;
}

}  // namespace kdf::host
