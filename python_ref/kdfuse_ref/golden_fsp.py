"""Golden cases for FSP (see golden.py for the format).

Pair cases: inputs s_bot, s_top, t_bot, t_top; outputs loss (weight * the pair's loss) and grad_s_bot,
grad_s_top (times grad_scale, grad_loss). Chain cases (`maps` in case.txt): maps s0..s{L-1}, t0..t{L-1}, the
pair weights weight0..weight{L-2}, loss = sum_i weight_i * loss_i and grad_s<i> for every student map (a middle
map sums both of its pairs' gradients). FSP's gradients are divided by N C1 C2 HW, so grad_scale="auto" picks
the power of two that brings max |grad| into [0.5, 1), as AT's cases.
"""
import torch

from .fsp import fsp_loss
from .golden import write_case
from .golden_at import auto_scale, inputs


def pair_case(root, name, s_shapes, t_shapes, seed, weight=1.0, pool="seed", grad_loss=None, grad_scale="auto", edit=None):
    s_bot, s_top, t_bot, t_top = inputs(seed, *s_shapes, *t_shapes)
    if edit is not None:
        edit(s_bot, s_top, t_bot, t_top)
    sb, st = s_bot.double().requires_grad_(True), s_top.double().requires_grad_(True)
    value = fsp_loss([sb, st], [t_bot.double(), t_top.double()], pool=pool)[0] * weight
    upstream = 1.0 if grad_loss is None else float(grad_loss)
    if grad_scale == "auto":
        grads = torch.autograd.grad(value * upstream, (sb, st), retain_graph=True)
        grad_scale = auto_scale(torch.cat([g.reshape(-1) for g in grads]))
    (value * upstream * grad_scale).backward()
    ins = {"s_bot": s_bot, "s_top": s_top, "t_bot": t_bot, "t_top": t_top}
    if grad_loss is not None:
        ins["grad_loss"] = torch.tensor([grad_loss])
    params = {"weight": repr(float(weight)), "grad_scale": repr(float(grad_scale)), "pool": pool}
    write_case(root, "fsp", name, params, ins,
               {"loss": value.detach().reshape(-1), "grad_s_bot": sb.grad, "grad_s_top": st.grad})


def chain_case(root, name, s_shapes, t_shapes, seed, weights, grad_scale):
    maps = inputs(seed, *s_shapes, *t_shapes)
    g_s, g_t = maps[: len(s_shapes)], maps[len(s_shapes):]
    s64 = [f.double().requires_grad_(True) for f in g_s]
    losses = fsp_loss(s64, [f.double() for f in g_t])
    total = sum(w * l for w, l in zip(weights, losses))
    (total * grad_scale).backward()
    ins = {f"s{i}": f for i, f in enumerate(g_s)}
    ins.update({f"t{i}": f for i, f in enumerate(g_t)})
    outs = {"loss": total.detach().reshape(-1)}
    outs.update({f"grad_s{i}": f.grad for i, f in enumerate(s64)})
    params = {"maps": str(len(g_s)), "grad_scale": repr(float(grad_scale))}
    params.update({f"weight{i}": repr(float(w)) for i, w in enumerate(weights)})
    write_case(root, "fsp", name, params, ins, outs)


def cases(root):
    pair_case(root, "1x1x1x1", [(1, 1, 1, 1)] * 2, [(1, 1, 1, 1)] * 2, seed=0)
    pair_case(root, "2x3x8x8_2x5x4x4_bot_pooled", [(2, 3, 8, 8), (2, 5, 4, 4)], [(2, 3, 6, 6), (2, 5, 6, 6)], seed=1)
    pair_case(root, "3x2x3x3_3x4x6x6_top_pooled", [(3, 2, 3, 3), (3, 4, 6, 6)], [(3, 2, 5, 5), (3, 4, 2, 2)], seed=2)
    pair_case(root, "17x4x7x7_17x3x5x5_overlapping", [(17, 4, 7, 7), (17, 3, 5, 5)], [(17, 4, 5, 5), (17, 3, 5, 5)],
              seed=3)
    pair_case(root, "3x5x14x18_3x6x7x9_hw", [(3, 5, 14, 18), (3, 6, 7, 9)], [(3, 5, 7, 9), (3, 6, 14, 18)], seed=4,
              pool="hw")
    pair_case(root, "2x3x11x13_2x5x4x5_hw", [(2, 3, 11, 13), (2, 5, 4, 5)], [(2, 3, 4, 5), (2, 5, 4, 5)], seed=5,
              pool="hw")
    pair_case(root, "4x16x8x8_4x32x4x4_weighted", [(4, 16, 8, 8), (4, 32, 4, 4)], [(4, 16, 8, 8), (4, 32, 8, 8)],
              seed=6, weight=50.0, grad_loss=0.5, grad_scale=-64.0)
    pair_case(root, "64x8x4x4_64x6x2x2", [(64, 8, 4, 4), (64, 6, 2, 2)], [(64, 8, 2, 2), (64, 6, 2, 2)], seed=7)

    def zero_and_duplicate(s_bot, s_top, t_bot, t_top):
        s_bot[0, 1] = 0.0
        s_top[1, 2] = s_top[1, 0]
        t_bot[1] = 0.0
    pair_case(root, "2x4x5x3_2x3x5x3_zero_duplicate", [(2, 4, 5, 3), (2, 3, 5, 3)], [(2, 4, 5, 3), (2, 3, 5, 3)], seed=8,
              edit=zero_and_duplicate)
    pair_case(root, "8x32x16x16_8x64x8x8", [(8, 32, 16, 16), (8, 64, 8, 8)], [(8, 32, 16, 16), (8, 64, 8, 8)], seed=9)
    # RepDistiller resnet32x4 -> resnet8x4, feat[:-1]: 32x32x32, 64x32x32, 128x16x16, 256x8x8 (same channels).
    shapes = [(2, 32, 32, 32), (2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8)]
    chain_case(root, "chain_resnet8x4_n2", shapes, shapes, seed=10, weights=[50.0, 25.0, 10.0], grad_scale=256.0)
