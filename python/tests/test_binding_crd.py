"""The ctypes binding of kdfCRD / kdfCRDDrawContrast (python/kdfuse/binding/crd.py) on the SIMT build: the drawn
contrast indices against numpy's Philox bit for bit, the state updated in place, values against kdfuse_ref,
output modes and error reporting. Skipped when the SIMT library is not built (or lacks kdfCRD)."""
import ctypes
import math

import numpy as np
import pytest
import torch

from kdfuse import KdfuseError, crd, draw_contrast
from kdfuse.binding import _lib
from kdfuse.binding.crd import CRDParams
from kdfuse_ref.crd import crd_loss, l2_normalize

from simt_library import load_or_skip

LIB = load_or_skip("kdfCRD")

RTOL = 1e-4


def philox_indices(idx, n_data, k, seed, offset):
    """The contrast indices of the C API from numpy's Philox4x64-10: for e = i (K+1) + j (j >= 1), the first
    output lane of the block at counter (e, offset, 0, 0) with key (seed, 0) (numpy increments the counter
    before generating, hence e - 1), times n_data, high 64 bits. The counter goes in as a uint64 array: a
    Python list holding a value >= 2^63 would be converted through float64 and rounded."""
    out = np.empty((len(idx), k + 1), dtype=np.int64)
    for i, positive in enumerate(idx):
        out[i, 0] = positive
        for j in range(1, k + 1):
            e = i * (k + 1) + j
            counter = np.array([e - 1, offset, 0, 0], dtype=np.uint64)
            x = int(np.random.Philox(key=seed, counter=counter).random_raw())
            out[i, j] = (x * n_data) >> 64
    return out


def assert_close(got, ref):
    ref = ref.to(torch.float64)
    atol = 1e-6 * max(1.0, ref.abs().max().item())
    torch.testing.assert_close(got.to(torch.float64), ref, rtol=RTOL, atol=atol)


def expect_error(name, fn):
    with pytest.raises(KdfuseError) as e:
        fn()
    assert e.value.name == name, str(e.value)
    return e.value


class Problem:
    """A small CRD setup: unit embeddings, ContrastMemory-like banks, distinct idx, random contrast indices."""

    def __init__(self, n=6, k=9, d=32, n_data=40, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.n, self.k, self.d, self.n_data = n, k, d, n_data
        self.v_s = l2_normalize(torch.randn(n, d, generator=g))
        self.v_t = l2_normalize(torch.randn(n, d, generator=g))
        stdv = 1.0 / math.sqrt(d / 3)
        self.memory_s = torch.rand(n_data, d, generator=g) * (2 * stdv) - stdv
        self.memory_t = torch.rand(n_data, d, generator=g) * (2 * stdv) - stdv
        self.idx = torch.randperm(n_data, generator=g)[:n]
        self.cidx = torch.randint(0, n_data, (n, k + 1), generator=g)
        self.cidx[:, 0] = self.idx
        self.z = torch.full((2,), -1.0)

    def state(self):
        """Fresh copies of (memory_s, memory_t, z)."""
        return self.memory_s.clone(), self.memory_t.clone(), self.z.clone()

    def call(self, state=None, **kw):
        ms, mt, z = state if state is not None else self.state()
        args = dict(v_s=self.v_s, v_t=self.v_t, memory_s=ms, memory_t=mt, idx=self.idx, contrast_idx=self.cidx, z=z)
        args.update(kw)
        return crd(**args)


def test_params_layout():
    assert ctypes.sizeof(CRDParams) == 120
    p = CRDParams()
    assert (p.struct_size, p.dim, p.k, p.index_type, p.update_memory, p.draw_contrast) == (120, 128, 16384, 1, 1, 0)
    size = ctypes.c_size_t()
    LIB.kdfCRDWorkspaceSize(ctypes.byref(CRDParams(rows=4, n_data=10)), ctypes.byref(size))  # struct_size accepted


@pytest.mark.parametrize("n,k,n_data,seed,offset", [
    (3, 7, 50, 0, 0),
    (5, 20, 1000, 1234, 3),
    (2, 1, 2, 7, 1),
    (4, 16, 1 << 40, 2**64 - 1, 2**63 + 5),
    (1, 33, 2**31 - 1, 99, 2**32),
])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_draw_matches_numpy_philox(n, k, n_data, seed, offset, index_dtype):
    if index_dtype == torch.int32 and n_data > 2**31 - 1:
        pytest.skip("n_data does not fit int32 indices")
    idx = torch.arange(n, dtype=torch.int64) * 3 % min(n_data, 2**31 - 1)
    got = draw_contrast(idx, n_data, k, seed, offset, index_dtype=index_dtype)
    assert got.dtype == index_dtype and got.shape == (n, k + 1)
    expected = philox_indices(idx.tolist(), n_data, k, seed, offset)
    assert np.array_equal(got.long().numpy(), expected)


def test_draw_range_reproducibility_and_offsets():
    idx = torch.tensor([4, 0, 17, 4, 99], dtype=torch.int32)
    a = draw_contrast(idx, 100, 255, seed=42, offset=7)
    assert torch.equal(a, draw_contrast(idx, 100, 255, seed=42, offset=7))
    assert torch.equal(a[:, 0], idx.long())
    assert int(a.min()) >= 0 and int(a.max()) < 100
    assert len(torch.unique(a[:, 1:])) > 90  # 1275 uniform draws from 100 values
    assert not torch.equal(a[:, 1:], draw_contrast(idx, 100, 255, seed=42, offset=8)[:, 1:])
    assert not torch.equal(a[:, 1:], draw_contrast(idx, 100, 255, seed=43, offset=7)[:, 1:])
    assert torch.equal(a, draw_contrast(idx, 100, 255, seed=42, offset=7, index_dtype=torch.int32).long())


def test_matches_reference_over_steps_and_updates_state_in_place():
    """Three steps in EMA mode with raw inputs: outputs and the caller's banks and z against the reference."""
    p = Problem()
    ms, mt, z = p.state()
    ref_ms, ref_mt, ref_zs, ref_zt = p.memory_s.double(), p.memory_t.double(), None, None
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        u_s, u_t = torch.randn(p.n, p.d, generator=g) * 3, torch.randn(p.n, p.d, generator=g) * 0.2
        s64, t64 = u_s.double().requires_grad_(True), u_t.double().requires_grad_(True)
        ref_loss, ref_ms, ref_mt, ref_zs, ref_zt = crd_loss(
            s64, t64, ref_ms, ref_mt, p.idx, p.cidx, ref_zs, ref_zt, n_data=p.n_data, normalize_inputs=True,
            z_mode="ema", z_momentum=0.9)
        ref_gs, ref_gt = torch.autograd.grad(ref_loss * 0.8 * 1.5, (s64, t64))
        loss, gs, gt = crd(u_s, u_t, ms, mt, p.idx, p.cidx, z, z_mode="ema", z_momentum=0.9, normalize_inputs=True,
                           weight=0.8, grad_loss=torch.tensor(1.5))
        assert loss.shape == () and loss.dtype == torch.float32
        assert_close(loss, ref_loss.detach() * 0.8)
        assert_close(gs, ref_gs)
        assert_close(gt, ref_gt)
        assert_close(ms, ref_ms)
        assert_close(mt, ref_mt)
        assert_close(z, torch.stack([ref_zs, ref_zt]))
    assert not torch.equal(ms, p.memory_s) and not torch.equal(mt, p.memory_t)


def test_drawn_call_equals_call_with_drawn_indices():
    p = Problem(n=5, k=40, n_data=60, seed=2)
    cidx = draw_contrast(p.idx, p.n_data, p.k, seed=11, offset=4)
    given_state, drawn_state = p.state(), p.state()
    given = p.call(given_state, contrast_idx=cidx)
    drawn = p.call(drawn_state, contrast_idx=None, seed=11, offset=4, k=p.k)
    for a, b in zip(given + given_state, drawn + drawn_state):
        assert torch.equal(a, b)


def test_int32_and_int64_indices_agree():
    p = Problem(seed=3)
    s64, s32 = p.state(), p.state()
    r64 = p.call(s64)
    r32 = p.call(s32, idx=p.idx.int(), contrast_idx=p.cidx.int())
    for a, b in zip(r64 + s64, r32 + s32):
        assert torch.equal(a, b)


def test_evaluation_mode_and_z_given():
    p = Problem(seed=4)
    ms, mt, z = p.state()
    z.copy_(torch.tensor([70.0, 90.0]))
    p.call((ms, mt, z), update_memory=False, idx=None)
    assert torch.equal(ms, p.memory_s) and torch.equal(mt, p.memory_t)
    assert torch.equal(z, torch.tensor([70.0, 90.0]))  # once: a set Z stays


def test_output_selection_and_accumulate():
    p = Problem(seed=5)
    full = p.call()
    loss_only = p.call(want_grad_s=False, want_grad_t=False)
    assert loss_only[1] is None and loss_only[2] is None
    assert torch.equal(loss_only[0], full[0])
    grads_only = p.call(want_loss=False)
    assert grads_only[0] is None
    assert torch.equal(grads_only[1], full[1]) and torch.equal(grads_only[2], full[2])
    base = (torch.tensor(1.25), torch.ones(p.n, p.d), torch.full((p.n, p.d), -2.0))
    out = tuple(t.clone() for t in base)
    ret = p.call(accumulate=True, out=out)
    for r, o, b, f in zip(ret, out, base, full):
        assert r is o
        torch.testing.assert_close(o, b + f, rtol=1e-6, atol=1e-6)


def test_strided_rows():
    p = Problem(seed=6)
    wide_s, wide_t = torch.randn(p.n, p.d + 5), torch.randn(p.n, p.d + 3)
    wide_s[:, :p.d], wide_t[:, :p.d] = p.v_s, p.v_t
    loss, gs, gt = p.call(v_s=wide_s[:, :p.d], v_t=wide_t[:, :p.d])
    assert gs.stride() == (p.d + 5, 1) and gt.stride() == (p.d + 3, 1)
    ref = p.call()
    assert torch.equal(loss, ref[0]) and torch.equal(gs, ref[1]) and torch.equal(gt, ref[2])


def test_binding_type_errors():
    p = Problem(seed=7)
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(v_s=p.v_s.double()))
    expect_error("KDF_STATUS_NOT_SUPPORTED", lambda: p.call(v_s=p.v_s.half(), v_t=p.v_t.half()))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call((p.memory_s.double(), p.memory_t.clone(), p.z.clone())))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call((p.memory_s.clone(), p.memory_t.clone(), p.z.double())))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(idx=p.idx.float(), contrast_idx=p.cidx.float()))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(idx=p.idx.int()))  # idx int32, contrast_idx int64
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(grad_loss=torch.tensor(1.0, dtype=torch.float64)))
    expect_error("KDF_STATUS_INVALID_VALUE",  # a bank that is not contiguous
                 lambda: p.call((torch.rand(p.d, p.n_data).t(), p.memory_t.clone(), p.z.clone())))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(z_mode="always"))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(contrast_idx=None, k=p.k))  # drawing needs a seed
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(contrast_idx=None, seed=1))  # ... and k
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: draw_contrast(p.idx.float(), p.n_data, p.k, seed=1))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: draw_contrast(p.idx, p.n_data, p.k, 1, index_dtype=torch.int16))


def test_binding_shape_errors():
    p = Problem(seed=8)
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: p.call(v_t=p.v_t[:-1]))
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: p.call(v_s=p.v_s[0], v_t=p.v_t[0]))
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: p.call((p.memory_s[:, :-1].contiguous(), p.memory_t.clone(),
                                                              p.z.clone())))
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: p.call((p.memory_s.clone(), p.memory_t[:-1].clone(),
                                                              p.z.clone())))
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: p.call((p.memory_s.clone(), p.memory_t.clone(), torch.ones(3))))
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: p.call(idx=p.idx[:-1]))
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: p.call(contrast_idx=p.cidx[:-1]))
    err = expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: p.call(k=p.k + 1))  # K + 1 columns mismatch
    assert "columns" in err.detail
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: p.call(out=(None, torch.zeros(p.n, p.d + 1), None)))
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: draw_contrast(p.cidx, p.n_data, p.k, seed=1))


def test_library_errors():
    p = Problem(seed=9)
    err = expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(temperature=0.0))
    assert err.function == "kdfCRDWorkspaceSize" and "temperature" in err.detail
    expect_error("KDF_STATUS_NOT_SUPPORTED", lambda: p.call(temperature=0.01))  # below 1/64
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(momentum=1.5))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(z_momentum=-0.1))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(contrast_idx=p.cidx[:, :1].contiguous()))  # K = 0
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call(grad_scale=float("nan")))
    expect_error("KDF_STATUS_NULL_POINTER", lambda: p.call(idx=None))  # update_memory needs idx
    ms, _, z = p.state()
    err = expect_error("KDF_STATUS_INVALID_VALUE", lambda: p.call((ms, ms, z)))
    assert "memory_s overlaps memory_t" in err.detail
    wide = Problem(n=2, k=3, d=1025, n_data=8, seed=10)
    expect_error("KDF_STATUS_NOT_SUPPORTED", lambda: wide.call())  # D > 1024
    expect_error("KDF_STATUS_INVALID_VALUE",  # n_data beyond int32 indices
                 lambda: draw_contrast(p.idx, 2**31, p.k, seed=1, index_dtype=torch.int32))


@pytest.mark.parametrize("where", ["contrast", "idx"])
@pytest.mark.parametrize("z_mode", ["once", "ema"])
def test_bad_index_raises_and_leaves_the_state_alone(where, z_mode):
    # RepDistiller raises IndexError and keeps its state; so does kdfuse, Z unset (this call would set it) or not.
    p = Problem(seed=9)
    cidx, idx = p.cidx.clone(), p.idx.clone()
    (cidx if where == "contrast" else idx)[2, ...] = p.n_data if where == "idx" else -1
    for z0 in (-1.0, 5.0):
        ms, mt, z = p.state()
        z.fill_(z0)
        with pytest.raises(IndexError, match=r"outside \[0, n_data\)"):
            p.call((ms, mt, z), contrast_idx=cidx, idx=idx, z_mode=z_mode)
        assert torch.equal(ms, p.memory_s) and torch.equal(mt, p.memory_t)
        assert torch.equal(z, torch.full((2,), z0))
        # Without the check the call returns NaN outputs, the state still untouched.
        loss, g_s, g_t = p.call((ms, mt, z), contrast_idx=cidx, idx=idx, z_mode=z_mode, check_indices=False)
        assert torch.isnan(loss) and torch.isnan(g_s).all() and torch.isnan(g_t).all()
        assert torch.equal(ms, p.memory_s) and torch.equal(z, torch.full((2,), z0))
        # The next good call runs normally from there.
        loss, _, _ = p.call((ms, mt, z), z_mode=z_mode)
        assert torch.isfinite(loss) and (z > 0).all()
