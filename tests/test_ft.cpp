// FT through the C API of libkdfuse_sim: golden data (L1 with sign(0) = 0, p2 = 2 and the odd p2 = 3 of
// the seed, p1 != 2, pooled teacher or student, overlapping windows, non-square maps, N = 1, the
// normalisation's eps branch), accumulate/weights/grad_loss/grad_scale, NULL outputs, strided and
// misaligned layouts, launch counts and determinism, the workspace, three layers into one loss, bad inputs.
// FT runs AT's kernels (kernels/common/attention_map.cuh); the suite both share is
// tests/attention_loss_test.h.
#include "attention_loss_test.h"

#include <algorithm>

namespace {

using kdftest::DeviceBuffer;
using kdftest::find_case;

struct FTTraits {
    using Params = kdfFTParams_t;
    static constexpr const char* kName = "ft";
    static constexpr const char* kInit = "KDF_FT_PARAMS_INIT";
    static constexpr const char* kSizeName = "kdfFTWorkspaceSize";
    static constexpr size_t kMinGoldenCases = 17;
    static Params init() { return KDF_FT_PARAMS_INIT; }
    static void load_powers(Params& p, const kdftest::GoldenCase& g)
    {
        p.p1 = static_cast<float>(g.number("p1"));
        p.p2 = static_cast<float>(g.number("p2"));
    }
    static std::vector<std::pair<float Params::*, const char*>> powers()
    {
        return {{&Params::p1, "params->p1"}, {&Params::p2, "params->p2"}};
    }
    static kdfStatus_t size(const Params* p, size_t* bytes) { return kdfFTWorkspaceSize(p, bytes); }
    static kdfStatus_t call(kdfHandle_t h, const Params* p, const void* f_s, const void* f_t, float* loss, void* grad,
                            const float* grad_loss, float grad_scale, int accumulate, void* ws, size_t bytes, cudaStream_t s)
    {
        return kdfFT(h, p, f_s, f_t, loss, grad, grad_loss, grad_scale, accumulate, ws, bytes, s);
    }
};

using FTCases = kdftest::AttentionLoss<FTTraits>;

TEST_F(FTCases, EqualMapsGiveExactlyZero)
{
    // L1 at d = 0: autograd's sign(0) = 0, so identical maps give a zero loss and an exactly zero gradient
    // (not +-1/M): both maps go through the same arithmetic, so d is exactly 0.
    const Case c = load(find_case("ft", "2x3x4x4_equal_maps"));
    DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
    ASSERT_EQ(this->run(c, c.params, fs.get(), ft.get(), loss.get(), grad.get(), 0), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
    EXPECT_EQ(loss.download()[0], 0.0f);
    const auto g = grad.download();
    EXPECT_TRUE(std::all_of(g.begin(), g.end(), [](float v) { return v == 0.0f; }));
}

TEST_F(FTCases, SpecialPathCasesArePresent)
{
    // The golden cases that exercise FT's terms and the kernels' special paths (checked by
    // GoldenCasesFromTheReference): p2 = 2, the seed's signed p2 = 3 (a negative loss), p1 = 1.5 on positive
    // inputs, the eps branch with a non-zero map and with zero maps, a pooled student with overlapping
    // windows and one pooled in two row tiles.
    EXPECT_EQ(load(find_case("ft", "3x4x6x5_p2_2")).params.p2, 2.0f);
    const Case odd = load(find_case("ft", "3x4x6x5_p2_3_odd"));
    EXPECT_EQ(odd.params.p2, 3.0f);
    EXPECT_LT(odd.loss[0], 0.0);
    EXPECT_EQ(load(find_case("ft", "3x4x12x10_p1_1.5_positive")).params.p1, 1.5f);
    EXPECT_EQ(load(find_case("ft", "2x3x4x4_tiny_norm_eps")).params.p1, 2.0f);
    EXPECT_EQ(load(find_case("ft", "2x3x4x4_p1_1_eps")).params.p1, 1.0f);
    EXPECT_EQ(load(find_case("ft", "2x3x11x13_vs_2x5x4x5")).params.teacher.h, 4);
    EXPECT_EQ(load(find_case("ft", "1x2x9x2050_vs_1x1x4x1025_tiles")).params.teacher.w, 1025);  // 2 row tiles
}

}  // namespace

namespace kdftest {
INSTANTIATE_TYPED_TEST_SUITE_P(FT, AttentionLoss, FTTraits);
}  // namespace kdftest
