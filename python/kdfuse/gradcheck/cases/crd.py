"""Gradient-check cases of CRD (used by python -m kdfuse.gradcheck).

Every case runs several steps with carried state: the library's banks and Z (float32, updated in place) and
the reference's (float64, returned by crd_loss) evolve side by side from the same initial float32 values; each
step compares the loss, both gradients, both banks and Z."""
import math

import torch

from .. import Row, compare

ENTRY = "kdfCRD"

# (n_data, N, K, D, steps, z_mode, z_momentum, normalize_inputs, weight, grad_loss, grad_scale, row padding, extra)
#   extra: space-separated flags: "dup" (duplicated indices in idx and in contrast rows), "drawn" (contrast
#   indices drawn by the library, the reference fed draw_contrast's), "eval" (update_memory off), "acc"
#   (accumulate into random outputs), "int32" (int32 indices)
CASES = [
    (64, 8, 31, 128, 3, "once", 0.99, False, 1.0, None, 1.0, 0, ""),
    (64, 8, 31, 128, 3, "ema", 0.5, False, 1.0, None, 1.0, 0, ""),
    (40, 5, 9, 64, 3, "ema", 0.9, True, 1.0, None, 1.0, 0, "int32"),
    (50, 4, 1, 128, 3, "once", 0.99, False, 1.0, None, 1.0, 0, ""),
    (30, 6, 11, 128, 3, "once", 0.99, True, 1.0, None, 1.0, 0, "dup"),
    (100, 8, 63, 37, 3, "ema", 0.99, False, 1.0, None, 1.0, 0, "drawn"),
    (100, 8, 63, 128, 3, "once", 0.99, True, 1.0, None, 1.0, 0, "drawn int32"),
    (48, 7, 15, 128, 2, "once", 0.99, False, 0.8, 0.5, -2.0, 3, "acc"),
    (48, 4, 15, 96, 2, "ema", 0.5, True, 1.0, None, 1.0, 0, "eval"),
    (4096, 16, 2047, 128, 2, "once", 0.99, False, 1.0, None, 1.0, 0, ""),
]


def _case_name(n_data, n, k, d, steps, z_mode, z_momentum, normalize, weight, grad_loss, grad_scale, pad, extra):
    parts = [f"{n}x{d} K={k} n_data={n_data}", z_mode + (f" zm={z_momentum:g}" if z_mode == "ema" else "")]
    if normalize:
        parts.append("norm")
    if weight != 1:
        parts.append(f"w={weight:g}")
    if grad_loss is not None:
        parts.append(f"gl={grad_loss:g}")
    if grad_scale != 1:
        parts.append(f"gs={grad_scale:g}")
    if pad:
        parts.append(f"ld+{pad}")
    if extra:
        parts.append(extra)
    return " ".join(parts)


def check(device, seed):
    from kdfuse.binding.crd import crd, draw_contrast
    from kdfuse_ref.crd import crd_loss, l2_normalize

    rows = []
    for i, case in enumerate(CASES):
        n_data, n, k, d, steps, z_mode, z_momentum, normalize, weight, grad_loss, grad_scale, pad, extra = case
        name = _case_name(*case)
        flags = extra.split()
        index_dtype = torch.int32 if "int32" in flags else torch.int64
        g = torch.Generator().manual_seed(seed + 1400 + i)
        stdv = 1.0 / math.sqrt(d / 3)  # ContrastMemory's initial banks
        mem_s = torch.rand(n_data, d, generator=g) * (2 * stdv) - stdv
        mem_t = torch.rand(n_data, d, generator=g) * (2 * stdv) - stdv
        lib_ms, lib_mt, lib_z = mem_s.to(device, copy=True), mem_t.to(device, copy=True), torch.full((2,), -1.0,
                                                                                                       device=device)
        ref_ms, ref_mt, ref_zs, ref_zt = mem_s.double(), mem_t.double(), None, None
        gl = None if grad_loss is None else torch.tensor(grad_loss, dtype=torch.float32, device=device)
        for s in range(steps):
            v_s, v_t = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
            if normalize:  # raw linear outputs of various norms
                v_s = v_s * 10.0 ** (torch.rand(n, 1, generator=g) * 2 - 1)
                v_t = v_t * 10.0 ** (torch.rand(n, 1, generator=g) * 2 - 1)
            else:  # Embed's output
                v_s, v_t = l2_normalize(v_s), l2_normalize(v_t)
            idx = torch.randperm(n_data, generator=g)[:n]
            if "dup" in flags:
                idx[2], idx[4] = idx[0], idx[1]
            if "drawn" in flags:
                cidx = draw_contrast(idx.to(device, index_dtype), n_data, k, seed=seed + 77, offset=s,
                                     index_dtype=index_dtype).cpu().long()
            else:
                cidx = torch.randint(0, n_data, (n, k + 1), generator=g)
                cidx[:, 0] = idx
                if "dup" in flags:
                    cidx[0, 2:] = cidx[0, 1]
                    cidx[1, 1] = idx[1]
            # reference, float64 from the float32 inputs and the float64 state
            s64, t64 = v_s.double().requires_grad_(True), v_t.double().requires_grad_(True)
            ref_loss, ref_ms, ref_mt, ref_zs, ref_zt = crd_loss(
                s64, t64, ref_ms, ref_mt, idx, cidx, ref_zs, ref_zt, T=0.07, momentum=0.5, n_data=n_data,
                normalize_inputs=normalize, z_mode=z_mode, z_momentum=z_momentum, update_memory="eval" not in flags)
            ref_loss = ref_loss * weight
            ref_gs, ref_gt = torch.autograd.grad(ref_loss * (1.0 if grad_loss is None else grad_loss) * grad_scale,
                                                 (s64, t64))
            ref_loss = ref_loss.detach()
            # library inputs: rows as slices of wider matrices with padding, outputs pre-filled with accumulate
            wide_s, wide_t = torch.randn(n, d + pad, generator=g), torch.randn(n, d + pad, generator=g)
            wide_s[:, :d], wide_t[:, :d] = v_s, v_t
            out = None
            if "acc" in flags:
                prev = (torch.randn((), generator=g), torch.randn(n, d + pad, generator=g),
                        torch.randn(n, d + pad, generator=g))
                out = (prev[0].to(device), prev[1].to(device)[:, :d], prev[2].to(device)[:, :d])
                ref_loss = ref_loss + prev[0].double()
                ref_gs, ref_gt = ref_gs + prev[1][:, :d].double(), ref_gt + prev[2][:, :d].double()
            drawn = "drawn" in flags
            try:
                loss, gs, gt = crd(wide_s.to(device)[:, :d], wide_t.to(device)[:, :d], lib_ms, lib_mt,
                                   idx.to(device, index_dtype), None if drawn else cidx.to(device, index_dtype),
                                   lib_z, temperature=0.07, momentum=0.5, z_mode=z_mode, z_momentum=z_momentum,
                                   normalize_inputs=normalize, update_memory="eval" not in flags,
                                   seed=seed + 77 if drawn else None, offset=s, k=k, weight=weight, grad_loss=gl,
                                   grad_scale=grad_scale, accumulate=out is not None, out=out)
            except Exception as e:  # noqa: BLE001 - reported as a failed row
                rows.append(Row("crd", name, f"call step {s}", status=f"FAIL ({type(e).__name__}: {e})"))
                break
            rows.append(compare("crd", name, f"loss step {s}", loss, ref_loss))
            rows.append(compare("crd", name, f"grad_s step {s}", gs, ref_gs))
            rows.append(compare("crd", name, f"grad_t step {s}", gt, ref_gt))
            rows.append(compare("crd", name, f"memory_s step {s}", lib_ms, ref_ms))
            rows.append(compare("crd", name, f"memory_t step {s}", lib_mt, ref_mt))
            rows.append(compare("crd", name, f"z step {s}", lib_z, torch.stack([ref_zs, ref_zt])))
    return rows
