"""kdfuse: fused knowledge-distillation losses for PyTorch over the kdfuse C API.

The package's parts, each in its place:

- kdfuse.ops: PyTorch operators torch.ops.kdfuse.<loss> (compiled, python/csrc; loaded by kdfuse._extension, fake
  kernels in kdfuse._meta) with autograd and torch.compile support, and one function per loss;
- kdfuse.functional / kdfuse.nn: KD with F.kl_div's signature, and drop-in modules with RepDistiller's names;
- kdfuse.binding: the ctypes binding of the whole C API (its functions are re-exported here: kdfuse.kd, ...);
- kdfuse.gradcheck and kdfuse.accuracy: the gradient check and the accuracy table (tools; the runtime never
  imports them; they need the PyTorch reference kdfuse_ref from the source tree).

    from kdfuse.nn import DistillKL, CRDLoss                 # imported on demand (loads the operator libraries)
    from kdfuse import kd
    loss, grad_s, _ = kd(y_s, y_t, T=4.0)                   # the binding: CPU tensors SIMT build, CUDA tensors CUDA

Library location: see kdfuse.binding._lib (the binding) and kdfuse._extension (the operators).
"""
__version__ = "0.1.0"  # the CMake project's version (tests/lint/check_versions.py)

from .binding._lib import KdfuseError, load, handle, library_path  # noqa: F401
from .binding.kd import kd  # noqa: F401
from .binding.fitnet import fitnet  # noqa: F401
from .binding.at import at  # noqa: F401
from .binding.ft import ft  # noqa: F401
from .binding.ab import ab  # noqa: F401
from .binding.ofd import ofd, ofd_margin_from_bn  # noqa: F401
from .binding.vid import vid  # noqa: F401
from .binding.sp import sp  # noqa: F401
from .binding.cc import cc  # noqa: F401
from .binding.pkt import pkt  # noqa: F401
from .binding.rkd import rkd  # noqa: F401
from .binding.nst import nst  # noqa: F401
from .binding.fsp import fsp, fsp_chain  # noqa: F401
from .binding.crd import crd, draw_contrast  # noqa: F401
from .binding.kdsvd import kdsvd  # noqa: F401

__all__ = ["__version__", "KdfuseError", "kd", "fitnet", "at", "ft", "ab", "ofd", "ofd_margin_from_bn", "vid", "sp", "cc", "pkt", "rkd",
           "nst", "fsp", "fsp_chain", "crd", "draw_contrast", "kdsvd", "load", "handle", "library_path"]
