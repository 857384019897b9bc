"""Golden cases for VID (see golden.py for the format).

Tensors of a case: pred_mean, target, log_scale (inputs, float32), grad_loss (if not 1); loss,
grad_pred_mean, grad_log_scale (float64). case.txt: weight, grad_scale, eps, pool ("seed" or "hw",
kdfuse_ref.vid.vid_loss). Non-square pooled cases use pool="hw" (kdfuse pools to pred's H x W; the
seed's square rule cannot express them).

The multi-layer case (case.txt has `layers L`) holds pred_mean<l>, target<l>, log_scale<l>,
grad_pred_mean<l>, grad_log_scale<l> and weight<l> for l < L, and one loss: sum_l weight<l> * loss_l,
as RepDistiller sums VID over its intermediate layer pairs.
"""
import torch

from .golden import write_case
from .vid import vid_loss


def _inputs(g, p_shape, t_shape, log_scale, scale):
    pred = (torch.randn(*p_shape, generator=g) * scale).float()
    target = (torch.randn(*t_shape, generator=g) * scale).float()
    if log_scale is None:
        ls = (torch.randn(p_shape[1], generator=g) * 2.0).float()
    else:
        ls = torch.tensor(log_scale, dtype=torch.float32)
    return pred, target, ls


def _forward_backward(pred, target, ls, eps, pool, weight, factor):
    p64 = pred.double().requires_grad_(True)
    l64 = ls.double().requires_grad_(True)
    loss = vid_loss(p64, target.double(), l64, eps=eps, pool=pool) * weight
    (loss * factor).backward()
    return loss.detach(), p64.grad, l64.grad


def vid_case(root, name, p_shape, t_shape, seed, weight=1.0, grad_loss=None, grad_scale=1.0, eps=1e-5, pool="hw",
             log_scale=None, scale=1.0):
    """One case: pred_mean ~ N(0, scale^2) of p_shape, target of t_shape, log_scale ~ N(0, 4) or given."""
    g = torch.Generator().manual_seed(seed)
    pred, target, ls = _inputs(g, p_shape, t_shape, log_scale, scale)
    gl = 1.0 if grad_loss is None else float(grad_loss)
    loss, grad_pred, grad_ls = _forward_backward(pred, target, ls, eps, pool, weight, gl * grad_scale)
    inputs = {"pred_mean": pred, "target": target, "log_scale": ls}
    if grad_loss is not None:
        inputs["grad_loss"] = torch.tensor([grad_loss])
    outputs = {"loss": loss.reshape(-1), "grad_pred_mean": grad_pred, "grad_log_scale": grad_ls}
    params = {"weight": repr(float(weight)), "grad_scale": repr(float(grad_scale)), "eps": repr(float(eps)), "pool": pool}
    write_case(root, "vid", name, params, inputs, outputs)


def multilayer_case(root, name, layers, seed, grad_scale=1.0, eps=1e-5):
    """Several layer pairs [(p_shape, t_shape, weight)] summed into one loss."""
    g = torch.Generator().manual_seed(seed)
    inputs, outputs, params = {}, {}, {"layers": str(len(layers)), "grad_scale": repr(float(grad_scale)),
                                       "eps": repr(float(eps)), "pool": "hw"}
    total = torch.zeros((), dtype=torch.float64)
    for i, (p_shape, t_shape, weight) in enumerate(layers):
        pred, target, ls = _inputs(g, p_shape, t_shape, None, 1.0)
        loss, grad_pred, grad_ls = _forward_backward(pred, target, ls, eps, "hw", weight, grad_scale)
        total = total + loss
        inputs.update({f"pred_mean{i}": pred, f"target{i}": target, f"log_scale{i}": ls})
        outputs.update({f"grad_pred_mean{i}": grad_pred, f"grad_log_scale{i}": grad_ls})
        params[f"weight{i}"] = repr(float(weight))
    outputs["loss"] = total.reshape(-1)
    write_case(root, "vid", name, params, inputs, outputs)


def cases(root):
    vid_case(root, "1x1x1x1", (1, 1, 1, 1), (1, 1, 1, 1), seed=0)
    vid_case(root, "2x3x5x7", (2, 3, 5, 7), (2, 3, 5, 7), seed=1)
    vid_case(root, "1x16x8x8_n1", (1, 16, 8, 8), (1, 16, 8, 8), seed=2)
    vid_case(root, "4x32x8x8_weighted", (4, 32, 8, 8), (4, 32, 8, 8), seed=3, weight=2.5, grad_loss=0.5,
             grad_scale=-2.0)
    # pooling: divisible and non-divisible, non-square (pool="hw"), square as the seed
    vid_case(root, "3x5x7x9_pool_14x18", (3, 5, 7, 9), (3, 5, 14, 18), seed=4)
    vid_case(root, "3x5x7x9_pool_10x13", (3, 5, 7, 9), (3, 5, 10, 13), seed=5, grad_loss=-1.25, grad_scale=3.0)
    vid_case(root, "2x4x3x3_pool_7x7_seed", (2, 4, 3, 3), (2, 4, 7, 7), seed=6, pool="seed")
    vid_case(root, "2x6x16x16_pool_32x32_seed", (2, 6, 16, 16), (2, 6, 32, 32), seed=7, pool="seed", eps=1e-3)
    vid_case(root, "2x3x9x5_pool_9x17", (2, 3, 9, 5), (2, 3, 9, 17), seed=8)
    # log_scale extremes: softplus / sigmoid in their saturated ranges
    vid_case(root, "2x6x5x5_extreme_log_scale", (2, 6, 5, 5), (2, 6, 5, 5), seed=9,
             log_scale=[-20.0, 20.0, -80.0, 80.0, 0.0, -5.0])
    vid_case(root, "2x4x4x4_extreme_log_scale_pooled", (2, 4, 4, 4), (2, 4, 11, 11), seed=10,
             log_scale=[-20.0, 20.0, -30.0, 30.0], weight=0.5)
    # larger values, group sizes: warp per plane (16x16), whole block per plane (> 4096 elements)
    vid_case(root, "3x17x9x11_large_values", (3, 17, 9, 11), (3, 17, 9, 11), seed=11, scale=1e3)
    vid_case(root, "8x64x16x16", (8, 64, 16, 16), (8, 64, 16, 16), seed=12)
    vid_case(root, "2x3x72x72_block_planes", (2, 3, 72, 72), (2, 3, 72, 72), seed=13, grad_scale=0.25)
    vid_case(root, "2x2x65x70_block_planes_pool_130x141", (2, 2, 65, 70), (2, 2, 130, 141), seed=14)
    # RepDistiller resnet32x4 -> resnet8x4: VID over the three intermediate layer pairs (feat[1:-1]),
    # per-layer weights, N = 2
    multilayer_case(root, "multilayer_resnet8x4_n2", [((2, 64, 32, 32), (2, 64, 32, 32), 1.0),
                                                      ((2, 128, 16, 16), (2, 128, 16, 16), 0.5),
                                                      ((2, 256, 8, 8), (2, 256, 8, 8), 2.0)], seed=15)
    # the same layers with teachers of twice the resolution (pooled inside the kernel)
    multilayer_case(root, "multilayer_pooled_n2", [((2, 64, 16, 16), (2, 64, 32, 32), 1.0),
                                                   ((2, 128, 8, 8), (2, 128, 16, 16), 0.5),
                                                   ((2, 256, 4, 4), (2, 256, 8, 8), 2.0)], seed=16, grad_scale=-0.5)
