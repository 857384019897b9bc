"""kdfuse: Python (ctypes) binding of the kdfuse C API, fused knowledge-distillation losses.

    from kdfuse import kd
    loss, grad_s, _ = kd(y_s, y_t, T=4.0)      # CPU tensors: SIMT build; CUDA tensors: CUDA build

PyTorch integration (docs/pytorch.md): kdfuse.ops (torch.library custom ops, torch.ops.kdfuse.*, autograd and
torch.compile) and kdfuse.nn (drop-in modules with RepDistiller's names), imported on demand:

    from kdfuse.nn import DistillKL, CRDLoss

Library location: KDFUSE_LIB, else kdfuse/lib/ of an installed package (pip install ./python), else
build/simt/libkdfuse_sim.so / build/libkdfuse.so in the repository.
"""
__version__ = "0.1.0"  # the CMake project's version (tests/lint/check_versions.py)

from ._lib import KdfuseError, load, handle, library_path  # noqa: F401
from .kd import kd  # noqa: F401
from .fitnet import fitnet  # noqa: F401
from .at import at  # noqa: F401
from .ft import ft  # noqa: F401
from .ab import ab  # noqa: F401
from .ofd import ofd, ofd_margin_from_bn  # noqa: F401
from .vid import vid  # noqa: F401
from .sp import sp  # noqa: F401
from .cc import cc  # noqa: F401
from .pkt import pkt  # noqa: F401
from .rkd import rkd  # noqa: F401
from .nst import nst  # noqa: F401
from .fsp import fsp, fsp_chain  # noqa: F401
from .crd import crd, draw_contrast  # noqa: F401
from .kdsvd import kdsvd  # noqa: F401

__all__ = ["__version__", "KdfuseError", "kd", "fitnet", "at", "ft", "ab", "ofd", "ofd_margin_from_bn", "vid", "sp", "cc", "pkt", "rkd",
           "nst", "fsp", "fsp_chain", "crd", "draw_contrast", "kdsvd", "load", "handle", "library_path"]
