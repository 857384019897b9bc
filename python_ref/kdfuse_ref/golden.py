"""Golden data for the C++ tests: fixed seeds and shapes -> inputs, loss and gradients.

    python -m kdfuse_ref.golden --out DIR [--loss kd ...]

Layout: DIR/<loss>/<case>/ holds one .npy file per tensor (NumPy's format, version 1.0, little-endian,
C order) and a `case.txt` with one `key value` pair per line (hyper-parameters and options).
Inputs are float32 (what the kernels read); expected outputs are float64, computed by the reference
in float64 from the float32 inputs. Gradients are those of sum(loss * grad_loss) * grad_scale, the
contract of the C API (grad_loss: upstream gradient, grad_scale: host factor on the gradients only).
Generation is deterministic: the same command writes identical files.
"""
import argparse
import importlib
import pathlib

import numpy as np
import torch

from .kd import kd_loss


def write_case(root, loss, case, params, inputs, outputs):
    d = pathlib.Path(root) / loss / case
    d.mkdir(parents=True, exist_ok=True)
    for name, t in inputs.items():
        np.save(d / f"{name}.npy", t.detach().cpu().numpy().astype(np.float32), allow_pickle=False)
    for name, t in outputs.items():
        np.save(d / f"{name}.npy", t.detach().cpu().numpy().astype(np.float64), allow_pickle=False)
    with open(d / "case.txt", "w") as f:
        for k, v in params.items():
            f.write(f"{k} {v}\n")


def prebuilt_case(root, loss, name, fn, inputs, weight=1.0, grad_loss=None, grad_scale=1.0, params=None,
                  grad_inputs=("s",)):
    """For float32 inputs built by the caller ({name: tensor}): writes the inputs,
    loss = fn(**float64 inputs) * weight and the gradients of loss * grad_loss * grad_scale."""
    inputs = {k: v.float() for k, v in inputs.items()}
    ins64 = {k: v.double().requires_grad_(k in grad_inputs) for k, v in inputs.items()}
    loss_value = fn(**ins64) * weight
    gl = 1.0 if grad_loss is None else float(grad_loss)
    (loss_value * gl * grad_scale).backward()
    if grad_loss is not None:
        inputs["grad_loss"] = torch.tensor([grad_loss])
    outputs = {"loss": loss_value.reshape(-1)}
    for k in grad_inputs:
        outputs[f"grad_{k}"] = ins64[k].grad
    all_params = {"weight": repr(float(weight)), "grad_scale": repr(float(grad_scale))}
    all_params.update(params or {})
    write_case(root, loss, name, all_params, inputs, outputs)


def feature_case(root, loss, name, fn, shapes, seed, weight=1.0, grad_loss=None, grad_scale=1.0, scale=1.0,
                 params=None, grad_inputs=("f_s",)):
    """Writes one case of a loss fn(**inputs) over random float32 inputs of the given shapes ({name: shape})."""
    g = torch.Generator().manual_seed(seed)
    inputs = {k: torch.randn(*shape, generator=g) * scale for k, shape in shapes.items()}
    prebuilt_case(root, loss, name, fn, inputs, weight=weight, grad_loss=grad_loss, grad_scale=grad_scale,
                  params=params, grad_inputs=grad_inputs)


def _kd_case(root, name, n, c, T=4.0, seed=0, scale=3.0, weight=None, reduction="batchmean", grad_loss=None,
             grad_scale=1.0, teacher_grad=False, dtype=None):
    """dtype "fp16" / "bf16": the logits are rounded to that type (stored as the float32 values they are), the
    call is to use them in that type."""
    g = torch.Generator().manual_seed(seed)
    y_s = (torch.randn(n, c, generator=g) * scale).float()
    y_t = (torch.randn(n, c, generator=g) * scale).float()
    if dtype is not None:
        low = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        y_s, y_t = y_s.to(low).float(), y_t.to(low).float()
    s64 = y_s.double().requires_grad_(True)
    t64 = y_t.double().requires_grad_(True)
    w64 = None if weight is None else weight.double()
    loss = kd_loss(s64, t64, T, weight=w64, reduction=reduction)
    gl = torch.ones_like(loss) if grad_loss is None else grad_loss.double().reshape(loss.shape)
    (loss * gl).sum().mul(grad_scale).backward()
    inputs = {"y_s": y_s, "y_t": y_t}
    if weight is not None:
        inputs["weight"] = weight.float()
    if grad_loss is not None:
        inputs["grad_loss"] = grad_loss.float().reshape(-1)
    outputs = {"loss": loss.reshape(-1), "grad_s": s64.grad}
    if teacher_grad:
        outputs["grad_t"] = t64.grad
    params = {"temperature": repr(float(T)), "reduction": reduction, "grad_scale": repr(float(grad_scale))}
    if dtype is not None:
        params["dtype"] = dtype
    write_case(root, "kd", name, params, inputs, outputs)


def kd_cases(root):
    _kd_case(root, "1x1", 1, 1)
    _kd_case(root, "3x7", 3, 7, T=1.0, seed=1)
    _kd_case(root, "64x100", 64, 100, seed=2)
    _kd_case(root, "37x1031_grad_loss_scale_teacher", 37, 1031, T=2.0, seed=3, grad_loss=torch.tensor([0.75]),
             grad_scale=-1.5, teacher_grad=True)
    _kd_case(root, "8x50000", 8, 50000, seed=4)
    w = torch.tensor([1.0, 0.0, 2.5, 0.25, 0.0, 1.0, 3.0])
    _kd_case(root, "7x33_masked_rows", 7, 33, seed=5, weight=w, teacher_grad=True)
    _kd_case(root, "5x130_none", 5, 130, T=3.0, seed=6, reduction="none",
             grad_loss=torch.tensor([1.0, -2.0, 0.5, 0.0, 4.0]), grad_scale=0.5, teacher_grad=True)
    _kd_case(root, "4x257_extreme_T0.1", 4, 257, T=0.1, seed=7, scale=1e4, teacher_grad=True)
    _kd_case(root, "3x40_extreme_T100", 3, 40, T=100.0, seed=8, scale=1e4)
    _kd_case(root, "2x8193_uncached", 2, 8193, T=4.0, seed=9)
    _kd_case(root, "2x262147_llm_vocab", 2, 262147, T=1.0, seed=10, teacher_grad=True)
    # 16-bit logits: vector loads (C % 4 == 0) and scalar ones, cached and long rows, extremes.
    _kd_case(root, "bf16_64x100", 64, 100, seed=11, dtype="bf16")
    _kd_case(root, "fp16_37x1031_grad_loss_scale_teacher", 37, 1031, T=2.0, seed=12, grad_loss=torch.tensor([0.75]),
             grad_scale=-1.5, teacher_grad=True, dtype="fp16")
    _kd_case(root, "bf16_5x130_none", 5, 130, T=3.0, seed=13, reduction="none",
             grad_loss=torch.tensor([1.0, -2.0, 0.5, 0.0, 4.0]), grad_scale=0.5, teacher_grad=True, dtype="bf16")
    _kd_case(root, "fp16_3x8200_uncached", 3, 8200, seed=14, teacher_grad=True, dtype="fp16")
    _kd_case(root, "bf16_4x257_extreme_T0.1", 4, 257, T=0.1, seed=15, scale=1e4, teacher_grad=True, dtype="bf16")
    _kd_case(root, "fp16_3x40_large_T100", 3, 40, T=100.0, seed=16, scale=1e4, dtype="fp16")


def generators():
    """{loss: cases(root)}: KD here, every other loss in its module kdfuse_ref.golden_<loss> (if present)."""
    from . import LOSSES

    found = {"kd": kd_cases}
    for name in LOSSES:
        try:
            found[name] = importlib.import_module(f"{__package__}.golden_{name}").cases
        except ModuleNotFoundError:
            pass
    return found


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    gens = generators()
    ap.add_argument("--loss", action="append", choices=sorted(gens), help="default: all")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.loss or sorted(gens):
        gens[name](args.out)
        print(f"golden data for {name} written to {args.out}/{name}")


if __name__ == "__main__":
    main()
