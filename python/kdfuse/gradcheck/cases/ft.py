"""Gradient-check cases of FT (used by python -m kdfuse.gradcheck); options and scales as the AT cases (at.py)."""
from .at import run_cases

ENTRY = "kdfFT"

CASES = [
    ((1, 1, 1, 1), (1, 1, 1, 1), {}),
    ((3, 5, 7, 9), (3, 6, 14, 18), {"pool": "hw"}),
    ((3, 6, 14, 18), (3, 5, 7, 9), {"pool": "hw"}),
    ((2, 3, 11, 13), (2, 5, 4, 5), {"pool": "hw", "grad_scale": 0.5}),
    ((1, 2, 9, 2050), (1, 1, 4, 1025), {"pool": "hw"}),  # pooled student staged in two row tiles
    ((4, 16, 8, 8), (4, 32, 8, 8), {"weight": 1.0, "grad_loss": 0.5, "grad_scale": -1024.0}),
    ((2, 8, 16, 16), (2, 4, 8, 8), {"p2": 2.0, "pad": 3, "acc": True}),
    ((4, 7, 5, 6), (4, 3, 5, 6), {"p2": 3.0, "pad": 2, "acc": True, "grad_loss": 2.0}),
    ((2, 32, 32, 32), (2, 64, 16, 16), {"p1": 1.5, "positive": True}),
    ((8, 64, 16, 16), (8, 128, 16, 16), {}),
    ((64, 64, 8, 8), (64, 64, 8, 8), {}),
]
BETA = 200.0  # RepDistiller's weight of FT


def check(device, seed):
    from kdfuse.binding.ft import ft
    from kdfuse_ref.ft import ft_loss

    return run_cases("ft", CASES, ft, ft_loss, device, seed, BETA)
