// Floating-point contraction in the SIMT build: the mode the library was compiled in (KDFUSE_SIMT_CONTRACT; this
// file gets the library's floating-point flags), and the rounding intrinsics, which no mode may contract (CUDA
// promises they are never merged into a multiply-add).
#include <gtest/gtest.h>

#include "kdfuse/simt/runtime.h"

namespace {

// a * a = 1 + 2^-22 + 2^-46 is inexact: rounded, it is 1 + 2^-22 and a * a + c = 0; fused, the 2^-46 survives.
// volatile: the compiler cannot fold the arithmetic at compile time.
volatile float g_a = 1.0f + 0x1p-23f;
volatile float g_c = -(1.0f + 0x1p-22f);

TEST(SimtContraction, PlainArithmeticFollowsTheBuildsMode)
{
    const float a = g_a, c = g_c;
    const float r = a * a + c;
#if KDFUSE_SIMT_CONTRACT
    EXPECT_EQ(r, 0x1p-46f) << "built with contraction forced on, yet a * a + c was rounded twice";
#else
    EXPECT_EQ(r, 0.0f) << "built without contraction, yet a * a + c was fused";
#endif
}

TEST(SimtContraction, RoundingIntrinsicsAreNeverFused)
{
    const float a = g_a, c = g_c;
    EXPECT_EQ(__fadd_rn(a * a, c), 0.0f);
    EXPECT_EQ(c + __fmul_rn(a, a), 0.0f);
    EXPECT_EQ(__fmul_rn(a, a) + c, 0.0f);
    EXPECT_EQ(__fsub_rn(a * a, -c), 0.0f);
    EXPECT_EQ(__fmaf_rn(a, a, c), 0x1p-46f);
}

}  // namespace
