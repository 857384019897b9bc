// AT through the C API of libkdfuse_sim: golden data (pooled teacher or student, overlapping windows,
// non-square maps, N = 1, p != 2, the normalisation's eps branch), accumulate/weights/grad_loss/grad_scale,
// NULL outputs, strided and misaligned layouts, launch counts and determinism, the workspace at
// RepDistiller's shapes, three layers summed into one loss, bad inputs (the suite shared with FT:
// tests/attention_loss_test.h).
#include "attention_loss_test.h"

#include <algorithm>

namespace {

using kdftest::find_case;

struct ATTraits {
    using Params = kdfATParams_t;
    static constexpr const char* kName = "at";
    static constexpr const char* kInit = "KDF_AT_PARAMS_INIT";
    static constexpr const char* kSizeName = "kdfATWorkspaceSize";
    static constexpr size_t kMinGoldenCases = 16;
    static Params init() { return KDF_AT_PARAMS_INIT; }
    static void load_powers(Params& p, const kdftest::GoldenCase& g) { p.p = static_cast<float>(g.number("p")); }
    static std::vector<std::pair<float Params::*, const char*>> powers() { return {{&Params::p, "params->p"}}; }
    static kdfStatus_t size(const Params* p, size_t* bytes) { return kdfATWorkspaceSize(p, bytes); }
    static kdfStatus_t call(kdfHandle_t h, const Params* p, const void* f_s, const void* f_t, float* loss, void* grad,
                            const float* grad_loss, float grad_scale, int accumulate, void* ws, size_t bytes, cudaStream_t s)
    {
        return kdfAT(h, p, f_s, f_t, loss, grad, grad_loss, grad_scale, accumulate, ws, bytes, s);
    }
};

using ATCases = kdftest::AttentionLoss<ATTraits>;

TEST_F(ATCases, SpecialPathCasesArePresent)
{
    // The golden cases that exercise the kernels' special paths (GoldenCasesFromTheReference checks them):
    // F.normalize's eps branch with a non-zero map (0 < ||v_s|| < 1e-12) and with zero maps (p = 1,
    // cancelling channels), a non-integer p on positive inputs, overlapping windows of a pooled student, one
    // pooled in two row tiles.
    EXPECT_EQ(load(kdftest::find_case("at", "2x3x4x4_tiny_norm_eps")).params.p, 2.0f);
    EXPECT_EQ(load(kdftest::find_case("at", "2x3x4x4_p1_eps")).params.p, 1.0f);
    const Case p25 = load(kdftest::find_case("at", "3x4x12x10_p2.5_positive"));
    EXPECT_EQ(p25.params.p, 2.5f);
    EXPECT_TRUE(std::all_of(p25.f_s.begin(), p25.f_s.end(), [](float v) { return v >= 0.0f; }));
    EXPECT_EQ(load(kdftest::find_case("at", "2x3x11x13_vs_2x5x4x5")).params.teacher.h, 4);
    EXPECT_EQ(load(kdftest::find_case("at", "1x2x9x2050_vs_1x1x4x1025_tiles")).params.teacher.w, 1025);  // 2 row tiles
}

}  // namespace

namespace kdftest {
INSTANTIATE_TYPED_TEST_SUITE_P(AT, AttentionLoss, ATTraits);
}  // namespace kdftest
