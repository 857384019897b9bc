"""Golden cases for CRD (see golden.py for the format): sequences of steps with carried state.

Each case is `steps` calls of crd_loss in float64, the banks and Z of step s + 1 being those returned by
step s (float64: the reference's state; the library's is float32, the C++ test compares with tolerances).
Inputs (float32): mem_s, mem_t (initial banks, n_data x D), z (initial {Z_s, Z_t}, -1 = unset) and per
step s: v_s<s>, v_t<s> (N x D), idx<s> (N), cidx<s> (N x (K+1), column 0 = idx) - indices as exact
integers in float32 - and optionally grad_loss<s> (1 value). Expected (float64): loss<s> (weight * loss),
grad_v_s<s>, grad_v_t<s> (of weight * loss * grad_loss * grad_scale, w.r.t. the raw rows when
normalize_inputs is on), mem_s<s>, mem_t<s> (banks after the step) and z<s> ({Z_s, Z_t} after the step).
"""
import math

import torch

from .crd import crd_loss, l2_normalize
from .golden import write_case

Z_MODE_CODES = {"once": 0, "ema": 1}


def _bank(g, n_data, d, normalized):
    """ContrastMemory's initial bank (uniform in +-1/sqrt(D/3)), or its rows L2-normalised."""
    stdv = 1.0 / math.sqrt(d / 3)
    m = torch.rand(n_data, d, generator=g, dtype=torch.float64) * (2 * stdv) - stdv
    return (l2_normalize(m) if normalized else m).float()


def _embeddings(g, n, d, raw):
    """N x D rows: Embed's output (unit rows), or raw linear outputs with norms from 1e-2 to 1e2."""
    v = torch.randn(n, d, generator=g, dtype=torch.float64)
    if raw:
        return (v * 10.0 ** (torch.rand(n, 1, generator=g, dtype=torch.float64) * 4 - 2)).float()
    return l2_normalize(v).float()


def _indices(g, n_data, n, k, prev_idx):
    """idx (distinct, and after the first step holding a row updated by the previous step) and cidx
    (column 0 = idx, the rest uniform in [0, n_data) as the seed's sampler)."""
    idx = torch.randperm(n_data, generator=g)[:n]
    if prev_idx is not None and int(prev_idx[0]) not in idx.tolist():
        idx[-1] = prev_idx[0]
    cidx = torch.randint(0, n_data, (n, k + 1), generator=g)
    cidx[:, 0] = idx
    return idx, cidx


def sequence_case(root, name, mem_s, mem_t, z, steps, n_data, k, T=0.07, momentum=0.5, z_mode="once",
                  z_momentum=0.99, normalize_inputs=False, update_memory=True, weight=1.0, grad_scale=1.0):
    """Writes one case: initial state (float32 banks, z as 2 floats) and `steps`, a list of dicts with
    v_s, v_t (float32), idx, cidx (long) and optionally grad_loss (a number)."""
    inputs = {"mem_s": mem_s, "mem_t": mem_t, "z": torch.tensor(z, dtype=torch.float32)}
    outputs = {}
    ms, mt = mem_s.double(), mem_t.double()
    z_s, z_t = inputs["z"].double()
    for s, st in enumerate(steps):
        v_s = st["v_s"].double().requires_grad_(True)
        v_t = st["v_t"].double().requires_grad_(True)
        loss, ms, mt, z_s, z_t = crd_loss(v_s, v_t, ms, mt, st["idx"], st["cidx"], z_s, z_t, T=T,
                                          momentum=momentum, n_data=n_data, normalize_inputs=normalize_inputs,
                                          z_mode=z_mode, z_momentum=z_momentum, update_memory=update_memory)
        loss = loss * weight
        gl = st.get("grad_loss")
        (loss * (1.0 if gl is None else gl) * grad_scale).backward()
        inputs.update({f"v_s{s}": st["v_s"], f"v_t{s}": st["v_t"], f"idx{s}": st["idx"].float(),
                       f"cidx{s}": st["cidx"].float()})
        if gl is not None:
            inputs[f"grad_loss{s}"] = torch.tensor([gl])
        outputs.update({f"loss{s}": loss.detach().reshape(1), f"grad_v_s{s}": v_s.grad, f"grad_v_t{s}": v_t.grad,
                        f"mem_s{s}": ms, f"mem_t{s}": mt, f"z{s}": torch.stack([z_s, z_t])})
    params = {"steps": len(steps), "n_data": n_data, "k": k, "temperature": repr(float(T)),
              "momentum": repr(float(momentum)), "z_mode": Z_MODE_CODES[z_mode], "z_momentum": repr(float(z_momentum)),
              "normalize_inputs": int(normalize_inputs), "update_memory": int(update_memory),
              "weight": repr(float(weight)), "grad_scale": repr(float(grad_scale))}
    write_case(root, "crd", name, params, inputs, outputs)


def random_case(root, name, n_data, n, k, d, steps, seed, normalized_banks=False, z=(-1.0, -1.0), grad_loss=None,
                **kw):
    """Random banks, embeddings (raw ones with normalize_inputs) and indices for every step."""
    g = torch.Generator().manual_seed(seed)
    mem_s, mem_t = _bank(g, n_data, d, normalized_banks), _bank(g, n_data, d, normalized_banks)
    raw = kw.get("normalize_inputs", False)
    seq, idx = [], None
    for _ in range(steps):
        v_s, v_t = _embeddings(g, n, d, raw), _embeddings(g, n, d, raw)
        idx, cidx = _indices(g, n_data, n, k, idx)
        seq.append({"v_s": v_s, "v_t": v_t, "idx": idx, "cidx": cidx, "grad_loss": grad_loss})
    sequence_case(root, name, mem_s, mem_t, z, seq, n_data, k, **kw)


def duplicates_case(root, name, seed):
    """idx with repeated values within a batch (the last occurrence wins) and repeats inside cidx rows."""
    n_data, n, k, d = 20, 4, 7, 128
    g = torch.Generator().manual_seed(seed)
    mem_s, mem_t = _bank(g, n_data, d, False), _bank(g, n_data, d, False)
    seq = []
    for idx in ([3, 5, 3, 7], [7, 7, 7, 2], [5, 3, 9, 5]):
        idx = torch.tensor(idx)
        cidx = torch.randint(0, n_data, (n, k + 1), generator=g)
        cidx[:, 0] = idx
        cidx[0, 1:4] = cidx[0, 4]  # a negative four times in a row
        cidx[1, 2] = cidx[1, 0]    # the positive again as a negative
        cidx[3, 1:] = cidx[2, 1:]  # two rows with the same negatives
        seq.append({"v_s": _embeddings(g, n, d, False), "v_t": _embeddings(g, n, d, False), "idx": idx,
                    "cidx": cidx})
    sequence_case(root, name, mem_s, mem_t, (-1.0, -1.0), seq, n_data, k)


def parallel_case(root, name, seed):
    """Unit bank rows and embeddings nearly parallel to their positives' rows: exp(<w, v> / T) ~ exp(1 / 0.07)
    = 1.6e6 for every positive (and for the negatives that repeat the positive)."""
    n_data, n, k, d = 40, 4, 7, 128
    g = torch.Generator().manual_seed(seed)
    mem_s, mem_t = _bank(g, n_data, d, True), _bank(g, n_data, d, True)
    seq, idx = [], None
    for _ in range(2):
        idx, cidx = _indices(g, n_data, n, k, idx)
        cidx[:, 1] = idx
        # v_s is scored against memory_t, v_t against memory_s
        v_s = l2_normalize(mem_t[idx].double() + 1e-3 * torch.randn(n, d, generator=g, dtype=torch.float64)).float()
        v_t = l2_normalize(mem_s[idx].double() + 1e-3 * torch.randn(n, d, generator=g, dtype=torch.float64)).float()
        seq.append({"v_s": v_s, "v_t": v_t, "idx": idx, "cidx": cidx})
    sequence_case(root, name, mem_s, mem_t, (-1.0, -1.0), seq, n_data, k)


def cases(root):
    random_case(root, "k1_n4_d128", 24, 4, 1, 128, 3, seed=0)
    random_case(root, "n1_k7_d128", 20, 1, 7, 128, 3, seed=1)
    random_case(root, "n4_k7_d128_once", 50, 4, 7, 128, 3, seed=2)
    random_case(root, "n4_k7_d128_ema_zm0.5", 50, 4, 7, 128, 3, seed=2, z_mode="ema", z_momentum=0.5)
    random_case(root, "n5_k6_d64_normalize_inputs", 30, 5, 6, 64, 3, seed=3, normalized_banks=True,
                normalize_inputs=True)
    random_case(root, "n4_k7_d128_no_update", 32, 4, 7, 128, 2, seed=4, update_memory=False)
    duplicates_case(root, "n4_k7_d128_duplicate_indices", seed=5)
    random_case(root, "n3_k5_d128_z_given", 32, 3, 5, 128, 2, seed=6, z=(80.0, 150.0))
    random_case(root, "n6_k9_d37_T0.5_ema", 25, 6, 9, 37, 3, seed=7, T=0.5, z_mode="ema")
    # D = 1: unit rows are +-1, and momentum 0.5 would make pos = 0 (NaN, the seed's) for opposite signs
    random_case(root, "n4_k3_d1_momentum0.9", 16, 4, 3, 1, 3, seed=8, momentum=0.9)
    random_case(root, "n4_k7_d128_weighted", 32, 4, 7, 128, 2, seed=9, weight=0.8, grad_loss=0.5, grad_scale=-2.0)
    parallel_case(root, "n4_k7_d128_nearly_parallel", seed=10)
    random_case(root, "n16_k255_d128_large", 300, 16, 255, 128, 2, seed=11)
    # D > 128: the kernels' 32-values-per-lane instantiation
    random_case(root, "n3_k40_d300_wide_normalize_inputs", 60, 3, 40, 300, 2, seed=12, normalize_inputs=True)
