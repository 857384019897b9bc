// Validation of the student/teacher pair shared by AT and FT.
#include "attention_pair.h"

#include "../kernels/at.h"

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

}  // namespace kdf::host
