"""CRD (Tian et al.; RepDistiller's CRDLoss) through kdfCRD: the NCE loss of two embedding batches against the
caller's memory banks, both embeddings' gradients, and the bank and Z updates, in one call (docs/losses/crd.md).

The state is the caller's: memory_s, memory_t (n_data x D float32) and z ({Z_s, Z_t} float32, -1 = unset)
are read and updated in place, on the tensors' device and stream. Contrast indices are given (N x (K+1),
column 0 the positive) or drawn by the library from Philox (seed, offset); draw_contrast returns the drawn
ones."""
import ctypes
import numbers
import os

import torch

from . import _abi, _feature, _lib
from ._lib import KDF_STATUS_INVALID_VALUE, KDF_STATUS_SHAPE_MISMATCH, binding_error
from .kd import backend_of
from .pkt import embedding

_FN = "kdfuse.crd"

_INDEX_TYPES = {torch.int32: _lib.KDF_INDEX_INT32, torch.int64: _lib.KDF_INDEX_INT64}
_Z_MODES = {"once": _lib.KDF_CRD_Z_ONCE, "ema": _lib.KDF_CRD_Z_EMA}


CRDParams = _abi.STRUCTS["kdfCRDParams_t"]


def _err(status, detail):
    return binding_error(status, detail, _FN)


def _tensor(t, name, dtypes, shape, device):
    """Checks a contiguous tensor of one of `dtypes`, `shape` and `device` (the state, indices, scalars)."""
    if not isinstance(t, torch.Tensor):
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must be {' or '.join(map(str, dtypes))}, got {t.dtype}")
    if t.device != device:
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} is on {t.device}, v_s on {device}")
    if tuple(t.shape) != tuple(shape):
        raise _err(KDF_STATUS_SHAPE_MISMATCH, f"{name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if not t.is_contiguous():
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must be contiguous")
    _feature.check_buffer(t, name, t.numel() * t.element_size(), _FN)


def _scalar(t, name, device):
    """Checks a float32 tensor of one element on `device` (loss, grad_loss)."""
    _tensor(t, name, (torch.float32,), t.shape if isinstance(t, torch.Tensor) and t.numel() == 1 else (1,), device)


def _rows(t, name):
    """(t, ld) of an N x D float32 embedding (or gradient) with unit column stride."""
    if isinstance(t, torch.Tensor) and t.dim() != 2:
        raise _err(KDF_STATUS_SHAPE_MISMATCH, f"{name} must be 2-D (N x D), got shape {tuple(t.shape)}")
    return embedding(t, name, _FN)


def _grad_out(g, v, ld, name):
    """The gradient output of embedding v (row stride ld): g checked, or a new zeroed one with v's layout."""
    if g is None:
        return torch.empty_strided(v.shape, (ld, 1), dtype=torch.float32, device=v.device).zero_()
    g2, ld_g = _rows(g, name)
    if g2.device != v.device or g2.shape != v.shape or ld_g != ld:
        raise _err(KDF_STATUS_SHAPE_MISMATCH, f"{name} must have the shape, row stride and device of its "
                                              f"embedding ({tuple(v.shape)}, {ld}, {v.device})")
    return g


def check_indices_default(device):
    """Whether crd() reads the call's index status and raises on a bad index: always for CPU tensors (the SIMT
    build has already finished, so the read costs nothing), for CUDA tensors only with KDFUSE_DEBUG=1 (the read
    synchronises the stream)."""
    return device.type != "cuda" or os.environ.get("KDFUSE_DEBUG") == "1"


def crd(v_s, v_t, memory_s, memory_t, idx, contrast_idx, z, temperature=0.07, momentum=0.5, z_mode="once",
        z_momentum=0.99, normalize_inputs=False, update_memory=True, seed=None, offset=0, k=None, weight=1.0,
        grad_loss=None, grad_scale=1.0, accumulate=False, want_loss=True, want_grad_s=True, want_grad_t=True,
        out=None, check_indices=None):
    """(loss, grad_s, grad_t) of weight * CRD(v_s, v_t) against the banks; updates the state in place.

    v_s, v_t: N x D float32 embeddings (unit column stride, rows may be strided), L2-normalised already, or
      raw with normalize_inputs=True (then normalised here without eps, and the gradients are w.r.t. them).
    memory_s, memory_t: n_data x D float32 contiguous banks (student / teacher features), updated at idx
      (momentum, then L2 normalisation; the last of duplicated indices wins) when update_memory is True.
    z: 2 float32 {Z_s, Z_t} (< 0 = unset), written back (z_mode "once": set from the first batch;
      "ema": Z = z_momentum Z + (1 - z_momentum) estimate on every later call).
    idx: N int32 / int64 dataset indices (may be None with update_memory=False and given contrast_idx).
    contrast_idx: N x (K+1) indices of idx's dtype (column 0 the positive), or None to draw them on the
      device: column 0 = idx, the others from Philox with key `seed` (required) and counter `offset` (use a
      new one per step); K then from `k`. K = contrast_idx.shape[1] - 1 otherwise (k, if given, must agree).
    grad_loss: device float32 scalar tensor, a Python number (folded into grad_scale) or None (= 1);
      grad_scale: factor on the gradients. accumulate=True adds into out=(loss, grad_s, grad_t).
    want_*: which outputs to compute when out does not give them (the others are passed as NULL).
    An index outside [0, n_data) leaves the banks and z untouched and makes the outputs NaN (the library's
    device-side index status); with check_indices (default: check_indices_default(device)) that status is read
    after the call and IndexError is raised.
    """
    for name, t in (("v_s", v_s), ("v_t", v_t)):
        if not isinstance(t, torch.Tensor):
            raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must be a torch.Tensor, got {type(t).__name__}")
    device = v_s.device
    backend = backend_of(device)
    s2, ld_s = _rows(v_s, "v_s")
    t2, ld_t = _rows(v_t, "v_t")
    if s2.shape != t2.shape:
        raise _err(KDF_STATUS_SHAPE_MISMATCH, f"v_s has shape {tuple(s2.shape)}, v_t {tuple(t2.shape)}")
    if t2.device != device:
        raise _err(KDF_STATUS_INVALID_VALUE, f"v_t is on {t2.device}, v_s on {device}")
    n, d = s2.shape
    if not isinstance(memory_s, torch.Tensor) or memory_s.dim() != 2:
        raise _err(KDF_STATUS_SHAPE_MISMATCH, "memory_s must be a 2-D tensor (n_data x D)")
    n_data = memory_s.shape[0]
    _tensor(memory_s, "memory_s", (torch.float32,), (n_data, d), device)
    _tensor(memory_t, "memory_t", (torch.float32,), (n_data, d), device)
    _tensor(z, "z", (torch.float32,), (2,), device)
    if z_mode not in _Z_MODES:
        raise _err(KDF_STATUS_INVALID_VALUE, f"z_mode must be 'once' or 'ema', not {z_mode!r}")

    index_source = idx if contrast_idx is None else contrast_idx
    index_dtype = index_source.dtype if isinstance(index_source, torch.Tensor) else torch.int64
    if index_dtype not in _INDEX_TYPES:
        raise _err(KDF_STATUS_INVALID_VALUE, f"indices must be torch.int32 or torch.int64, got {index_dtype}")
    if contrast_idx is None:
        if seed is None or k is None:
            raise _err(KDF_STATUS_INVALID_VALUE, "contrast_idx=None draws the indices: give seed and k")
    else:
        if not isinstance(contrast_idx, torch.Tensor) or contrast_idx.dim() != 2:
            raise _err(KDF_STATUS_SHAPE_MISMATCH, "contrast_idx must be a 2-D tensor (N x (K+1))")
        if k is not None and contrast_idx.shape[1] != k + 1:
            raise _err(KDF_STATUS_SHAPE_MISMATCH, f"contrast_idx has {contrast_idx.shape[1]} columns, "
                                                  f"k = {k} needs K + 1 = {k + 1}")
        k = contrast_idx.shape[1] - 1
        _tensor(contrast_idx, "contrast_idx", (index_dtype,), (n, k + 1), device)
    if idx is not None:
        _tensor(idx, "idx", (index_dtype,), (n,), device)

    grad_scale = float(grad_scale)
    if isinstance(grad_loss, numbers.Real) and not isinstance(grad_loss, bool):
        grad_scale *= float(grad_loss)  # the upstream gradient only scales the gradients
        grad_loss = None
    elif grad_loss is not None:
        _scalar(grad_loss, "grad_loss", device)

    loss, grad_s, grad_t = out if out is not None else (None, None, None)
    if loss is None and want_loss:
        loss = torch.zeros((), dtype=torch.float32, device=device)
    elif loss is not None:
        _scalar(loss, "loss", device)
    if grad_s is not None or want_grad_s:
        grad_s = _grad_out(grad_s, s2, ld_s, "grad_s")
    if grad_t is not None or want_grad_t:
        grad_t = _grad_out(grad_t, t2, ld_t, "grad_t")

    params = CRDParams(rows=n, dim=d, ld_student=ld_s, ld_teacher=ld_t, n_data=n_data, k=k,
                       index_type=_INDEX_TYPES[index_dtype], temperature=float(temperature), momentum=float(momentum),
                       z_mode=_Z_MODES[z_mode], z_momentum=float(z_momentum),
                       normalize_inputs=int(bool(normalize_inputs)), update_memory=int(bool(update_memory)),
                       draw_contrast=int(contrast_idx is None), seed=0 if seed is None else int(seed),
                       offset=int(offset), weight=float(weight))
    if check_indices is None:
        check_indices = check_indices_default(device)
    index_status = torch.zeros(1, dtype=torch.int32, device=device) if check_indices else None
    _feature.call("kdfCRD", "kdfCRDWorkspaceSize", params,
                  [_feature.ptr(s2), _feature.ptr(t2), _feature.ptr(memory_s), _feature.ptr(memory_t),
                   _feature.ptr(idx), _feature.ptr(contrast_idx), _feature.fptr(z), _feature.ptr(index_status),
                   _feature.fptr(loss), _feature.ptr(grad_s), _feature.ptr(grad_t), _feature.fptr(grad_loss),
                   ctypes.c_float(grad_scale), 1 if accumulate else 0], device, backend)
    if index_status is not None and int(index_status.item()) != 0:
        raise IndexError(f"{_FN}: an index of idx or contrast_idx is outside [0, n_data) = [0, {n_data}); the banks "
                         f"and z were left unchanged and the outputs are NaN")
    return loss, grad_s, grad_t


def draw_contrast(idx, n_data, k, seed, offset=0, index_dtype=torch.int64):
    """The N x (K+1) contrast indices (index_dtype, on idx's device) that crd(..., contrast_idx=None, seed=seed,
    offset=offset, k=k) uses: column 0 = idx (int32 or int64, converted to index_dtype), c[i, j >= 1] =
    high 64 bits of x * n_data, x the first output of Philox4x64-10 with key (seed, 0) and counter
    (i (K+1) + j, offset, 0, 0)."""
    if not isinstance(idx, torch.Tensor):
        raise _err(KDF_STATUS_INVALID_VALUE, f"idx must be a torch.Tensor, got {type(idx).__name__}")
    if idx.dtype not in _INDEX_TYPES or index_dtype not in _INDEX_TYPES:
        raise _err(KDF_STATUS_INVALID_VALUE, f"idx and index_dtype must be torch.int32 or torch.int64, got "
                                             f"{idx.dtype} and {index_dtype}")
    if idx.dim() != 1:
        raise _err(KDF_STATUS_SHAPE_MISMATCH, f"idx must be 1-D (N), got shape {tuple(idx.shape)}")
    device = idx.device
    backend = backend_of(device)
    idx = idx.to(index_dtype).contiguous()
    contrast_idx = torch.empty(idx.shape[0], k + 1, dtype=index_dtype, device=device)
    params = CRDParams(rows=idx.shape[0], dim=1, n_data=int(n_data), k=int(k), index_type=_INDEX_TYPES[index_dtype],
                       draw_contrast=1, seed=int(seed), offset=int(offset))
    _feature.call_without_workspace("kdfCRDDrawContrast", [ctypes.byref(params), _feature.ptr(idx),
                                                           _feature.ptr(contrast_idx)], device, backend)
    return contrast_idx
