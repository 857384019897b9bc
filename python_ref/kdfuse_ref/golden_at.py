"""Golden cases for AT (see golden.py for the format). Shared with golden_ft.py: `attention_case` and
`multilayer_case` write cases whose inputs are given explicitly (positive inputs for a non-integer p,
channels that cancel for F.normalize's eps branch, several layers in one case).

Scales: AT's gradients are divided by N*h*w*C (about 1e-4 .. 1e-8 at weight 1), far below the tests'
absolute floor (1e-6 of the largest magnitude, at least 1e-6). So the cases use RepDistiller's weight
(beta: 1000 for AT, 200 for FT) unless they test another, and grad_scale="auto" picks the power of two
that brings max |grad| into [0.5, 1): the comparison then checks every element's relative error.
"""
import math

import torch

from .at import at_loss
from .golden import write_case


def inputs(seed, *shapes, scale=1.0, positive=False):
    """float32 standard-normal tensors of the given shapes (times `scale`; absolute values if positive)."""
    g = torch.Generator().manual_seed(seed)
    out = [(torch.randn(*shape, generator=g) * scale).float() for shape in shapes]
    return [t.abs() for t in out] if positive else out


def auto_scale(grad):
    """The power of two that brings max |grad| into [0.5, 1) (1 for a zero gradient)."""
    top = grad.abs().max().item()
    return 1.0 if top == 0.0 or not math.isfinite(top) else 2.0 ** -math.floor(math.log2(top) + 1)


def attention_case(root, loss, name, fn, f_s, f_t, weight=1.0, grad_loss=None, grad_scale="auto", params=None):
    """One case of fn(f_s, f_t) * weight: loss and grad_f_s in float64 from the float32 inputs."""
    s64 = f_s.double().requires_grad_(True)
    value = fn(s64, f_t.double()) * weight
    upstream = 1.0 if grad_loss is None else float(grad_loss)
    if grad_scale == "auto":
        grad_scale = auto_scale(torch.autograd.grad(value * upstream, s64, retain_graph=True)[0])
    (value * upstream * grad_scale).backward()
    ins = {"f_s": f_s, "f_t": f_t}
    if grad_loss is not None:
        ins["grad_loss"] = torch.tensor([grad_loss])
    all_params = {"weight": repr(float(weight)), "grad_scale": repr(float(grad_scale))}
    all_params.update(params or {})
    write_case(root, loss, name, all_params, ins, {"loss": value.detach().reshape(-1), "grad_f_s": s64.grad})


def multilayer_case(root, loss, name, fn, pairs, weights, grad_scale):
    """Layers l = 0, 1, ...: f_s<l>, f_t<l>, weight<l> (case.txt), loss = sum_l weight_l * fn(f_s<l>, f_t<l>)
    and grad_f_s<l> (times grad_scale); `layers` and `grad_scale` in case.txt."""
    total = 0.0
    ins, outs = {}, {}
    params = {"layers": str(len(pairs)), "grad_scale": repr(float(grad_scale))}
    for l, ((f_s, f_t), w) in enumerate(zip(pairs, weights)):
        s64 = f_s.double().requires_grad_(True)
        value = fn(s64, f_t.double()) * w
        (value * grad_scale).backward()
        total = total + value.detach()
        ins[f"f_s{l}"], ins[f"f_t{l}"] = f_s, f_t
        outs[f"grad_f_s{l}"] = s64.grad
        params[f"weight{l}"] = repr(float(w))
    outs["loss"] = total.reshape(-1)
    write_case(root, loss, name, params, ins, outs)


def resnet8x4_pairs(seed, n=2):
    """RepDistiller's AT layers for resnet32x4 -> resnet8x4 (feat[1:-1]: 64x32x32, 128x16x16, 256x8x8)."""
    shapes = [(n, 64, 32, 32), (n, 128, 16, 16), (n, 256, 8, 8)]
    return [tuple(inputs(seed + l, shape, shape)) for l, shape in enumerate(shapes)]


def cancelling_inputs(seed, n, c, h, w):
    """f_s whose sample 1 has channels that cancel (mean_C f = 0 for p = 1: a zero map) and f_t whose
    sample 0 is zero."""
    f_s, f_t = inputs(seed, (n, c, h, w), (n, c + 1, h, w))
    f_s[1, 1] = -f_s[1, 0]
    if c > 2:
        f_s[1, 2:] = 0.0
    f_t[0] = 0.0
    return f_s, f_t


def tiny_inputs(seed, n, c, h, w):
    """f_s whose sample 1 is of magnitude 1e-7: at p = 2 its map has a norm of about 1e-14, inside
    F.normalize's eps branch (0 < ||v|| < 1e-12: a = v / eps and no gradient through the norm)."""
    f_s, f_t = inputs(seed, (n, c, h, w), (n, c + 1, h, w))
    f_s[1] *= 1e-7
    return f_s, f_t


def cases(root):
    def case(name, s_shape, t_shape, seed, p=2.0, pool="seed", scale=1.0, positive=False, weight=1000.0, **kw):
        f_s, f_t = inputs(seed, s_shape, t_shape, scale=scale, positive=positive)
        fn = lambda a, b: at_loss(a, b, p=p, pool=pool)  # noqa: E731
        attention_case(root, "at", name, fn, f_s, f_t, weight=weight, params={"p": repr(float(p)), "pool": pool}, **kw)

    case("1x1x1x1", (1, 1, 1, 1), (1, 1, 1, 1), seed=0)
    case("2x3x5x7_same_size_weight1", (2, 3, 5, 7), (2, 4, 5, 7), seed=1, weight=1.0)
    case("3x5x7x9_vs_3x6x14x18", (3, 5, 7, 9), (3, 6, 14, 18), seed=2, pool="hw")
    case("3x6x14x18_vs_3x5x7x9", (3, 6, 14, 18), (3, 5, 7, 9), seed=3, pool="hw")
    case("2x3x11x13_vs_2x5x4x5", (2, 3, 11, 13), (2, 5, 4, 5), seed=4, pool="hw")
    # a pooled student 1025 wide: the kernel stages 3 output rows (+1) at a time, so 4 rows take 2 tiles
    case("1x2x9x2050_vs_1x1x4x1025_tiles", (1, 2, 9, 2050), (1, 1, 4, 1025), seed=16, pool="hw")
    case("2x4x7x7_vs_2x3x3x3", (2, 4, 7, 7), (2, 3, 3, 3), seed=5)
    case("2x3x5x5_vs_2x8x7x7", (2, 3, 5, 5), (2, 8, 7, 7), seed=6)
    case("4x16x8x8_weighted", (4, 16, 8, 8), (4, 32, 8, 8), seed=7, weight=1000.0, grad_loss=0.5, grad_scale=-32.0)
    case("1x32x16x16_vs_1x64x32x32", (1, 32, 16, 16), (1, 64, 32, 32), seed=8)
    case("3x4x6x5_p3", (3, 4, 6, 5), (3, 2, 6, 5), seed=9, p=3.0)
    case("3x4x12x10_p2.5_positive", (3, 4, 12, 10), (3, 2, 6, 5), seed=10, p=2.5, positive=True, pool="hw")
    case("3x17x9x11_large_values", (3, 17, 9, 11), (3, 9, 9, 11), seed=11, scale=1e3)
    case("8x64x16x16_vs_8x128x16x16", (8, 64, 16, 16), (8, 128, 16, 16), seed=12)
    f_s, f_t = cancelling_inputs(13, 2, 3, 4, 4)
    attention_case(root, "at", "2x3x4x4_p1_eps", lambda a, b: at_loss(a, b, p=1), f_s, f_t, weight=1000.0,
                   params={"p": "1.0", "pool": "seed"})
    f_s, f_t = tiny_inputs(15, 2, 3, 4, 4)
    attention_case(root, "at", "2x3x4x4_tiny_norm_eps", at_loss, f_s, f_t, weight=1000.0,
                   params={"p": "2.0", "pool": "seed"})
    multilayer_case(root, "at", "multilayer_resnet8x4_n2", at_loss, resnet8x4_pairs(14), [1000.0, 500.0, 250.0],
                    grad_scale=4096.0)
