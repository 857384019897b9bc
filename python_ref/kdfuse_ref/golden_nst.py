"""Golden cases for NST (see golden.py for the format).

NST's gradients are divided by N C^2 (about 1e-3 .. 1e-7 at weight 1), so, as AT's cases, grad_scale="auto"
picks the power of two that brings max |grad| into [0.5, 1) and every element's relative error is checked.
case.txt: weight, grad_scale, pool ("seed" or "hw"), full_loss (1/0).
"""
from .golden_at import attention_case, inputs, multilayer_case
from .nst import nst_loss


def resnet8x4_pairs(seed, n=2):
    """RepDistiller's NST layers for resnet32x4 -> resnet8x4 (feat[1:-1]: 64x32x32, 128x16x16, 256x8x8)."""
    shapes = [(n, 64, 32, 32), (n, 128, 16, 16), (n, 256, 8, 8)]
    return [tuple(inputs(seed + l, shape, shape)) for l, shape in enumerate(shapes)]


def cases(root):
    def case(name, s_shape, t_shape, seed, pool="seed", full_loss=True, weight=1.0, edit=None, **kw):
        f_s, f_t = inputs(seed, s_shape, t_shape)
        if edit is not None:
            edit(f_s, f_t)
        fn = lambda a, b: nst_loss(a, b, full_loss=full_loss, pool=pool)  # noqa: E731
        attention_case(root, "nst", name, fn, f_s, f_t, weight=weight,
                       params={"pool": pool, "full_loss": str(int(full_loss))}, **kw)

    case("1x1x1x1", (1, 1, 1, 1), (1, 1, 1, 1), seed=0)
    case("1x3x4x4_vs_1x5x4x4", (1, 3, 4, 4), (1, 5, 4, 4), seed=1)
    case("2x3x8x8_vs_2x5x4x4_student_pooled", (2, 3, 8, 8), (2, 5, 4, 4), seed=2)
    case("3x7x3x3_vs_3x2x6x6_teacher_pooled", (3, 7, 3, 3), (3, 2, 6, 6), seed=3)
    case("3x5x7x9_vs_3x6x14x18", (3, 5, 7, 9), (3, 6, 14, 18), seed=4, pool="hw")
    case("3x6x14x18_vs_3x5x7x9", (3, 6, 14, 18), (3, 5, 7, 9), seed=5, pool="hw")
    case("2x4x11x13_vs_2x3x4x5_overlapping", (2, 4, 11, 13), (2, 3, 4, 5), seed=6, pool="hw")
    case("17x4x5x5_vs_17x3x7x7", (17, 4, 5, 5), (17, 3, 7, 7), seed=7)
    case("4x16x8x8_vs_4x32x8x8_weighted", (4, 16, 8, 8), (4, 32, 8, 8), seed=8, weight=50.0, grad_loss=0.5,
         grad_scale=-4096.0)
    case("2x5x6x6_vs_2x4x6x6_no_teacher_term", (2, 5, 6, 6), (2, 4, 6, 6), seed=9, full_loss=False)
    case("64x8x4x4_vs_64x6x4x4", (64, 8, 4, 4), (64, 6, 4, 4), seed=10)

    def zero_and_duplicate(f_s, f_t):
        f_s[0, 1] = 0.0          # a zero channel: F.normalize keeps it 0, no gradient through its norm
        f_s[1, 2] = f_s[1, 0]    # duplicated rows
        f_t[1, 3] = f_t[1, 1]
    case("2x4x5x3_vs_2x5x5x3_zero_duplicate", (2, 4, 5, 3), (2, 5, 5, 3), seed=11, edit=zero_and_duplicate)
    case("8x64x16x16_vs_8x32x16x16", (8, 64, 16, 16), (8, 32, 16, 16), seed=12)

    # kdfuse's position form (2 (h w)^2 <= (C_s + C_t)^2; kernels/nst.cu): deep, small maps.
    case("3x9x2x3_vs_3x7x2x3_positions", (3, 9, 2, 3), (3, 7, 2, 3), seed=14)
    case("1x12x1x1_vs_1x3x1x1_positions", (1, 12, 1, 1), (1, 3, 1, 1), seed=15)
    case("2x10x4x6_vs_2x8x2x3_positions_student_pooled", (2, 10, 4, 6), (2, 8, 2, 3), seed=16, pool="hw")
    case("2x6x2x2_vs_2x11x5x5_positions_teacher_pooled", (2, 6, 2, 2), (2, 11, 5, 5), seed=17)
    case("2x9x2x2_vs_2x6x2x2_positions_no_teacher_term", (2, 9, 2, 2), (2, 6, 2, 2), seed=18, full_loss=False,
         weight=50.0, grad_loss=-0.75, grad_scale=1024.0)
    case("2x8x2x2_vs_2x9x2x2_positions_zero_duplicate", (2, 8, 2, 2), (2, 9, 2, 2), seed=19, edit=zero_and_duplicate)
    case("64x12x2x2_vs_64x10x2x2_positions", (64, 12, 2, 2), (64, 10, 2, 2), seed=20)
    multilayer_case(root, "nst", "multilayer_resnet8x4_n2", nst_loss, resnet8x4_pairs(13), [50.0, 25.0, 10.0],
                    grad_scale=2.0 ** 16)
