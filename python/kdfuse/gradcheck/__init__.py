"""Gradient check of every kdfuse loss against the PyTorch reference (python_ref/kdfuse_ref).

    PYTHONPATH=python:python_ref python -m kdfuse.gradcheck [--backend simt|cuda] [--lib PATH]

This package holds the shared comparison (tolerance, Row, compare) and the driver (__main__.py); the cases are in
kdfuse.gradcheck.cases, one module per loss. The runtime package (kdfuse, kdfuse.ops, kdfuse.nn) never imports it.

For each loss of kdfuse_ref.LOSSES (the fourteen, and KDSVD) either the checks below run, or one row says
"not implemented" (no checker here, or the library does not export the loss's entry point); such rows
never count as passing. Inputs are float32; the reference runs in float64 on the same float32 values
and its gradients come from torch.autograd in float64: d/dx [grad_scale * sum(loss * grad_loss)].

Tolerance (`tolerance()` below; one rule for every row except KDSVD's, see below): elementwise
    |lib - ref| <= atol + rtol * |ref|,   rtol = 1e-4,   atol = 1e-6 * max |ref| + 1e-30
(the 1e-30 only covers references below fp32's range, which fp32 results flush to 0)
over the whole output (loss, grad_s or grad_t); NaN or a shape difference fails. KD also runs on float16 and
bfloat16 logits (rows marked fp16 / bf16): the reference runs on the same 16-bit values, the loss keeps the
rule above and the 16-bit gradients, one fp32 result rounded to the dtype (twice when accumulating), get
rtol + 2u (u = 2^-8 bf16, 2^-11 fp16: the unit roundoff) and, for fp16, atol + 2^-24 (its subnormal spacing).
KDSVD's rows get atol = 1e-5 * max |ref| (1e-4 on random post-ReLU maps, rows marked relu): the loss amplifies
the fp32 error of the eigenvectors (cases/kdsvd.py, with the measured errors).
Columns: "max abs err" = max |lib - ref|; "max rel err" = max |lib - ref| / |ref| over the elements
with |ref| > atol (smaller references are judged by atol alone; "-" if there are none).

Output: one row per (loss, case, quantity), then the line "N passed, M failed" (rows), then, if any,
"not implemented: <losses>". Exit status 1 if a row failed, 2 if the library could not be loaded.
"""
import importlib
import importlib.util
import math
import os
import sys

import torch

RTOL = 1e-4
ATOL_FACTOR = 1e-6
ATOL_FLOOR = 1e-30


# Extra (rtol, atol) of an output stored in 16 bits: two roundings of the fp32 result; fp16's subnormal spacing.
ROUNDING = {torch.float32: (0.0, 0.0), torch.bfloat16: (2.0 ** -7, 0.0), torch.float16: (2.0 ** -10, 2.0 ** -24)}


def tolerance(ref, dtype=torch.float32, atol_factor=ATOL_FACTOR):
    """(rtol, atol) of the comparison of an output of `dtype` against float64 reference values `ref`."""
    scale = ref.abs().max().item() if ref.numel() else 0.0
    rtol, atol = ROUNDING[dtype]
    return RTOL + rtol, atol_factor * scale + ATOL_FLOOR + atol


def channel_slice(f, pad, g):
    """f (N x C x ...) as the first C channels of a tensor with `pad` more channels of random values from `g`: an
    input whose channels are strided."""
    wide = torch.randn(f.shape[0], f.shape[1] + pad, *f.shape[2:], generator=g)
    wide[:, : f.shape[1]] = f
    return wide[:, : f.shape[1]]


class Row:
    def __init__(self, loss, case, quantity, abs_err=None, rel_err=None, tol="", status=""):
        self.loss, self.case, self.quantity = loss, case, quantity
        self.abs_err, self.rel_err, self.tol, self.status = abs_err, rel_err, tol, status


def compare(loss, case, quantity, lib_value, ref_value, atol_factor=ATOL_FACTOR):
    """One table row comparing a library float32 output with the float64 reference (atol_factor: see KDSVD)."""
    ref = ref_value.detach().to("cpu", torch.float64)
    got = None if lib_value is None else lib_value.detach().to("cpu", torch.float64)
    rtol, atol = tolerance(ref, torch.float32 if lib_value is None else lib_value.dtype, atol_factor)
    tol = f"rtol={rtol:.0e} atol={atol:.1e}"
    if got is None:
        return Row(loss, case, quantity, None, None, tol, "FAIL (no output)")
    if got.shape != ref.shape:
        return Row(loss, case, quantity, None, None, tol, f"FAIL (shape {tuple(got.shape)} != {tuple(ref.shape)})")
    if got.numel() == 0:
        return Row(loss, case, quantity, 0.0, None, tol, "PASS")
    diff = (got - ref).abs()
    ok = bool((diff <= atol + rtol * ref.abs()).all())  # NaN compares False: fails
    abs_err = diff.max().item() if not torch.isnan(diff).any() else math.nan
    big = ref.abs() > atol
    rel_err = (diff[big] / ref.abs()[big]).max().item() if big.any() else None
    if torch.isnan(diff[big]).any():
        rel_err = math.nan
    return Row(loss, case, quantity, abs_err, rel_err, tol, "PASS" if ok else "FAIL")


# ---- KD -------------------------------------------------------------------------------------------

# (N, C, T, weight, reduction, grad_loss, grad_scale, grad_t, pad, extra)
#   weight: None | "rand" | "zeros" (random with some rows exactly 0) | "nanmask" (zeros, and the
#           masked rows' logits are NaN: the library must not read them)
#   grad_loss: None | a number (a device tensor holding it) | "vec" (random N values, reduction none)
#   pad: extra elements per row (ld = C + pad; the logits are a slice of a wider tensor)
#   extra: "" | "acc" (accumulate into outputs pre-filled with random values)
def checker(name):
    """(C entry point whose presence means "implemented", check(device, seed) -> rows) of a loss: the module
    kdfuse.gradcheck.cases.<loss> (its ENTRY and check), or None when there is none."""
    try:
        module = importlib.import_module(f"kdfuse.gradcheck.cases.{name}")
    except ModuleNotFoundError:
        return None
    return module.ENTRY, module.check


def _fmt(x):
    if x is None:
        return "-"
    return f"{x:.2e}"


def print_table(rows):
    headers = ("loss", "case", "quantity", "max abs err", "max rel err", "tolerance", "result")
    cells = [headers] + [(r.loss, r.case, r.quantity, _fmt(r.abs_err) if r.quantity != "-" else "-",
                          _fmt(r.rel_err) if r.quantity != "-" else "-", r.tol or "-", r.status) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    for k, row in enumerate(cells):
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1])
        if k == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 6)


def load_for_command(prog, backend, path=None):
    """(library, device) of a command's --backend and --lib (KDFUSE_LIB, else build/), the library's version and
    path printed; None, with the reason on stderr, when it cannot be loaded, the CUDA backend has no device, or the
    PyTorch reference (kdfuse_ref, in the repository's python_ref/, not in the wheel) is not importable."""
    if importlib.util.find_spec("kdfuse_ref") is None:
        print(f"{prog}: needs the PyTorch reference kdfuse_ref, which is not part of the installed package: run it "
              f"from a source checkout with PYTHONPATH=python_ref (the repository's python_ref/ directory)",
              file=sys.stderr)
        return None
    if path:
        os.environ["KDFUSE_LIB"] = path
    from kdfuse.binding import _lib
    try:
        lib = _lib.load(backend)
    except (OSError, _lib.KdfuseError) as e:
        print(f"{prog}: cannot load the {backend} library: {e}", file=sys.stderr)
        return None
    if backend == "cuda" and not torch.cuda.is_available():
        print(f"{prog}: --backend cuda needs a CUDA device visible to PyTorch", file=sys.stderr)
        return None
    print(f"kdfuse {_lib.version_string(lib)} ({lib.kdfGetBackendName().decode()}) from {lib.kdfuse_path}")
    return lib, torch.device("cuda" if backend == "cuda" else "cpu")
