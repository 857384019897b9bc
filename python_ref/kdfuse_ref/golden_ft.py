"""Golden cases for FT (see golden.py for the format; helpers shared with golden_at.py)."""
from .ft import ft_loss
from .golden_at import attention_case, cancelling_inputs, inputs, multilayer_case, resnet8x4_pairs, tiny_inputs


def cases(root):
    def case(name, s_shape, t_shape, seed, p1=2.0, p2=1.0, pool="seed", scale=1.0, positive=False, same=False,
             weight=200.0, **kw):
        f_s, f_t = inputs(seed, s_shape, t_shape, scale=scale, positive=positive)
        if same:
            f_t = f_s.clone()
        fn = lambda a, b: ft_loss(a, b, p1=p1, p2=p2, pool=pool)  # noqa: E731
        params = {"p1": repr(float(p1)), "p2": repr(float(p2)), "pool": pool}
        attention_case(root, "ft", name, fn, f_s, f_t, weight=weight, params=params, **kw)

    case("1x1x1x1", (1, 1, 1, 1), (1, 1, 1, 1), seed=0)
    case("2x3x5x7_same_size_weight1", (2, 3, 5, 7), (2, 4, 5, 7), seed=1, weight=1.0)
    case("3x5x7x9_vs_3x6x14x18", (3, 5, 7, 9), (3, 6, 14, 18), seed=2, pool="hw")
    case("3x6x14x18_vs_3x5x7x9", (3, 6, 14, 18), (3, 5, 7, 9), seed=3, pool="hw")
    case("2x3x11x13_vs_2x5x4x5", (2, 3, 11, 13), (2, 5, 4, 5), seed=4, pool="hw")
    # a pooled student 1025 wide: the kernel stages 3 output rows (+1) at a time, so 4 rows take 2 tiles
    case("1x2x9x2050_vs_1x1x4x1025_tiles", (1, 2, 9, 2050), (1, 1, 4, 1025), seed=18, pool="hw")
    case("2x4x7x7_vs_2x3x3x3", (2, 4, 7, 7), (2, 3, 3, 3), seed=5)
    case("4x16x8x8_weighted", (4, 16, 8, 8), (4, 32, 8, 8), seed=7, weight=200.0, grad_loss=0.5, grad_scale=-32.0)
    case("1x32x16x16_vs_1x64x32x32", (1, 32, 16, 16), (1, 64, 32, 32), seed=8)
    case("3x4x6x5_p2_2", (3, 4, 6, 5), (3, 2, 6, 5), seed=9, p2=2.0)
    case("3x4x6x5_p2_3_odd", (3, 4, 6, 5), (3, 2, 6, 5), seed=10, p2=3.0)
    case("3x4x12x10_p1_1.5_positive", (3, 4, 12, 10), (3, 2, 6, 5), seed=11, p1=1.5, positive=True, pool="hw")
    case("2x3x4x4_equal_maps", (2, 3, 4, 4), (2, 3, 4, 4), seed=12, same=True)
    case("3x17x9x11_large_values", (3, 17, 9, 11), (3, 9, 9, 11), seed=13, scale=1e3)
    case("8x64x16x16_vs_8x128x16x16", (8, 64, 16, 16), (8, 128, 16, 16), seed=14)
    f_s, f_t = cancelling_inputs(15, 2, 3, 4, 4)
    attention_case(root, "ft", "2x3x4x4_p1_1_eps", lambda a, b: ft_loss(a, b, p1=1), f_s, f_t, weight=200.0,
                   params={"p1": "1.0", "p2": "1.0", "pool": "seed"})
    f_s, f_t = tiny_inputs(17, 2, 3, 4, 4)
    attention_case(root, "ft", "2x3x4x4_tiny_norm_eps", ft_loss, f_s, f_t, weight=200.0,
                   params={"p1": "2.0", "p2": "1.0", "pool": "seed"})
    multilayer_case(root, "ft", "multilayer_resnet8x4_n2", ft_loss, resnet8x4_pairs(16), [200.0, 100.0, 50.0],
                    grad_scale=1024.0)
