"""Gradient check of every kdfuse loss against the PyTorch reference (python_ref/kdfuse_ref).

    PYTHONPATH=python:python_ref python -m kdfuse.gradcheck [--backend simt|cuda] [--lib PATH]

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
the fp32 error of the eigenvectors (check_kdsvd.py, with the measured errors).
Columns: "max abs err" = max |lib - ref|; "max rel err" = max |lib - ref| / |ref| over the elements
with |ref| > atol (smaller references are judged by atol alone; "-" if there are none).

Output: one row per (loss, case, quantity), then the line "N passed, M failed" (rows), then, if any,
"not implemented: <losses>". Exit status 1 if a row failed, 2 if the library could not be loaded.
"""
import argparse
import importlib
import math
import os
import sys
import time

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
KD_CASES = [
    (1, 1, 4.0, None, "batchmean", None, 1.0, True, 0, ""),
    (1, 1, 1.0, "rand", "none", "vec", 2.0, False, 0, ""),
    (3, 7, 4.0, None, "batchmean", None, 1.0, False, 0, ""),
    (3, 7, 1.0, "zeros", "none", "vec", 0.5, True, 0, ""),
    (3, 7, 0.5, None, "batchmean", 2.5, 1.0, False, 0, ""),
    (64, 100, 4.0, "rand", "batchmean", None, 1.0, False, 0, ""),
    (64, 100, 10.0, None, "none", None, 1.0, False, 0, ""),
    (64, 100, 1.0, None, "batchmean", -0.75, 3.0, True, 13, ""),
    (64, 100, 4.0, "zeros", "batchmean", 1.5, 0.25, True, 0, "acc"),
    (37, 1031, 4.0, None, "batchmean", None, 1.0, False, 0, ""),
    (37, 1031, 0.5, "zeros", "none", "vec", 1.0, False, 0, ""),
    (37, 1031, 4.0, "nanmask", "batchmean", 0.5, 2.0, True, 9, ""),
    (37, 1031, 10.0, "rand", "none", None, 0.125, True, 0, "acc"),
    (8, 50000, 4.0, None, "batchmean", None, 1.0, True, 0, ""),
    (8, 50000, 1.0, "zeros", "none", "vec", 0.5, False, 3, ""),
]


# 16-bit logits (dtype, case): the vector and scalar loads, the shared-memory cache and the long-row path,
# grad_t, strided rows, masks and accumulation into 16-bit gradients.
KD_16BIT_CASES = [
    (torch.bfloat16, (3, 7, 4.0, None, "batchmean", None, 1.0, True, 0, "")),
    (torch.float16, (3, 7, 1.0, "zeros", "none", "vec", 0.5, True, 0, "")),
    (torch.bfloat16, (64, 100, 1.0, None, "batchmean", -0.75, 3.0, True, 12, "")),
    (torch.float16, (64, 100, 4.0, "zeros", "batchmean", 1.5, 0.25, True, 0, "acc")),
    (torch.bfloat16, (37, 1031, 4.0, "nanmask", "batchmean", 0.5, 2.0, True, 9, "")),
    (torch.float16, (37, 1031, 10.0, "rand", "none", None, 0.125, True, 0, "acc")),
    (torch.bfloat16, (8, 50000, 4.0, None, "batchmean", None, 1.0, True, 0, "acc")),
    (torch.float16, (8, 50000, 1.0, "zeros", "none", "vec", 0.5, False, 4, "")),
]

_DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16"}


def _kd_case_name(n, c, T, weight, reduction, grad_loss, grad_scale, grad_t, pad, extra):
    parts = [f"{n}x{c}", f"T={T:g}", reduction]
    if weight:
        parts.append(f"w={weight}")
    if grad_loss is not None:
        parts.append("gl=vec" if grad_loss == "vec" else f"gl={grad_loss:g}")
    if grad_scale != 1.0:
        parts.append(f"gs={grad_scale:g}")
    if grad_t:
        parts.append("+grad_t")
    if pad:
        parts.append(f"ld={c + pad}")
    if extra:
        parts.append(extra)
    return " ".join(parts)


def check_kd(device, seed):
    from kdfuse import kd
    from kdfuse_ref.kd import kd_loss

    rows = []
    cases = [(torch.float32, case) for case in KD_CASES] + KD_16BIT_CASES
    for i, (dtype, (n, c, T, weight, reduction, grad_loss, grad_scale, grad_t, pad, extra)) in enumerate(cases):
        name = _kd_case_name(n, c, T, weight, reduction, grad_loss, grad_scale, grad_t, pad, extra)
        if dtype in _DTYPE_NAMES:
            name += " " + _DTYPE_NAMES[dtype]
        g = torch.Generator().manual_seed(seed + i)
        wide_s = (torch.randn(n, c + pad, generator=g) * 3.0).to(dtype)
        wide_t = (torch.randn(n, c + pad, generator=g) * 3.0).to(dtype)
        y_s, y_t = wide_s[:, :c], wide_t[:, :c]
        w = None
        if weight is not None:
            w = torch.rand(n, generator=g) * 2.0
            if weight in ("zeros", "nanmask"):
                w[::3] = 0.0
        gl_ref = None
        gl_dev = None
        if grad_loss == "vec":
            gl_ref = torch.randn(n, generator=g, dtype=torch.float32)
        elif grad_loss is not None:
            gl_ref = torch.tensor(float(grad_loss), dtype=torch.float32)
        # float64 reference from the float32 / 16-bit inputs (masked rows: finite stand-ins, they weigh 0)
        ys64 = y_s.double().clone().requires_grad_(True)
        yt64 = y_t.double().clone().requires_grad_(True)
        w64 = None if w is None else w.double()
        ref_loss = kd_loss(ys64, yt64, T, w64, reduction)
        upstream = torch.ones_like(ref_loss) if gl_ref is None else gl_ref.double().reshape(ref_loss.shape)
        ref_gs, ref_gt = torch.autograd.grad((ref_loss * upstream).sum() * grad_scale, (ys64, yt64))
        if weight == "nanmask":
            wide_s[w == 0] = float("nan")
            wide_t[w == 0] = float("nan")
        acc = None  # accumulate: outputs pre-filled with random values (gradients as slices, ld = c + pad)
        if extra == "acc":
            acc = (torch.randn(ref_loss.shape, generator=g), torch.randn(n, c + pad, generator=g).to(dtype),
                   torch.randn(n, c + pad, generator=g).to(dtype) if grad_t else None)
        # to the device
        to = lambda t: None if t is None else t.to(device)  # noqa: E731
        d_wide_s, d_wide_t = to(wide_s), to(wide_t)
        d_ys, d_yt = d_wide_s[:, :c], d_wide_t[:, :c]
        if gl_ref is not None:
            gl_dev = to(gl_ref)
        out = None
        if acc is not None:  # copies: the library adds into them in place
            out = (acc[0].to(device, copy=True), acc[1].to(device, copy=True)[:, :c],
                   None if acc[2] is None else acc[2].to(device, copy=True)[:, :c])
        try:
            loss, gs, gt = kd(d_ys, d_yt, T=T, weight=to(w), reduction=reduction, grad_loss=gl_dev,
                              grad_scale=grad_scale, accumulate=acc is not None, want_grad_t=grad_t, out=out)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("kd", name, "call", tol="", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        ref_loss = ref_loss.detach()
        if acc is not None:
            ref_loss = ref_loss + acc[0].double()
            ref_gs = ref_gs + acc[1][:, :c].double()
            if grad_t:
                ref_gt = ref_gt + acc[2][:, :c].double()
        rows.append(compare("kd", name, "loss", loss, ref_loss))
        rows.append(compare("kd", name, "grad_s", gs, ref_gs))
        if grad_t:
            rows.append(compare("kd", name, "grad_t", gt, ref_gt))
    return rows


# loss -> (C entry point whose presence means "implemented", checker). KD's checker is above; every other
# loss's is the module kdfuse.check_<loss> (ENTRY, check(device, seed) -> rows), found by checker().
CHECKERS = {
    "kd": ("kdfKD", check_kd),
}


def checker(name):
    if name in CHECKERS:
        return CHECKERS[name]
    try:
        module = importlib.import_module(f"kdfuse.check_{name}")
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
    path printed; None, with the reason on stderr, when it cannot be loaded or the CUDA backend has no device."""
    if path:
        os.environ["KDFUSE_LIB"] = path
    from kdfuse import _lib
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kdfuse.gradcheck", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("simt", "cuda"), default="simt")
    parser.add_argument("--lib", help="path of the shared library (default: KDFUSE_LIB, else build/)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from kdfuse import _lib
    from kdfuse_ref import LOSSES

    loaded = load_for_command("gradcheck", args.backend, args.lib)
    if loaded is None:
        return 2
    lib, device = loaded
    print(f"tolerance: |lib - ref| <= atol + rtol*|ref| elementwise, rtol={RTOL:g}, "
          f"atol={ATOL_FACTOR:g}*max|ref| + {ATOL_FLOOR:g}; reference: kdfuse_ref in float64")
    print()

    start = time.monotonic()
    rows, missing = [], []
    for name in LOSSES:
        entry = checker(name)
        if entry is None or not _lib.has(lib, entry[0]):
            why = "not implemented" if entry is None else f"not implemented (no {entry[0]} in the library)"
            rows.append(Row(name, "-", "-", status=why))
            missing.append(name)
            continue
        rows.extend(entry[1](device, args.seed))
    elapsed = time.monotonic() - start
    print_table(rows)
    passed = sum(r.status == "PASS" for r in rows)
    failed = sum(r.status.startswith("FAIL") for r in rows)
    print()
    print(f"({elapsed:.1f} s)")
    print(f"{passed} passed, {failed} failed")
    if missing:
        print("not implemented: " + " ".join(missing))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
