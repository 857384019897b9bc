"""The ctypes binding of kdfKD (python/kdfuse) on the SIMT build: values against kdfuse_ref, output
modes, strides and error reporting. Skipped when the SIMT library is not built (or lacks kdfKD)."""
import ctypes

import pytest
import torch

from kdfuse import KdfuseError, kd
from kdfuse.binding import _lib
from kdfuse_ref.kd import kd_loss

from simt_library import load_or_skip

LIB = load_or_skip("kdfKD")

RTOL = 1e-4


def logits(n, c, seed, pad=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(n, c + pad, generator=g) * scale
    return wide[:, :c] if pad else wide


def reference(y_s, y_t, T, weight=None, reduction="batchmean", grad_loss=None, grad_scale=1.0):
    """float64 loss, grad_s, grad_t of the reference from the float32 inputs."""
    ys = y_s.double().clone().requires_grad_(True)
    yt = y_t.double().clone().requires_grad_(True)
    loss = kd_loss(ys, yt, T, None if weight is None else weight.double(), reduction)
    up = torch.ones_like(loss) if grad_loss is None else grad_loss.double().reshape(loss.shape)
    gs, gt = torch.autograd.grad((loss * up).sum() * grad_scale, (ys, yt))
    return loss.detach(), gs, gt


def assert_close(got, ref):
    ref = ref.to(torch.float64)
    atol = 1e-6 * max(1.0, ref.abs().max().item())
    torch.testing.assert_close(got.to(torch.float64), ref, rtol=RTOL, atol=atol)


def test_repeated_load_skips_the_file_system(monkeypatch):
    """Every loss call loads the library: a request resolved before is a dictionary lookup, no path work."""
    first = _lib.load("simt")

    def no_lookup(*args, **kwargs):
        raise AssertionError("library_path called for a request resolved before")

    monkeypatch.setattr(_lib, "library_path", no_lookup)
    assert _lib.load("simt") is first
    monkeypatch.setenv("KDFUSE_LIB", first.kdfuse_path + ".other")  # a new request is resolved again
    with pytest.raises(AssertionError, match="resolved before"):
        _lib.load("simt")


def test_library_identity():
    assert LIB.kdfGetBackendName() == b"simt"
    assert LIB.kdfGetVersion() == 100  # 0.1.0
    assert LIB.kdfGetStatusName(5) == b"KDF_STATUS_WORKSPACE_TOO_SMALL"
    assert ctypes.sizeof(_lib.KDParams) == 56


def test_handle_modes_roundtrip():
    h = _lib.create_handle(LIB)
    try:
        mode = ctypes.c_int(-1)
        LIB.kdfGetMathMode(h, ctypes.byref(mode))
        assert mode.value == _lib.KDF_MATH_FP32
        LIB.kdfSetDeterminism(h, _lib.KDF_FAST)
        LIB.kdfGetDeterminism(h, ctypes.byref(mode))
        assert mode.value == _lib.KDF_FAST
        with pytest.raises(KdfuseError) as e:
            LIB.kdfSetMathMode(h, 7)
        assert e.value.name == "KDF_STATUS_INVALID_VALUE"
    finally:
        LIB.kdfDestroy(h)


@pytest.mark.parametrize("n,c", [(5, 13), (33, 517)])
@pytest.mark.parametrize("reduction", ["batchmean", "none"])
@pytest.mark.parametrize("T", [4.0, 1.0])
def test_matches_reference(n, c, reduction, T):
    y_s, y_t = logits(n, c, 1), logits(n, c, 2)
    w = torch.rand(n, generator=torch.Generator().manual_seed(3)) * 2
    w[1::4] = 0.0
    gl = torch.randn(1 if reduction == "batchmean" else n, generator=torch.Generator().manual_seed(4))
    if reduction == "batchmean":
        gl = gl.reshape(())
    loss, gs, gt = kd(y_s, y_t, T=T, weight=w, reduction=reduction, grad_loss=gl, grad_scale=0.5,
                      want_grad_t=True)
    ref_loss, ref_gs, ref_gt = reference(y_s, y_t, T, w, reduction, gl, 0.5)
    assert loss.shape == ref_loss.shape and loss.dtype == torch.float32
    assert_close(loss, ref_loss)
    assert_close(gs, ref_gs)
    assert_close(gt, ref_gt)
    # rows with weight 0: exactly zero gradients (and loss for "none")
    assert torch.all(gs[1::4] == 0) and torch.all(gt[1::4] == 0)
    if reduction == "none":
        assert torch.all(loss[1::4] == 0)


def test_defaults_match_seed_module():
    from kdfuse_ref.kd import DistillKL

    y_s, y_t = logits(16, 100, 5), logits(16, 100, 6)
    loss, gs, gt = kd(y_s, y_t)
    assert gt is None
    assert_close(loss, DistillKL(4.0)(y_s.double(), y_t.double()))
    assert_close(gs, reference(y_s, y_t, 4.0)[1])


def test_python_number_grad_loss_folds_into_grad_scale():
    y_s, y_t = logits(6, 20, 7), logits(6, 20, 8)
    _, gs_num, _ = kd(y_s, y_t, grad_loss=2.5)
    _, gs_tensor, _ = kd(y_s, y_t, grad_loss=torch.tensor(2.5))
    assert_close(gs_num, gs_tensor.double())


def test_deterministic_bitwise():
    y_s, y_t = logits(37, 1031, 9), logits(37, 1031, 10)
    a = kd(y_s, y_t, want_grad_t=True)
    b = kd(y_s, y_t, want_grad_t=True)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("reduction", ["batchmean", "none"])
def test_accumulate_adds_into_outputs(reduction):
    n, c = 9, 40
    y_s, y_t = logits(n, c, 11), logits(n, c, 12)
    fresh = kd(y_s, y_t, T=2.0, reduction=reduction, want_grad_t=True)
    g = torch.Generator().manual_seed(13)
    base = (torch.randn(fresh[0].shape, generator=g), torch.randn(n, c, generator=g),
            torch.randn(n, c, generator=g))
    out = tuple(t.clone() for t in base)
    ret = kd(y_s, y_t, T=2.0, reduction=reduction, want_grad_t=True, accumulate=True, out=out)
    for r, o in zip(ret, out):
        assert r is o  # the caller's tensors, updated in place
    for got, b, f in zip(out, base, fresh):
        torch.testing.assert_close(got, b + f, rtol=1e-6, atol=1e-6)
    # two accumulating calls into zeros: twice one call
    zeros = (torch.zeros(fresh[0].shape), torch.zeros(n, c), torch.zeros(n, c))
    for _ in range(2):
        kd(y_s, y_t, T=2.0, reduction=reduction, want_grad_t=True, accumulate=True, out=zeros)
    for z, f in zip(zeros, fresh):
        torch.testing.assert_close(z, 2 * f, rtol=1e-6, atol=1e-7)


def test_accumulate_requires_outputs():
    y_s, y_t = logits(3, 4, 14), logits(3, 4, 15)
    with pytest.raises(KdfuseError) as e:
        kd(y_s, y_t, accumulate=True)
    assert e.value.name == "KDF_STATUS_INVALID_VALUE"


def test_output_selection():
    n, c = 8, 33
    y_s, y_t = logits(n, c, 16), logits(n, c, 17)
    full = kd(y_s, y_t, want_grad_t=True)
    loss_only = kd(y_s, y_t, want_grad_s=False)
    assert loss_only[1] is None and loss_only[2] is None
    torch.testing.assert_close(loss_only[0], full[0], rtol=1e-6, atol=0)
    grads_only = kd(y_s, y_t, want_loss=False, want_grad_t=True)
    assert grads_only[0] is None
    torch.testing.assert_close(grads_only[1], full[1], rtol=1e-6, atol=0)
    torch.testing.assert_close(grads_only[2], full[2], rtol=1e-6, atol=0)
    teacher_only = kd(y_s, y_t, want_loss=False, want_grad_s=False, want_grad_t=True)
    assert teacher_only[0] is None and teacher_only[1] is None
    torch.testing.assert_close(teacher_only[2], full[2], rtol=1e-6, atol=0)
    assert kd(y_s, y_t, want_loss=False, want_grad_s=False) == (None, None, None)


def test_null_outputs_are_not_written():
    """Low level: loss and grad_t NULL, grad_s given: only grad_s's buffer changes; all NULL: nothing."""
    n, c = 4, 10
    y_s, y_t = logits(n, c, 18), logits(n, c, 19)
    p = _lib.KDParams(rows=n, classes=c)
    size = ctypes.c_size_t()
    LIB.kdfKDWorkspaceSize(ctypes.byref(p), ctypes.byref(size))
    ws = torch.zeros(size.value + 256, dtype=torch.uint8)
    wsp = ctypes.c_void_p((ws.data_ptr() + 255) // 256 * 256)
    h = _lib.handle("simt")
    y_s0, y_t0 = y_s.clone(), y_t.clone()
    gs = torch.full((n, c), 7.0)
    LIB.kdfKD(h, ctypes.byref(p), y_s.data_ptr(), y_t.data_ptr(), None, None, gs.data_ptr(), None, None,
              1.0, 0, wsp, size.value, None)
    assert_close(gs, reference(y_s, y_t, 4.0)[1])
    LIB.kdfKD(h, ctypes.byref(p), y_s.data_ptr(), y_t.data_ptr(), None, None, None, None, None,
              1.0, 0, wsp, size.value, None)
    assert torch.equal(y_s, y_s0) and torch.equal(y_t, y_t0)  # inputs are read only


def test_strided_rows():
    n, c, pad_s, pad_t = 11, 50, 6, 14
    y_s, y_t = logits(n, c, 20, pad=pad_s), logits(n, c, 21, pad=pad_t)
    assert not y_s.is_contiguous() and y_s.stride(0) == c + pad_s
    loss, gs, gt = kd(y_s, y_t, T=3.0, want_grad_t=True)
    assert gs.stride() == y_s.stride() and gt.stride() == y_t.stride()
    ref = reference(y_s.contiguous(), y_t.contiguous(), 3.0)
    assert_close(loss, ref[0])
    assert_close(gs, ref[1])
    assert_close(gt, ref[2])
    # into caller's strided outputs: the padding columns stay untouched
    wide_gs = torch.full((n, c + pad_s), 123.0)
    kd(y_s, y_t, T=3.0, out=(None, wide_gs[:, :c], None))
    assert torch.all(wide_gs[:, c:] == 123.0)
    assert_close(wide_gs[:, :c], ref[1])


def test_zero_weight_rows_are_not_read():
    n, c = 6, 12
    y_s, y_t = logits(n, c, 22), logits(n, c, 23)
    w = torch.tensor([1.0, 0.0, 0.5, 0.0, 2.0, 1.0])
    ref = reference(y_s, y_t, 4.0, w)
    y_s[w == 0] = float("nan")
    y_t[w == 0] = float("inf")
    loss, gs, gt = kd(y_s, y_t, weight=w, want_grad_t=True)
    assert_close(loss, ref[0])
    assert_close(gs, ref[1])
    assert_close(gt, ref[2])


def expect_error(name, fn):
    with pytest.raises(KdfuseError) as e:
        fn()
    assert e.value.name == name, str(e.value)
    assert e.value.status == {v: k for k, v in _lib.STATUS_NAMES.items()}[name]
    return e.value


def test_bad_temperature_reported_by_library():
    y_s, y_t = logits(3, 5, 24), logits(3, 5, 25)
    err = expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s, y_t, T=0.0))
    assert err.function == "kdfKDWorkspaceSize" and "temperature" in err.detail
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s, y_t, T=float("nan")))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s, y_t, T=-1.0))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s, y_t, grad_scale=float("inf")))


def test_shape_errors():
    y_s = logits(3, 5, 26)
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: kd(y_s, logits(3, 6, 27)))
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: kd(y_s, logits(4, 5, 27)))
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: kd(y_s[0], y_s[0]))
    expect_error("KDF_STATUS_SHAPE_MISMATCH", lambda: kd(y_s, y_s.clone(), weight=torch.ones(4)))
    expect_error("KDF_STATUS_SHAPE_MISMATCH",
                 lambda: kd(y_s, y_s.clone(), reduction="none", grad_loss=torch.ones(1)))
    expect_error("KDF_STATUS_SHAPE_MISMATCH",
                 lambda: kd(y_s, y_s.clone(), out=(None, torch.empty(3, 4), None)))
    # empty batch: the library's rows >= 1 check
    err = expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(torch.empty(0, 5), torch.empty(0, 5)))
    assert "rows" in err.detail


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_logits(dtype):
    """fp16 / bf16 logits go to the kernel as they are: the loss is float32, the gradients come back in the logits'
    dtype and are the float32 call's gradients rounded once; strided rows and accumulation work as in fp32."""
    y_s, y_t = logits(6, 40, 40).to(dtype)[:, :37], logits(6, 40, 41).to(dtype)[:, :37]  # rows 40 apart
    loss, gs, gt = kd(y_s, y_t, T=2.0, grad_scale=0.5, want_grad_t=True)
    assert loss.dtype == torch.float32 and gs.dtype == dtype and gt.dtype == dtype
    loss32, gs32, gt32 = kd(y_s.float(), y_t.float(), T=2.0, grad_scale=0.5, want_grad_t=True)
    assert torch.equal(loss, loss32)
    assert torch.equal(gs, gs32.to(dtype)) and torch.equal(gt, gt32.to(dtype))
    ref_loss, ref_gs, _ = reference(y_s.float(), y_t.float(), 2.0, grad_scale=0.5)
    assert_close(loss, ref_loss)
    torch.testing.assert_close(gs.double(), ref_gs, rtol=2.0 ** -7, atol=1e-6 * ref_gs.abs().max().item() + 2.0 ** -24)
    acc = torch.full((6, 40), -0.25, dtype=dtype)[:, :37]  # the row stride of y_s
    kd(y_s, y_t, T=2.0, grad_scale=0.5, want_loss=False, accumulate=True, out=(None, acc, None))
    assert torch.equal(acc, (gs32 - 0.25).to(dtype))


def test_layout_and_type_errors():
    y_s, y_t = logits(4, 6, 28), logits(4, 6, 29)
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s.t(), y_t.t()))  # column stride != 1
    expect_error("KDF_STATUS_INVALID_VALUE",  # overlapping rows (expanded): would read as ld = 0
                 lambda: kd(y_s[:1].expand(4, 6), y_t))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s, y_t.double()))
    expect_error("KDF_STATUS_NOT_SUPPORTED", lambda: kd(y_s.double(), y_t.double()))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s.half(), y_t.bfloat16()))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s.half(), y_t.half(), out=(None, torch.empty(4, 6), None)))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s, y_t, reduction="sum"))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s, y_t, weight=torch.ones(4, dtype=torch.float64)))
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s, y_t, out=(None, None, torch.empty(4, 6))))


def test_in_place_gradient_rejected_by_library():
    y_s, y_t = logits(4, 6, 30), logits(4, 6, 31)
    err = expect_error("KDF_STATUS_INVALID_VALUE", lambda: kd(y_s, y_t, out=(None, y_s, None)))
    assert "overlaps" in err.detail


def workspace_bytes(n, c, reduction=_lib.KDF_REDUCTION_BATCHMEAN):
    p = _lib.KDParams(rows=n, classes=c, reduction=reduction)
    size = ctypes.c_size_t()
    LIB.kdfKDWorkspaceSize(ctypes.byref(p), ctypes.byref(size))
    return p, size.value


def test_workspace_too_small_low_level():
    n, c = 64, 100
    p, need = workspace_bytes(n, c)
    if need == 0:
        pytest.skip("KD needs no workspace for this shape")
    y_s, y_t = logits(n, c, 32), logits(n, c, 33)
    loss = torch.empty(())
    ws = torch.empty(need + 256, dtype=torch.uint8)
    wsp = (ws.data_ptr() + 255) // 256 * 256
    h = _lib.handle("simt")
    err = expect_error("KDF_STATUS_WORKSPACE_TOO_SMALL", lambda: LIB.kdfKD(
        h, ctypes.byref(p), y_s.data_ptr(), y_t.data_ptr(), None,
        ctypes.cast(loss.data_ptr(), ctypes.POINTER(ctypes.c_float)), None, None, None, 1.0, 0, wsp, need - 1,
        None))
    assert err.function == "kdfKD" and str(need) in err.detail
    assert LIB.kdfGetLastErrorString().decode() == err.detail
    # the exact size works, and a success clears the thread's last error
    LIB.kdfKD(h, ctypes.byref(p), y_s.data_ptr(), y_t.data_ptr(), None,
              ctypes.cast(loss.data_ptr(), ctypes.POINTER(ctypes.c_float)), None, None, None, 1.0, 0, wsp, need,
              None)
    assert LIB.kdfGetLastErrorString() == b""
    assert_close(loss, reference(y_s, y_t, 4.0)[0])
    # through kd(workspace=...)
    expect_error("KDF_STATUS_WORKSPACE_TOO_SMALL",
                 lambda: kd(y_s, y_t, workspace=torch.empty(need - 1, dtype=torch.uint8)))


def test_low_level_param_errors():
    h = _lib.handle("simt")
    y = logits(2, 3, 34)
    bad = _lib.KDParams(rows=2, classes=3, struct_size=48)
    size = ctypes.c_size_t()
    err = expect_error("KDF_STATUS_INVALID_VALUE", lambda: LIB.kdfKDWorkspaceSize(ctypes.byref(bad), ctypes.byref(size)))
    assert "struct_size" in err.detail
    assert str(err).startswith("KDF_STATUS_INVALID_VALUE: kdfKDWorkspaceSize: params->struct_size"), str(err)
    assert err.function == "kdfKDWorkspaceSize"
    expect_error("KDF_STATUS_NULL_POINTER", lambda: LIB.kdfKDWorkspaceSize(None, ctypes.byref(size)))
    p = _lib.KDParams(rows=2, classes=3, ld_student=2)  # ld < classes
    expect_error("KDF_STATUS_INVALID_VALUE", lambda: LIB.kdfKDWorkspaceSize(ctypes.byref(p), ctypes.byref(size)))
    p = _lib.KDParams(rows=2, classes=3)
    LIB.kdfKDWorkspaceSize(ctypes.byref(p), ctypes.byref(size))
    ws = torch.empty(size.value + 256, dtype=torch.uint8)
    wsp = (ws.data_ptr() + 255) // 256 * 256
    expect_error("KDF_STATUS_NULL_POINTER", lambda: LIB.kdfKD(
        h, ctypes.byref(p), None, y.data_ptr(), None, None, None, None, None, 1.0, 0, wsp, size.value, None))
    expect_error("KDF_STATUS_NULL_POINTER", lambda: LIB.kdfKD(
        None, ctypes.byref(p), y.data_ptr(), y.data_ptr(), None, None, None, None, None, 1.0, 0, wsp,
        size.value, None))
    expect_error("KDF_STATUS_MISALIGNED_POINTER", lambda: LIB.kdfKD(
        h, ctypes.byref(p), y.data_ptr() + 2, y.data_ptr(), None, None, None, None, None, 1.0, 0, wsp,
        size.value, None))
