"""FT (RepDistiller's FactorTransfer) through kdfFT: weight * mean(|factor(f_s) - factor(f_t)|) (p2 = 1) or
weight * mean((factor(f_s) - factor(f_t))^p2), factor(f) = normalize(mean_C f^p1), and its gradient."""
import ctypes

from . import _abi, _lib
from .at import attention_call

_FN = "kdfuse.ft"


FTParams = _abi.STRUCTS["kdfFTParams_t"]


def ft(f_s, f_t, p1=2.0, p2=1.0, weight=1.0, grad_loss=None, grad_scale=1.0, accumulate=False, want_loss=True,
       want_grad_s=True, out=None):
    """(loss, grad_s) of FT between the student's factor f_s and the teacher's f_t (float32 N x C x H x W,
    same N; the larger map is pooled to the smaller one's H x W). p2 = 1: L1 (sign(0) = 0); p2 != 1:
    (factor_s - factor_t)^p2 without abs, as the seed. Other arguments as kdfuse.at.at."""
    def params(ms, mt):
        return FTParams(ctypes.sizeof(FTParams), ms, mt, _lib.KDF_DTYPE_FP32, float(p1), float(p2), float(weight))

    return attention_call(_FN, "kdfFT", "kdfFTWorkspaceSize", params, f_s, f_t, grad_loss, grad_scale, accumulate,
                          want_loss, want_grad_s, out)
