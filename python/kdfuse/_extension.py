"""Loads kdfuse's PyTorch operator libraries, which define ``torch.ops.kdfuse.<loss>`` in C++ (python/csrc):

- ``libkdfuse_torch.so``: the schemas and the C++ autograd of every op (no device code);
- ``libkdfuse_torch_cpu.so``: the CPU kernels, over libkdfuse_sim (the CUDA kernels run on the CPU by the SIMT
  backend: slow, for tests and debugging);
- ``libkdfuse_torch_cuda.so``: the CUDA kernels, over libkdfuse, on PyTorch's current stream (present when the CUDA
  library was built and torch has CUDA).

Location: the directory ``KDFUSE_TORCH_LIB_DIR`` if set, else the copies shipped in the installed package
(``kdfuse/lib/``), else ``build/torch/`` under the repository root. Loaded once, at the import of kdfuse.ops.
"""
import os
import pathlib

import torch

_PACKAGE_LIB_DIR = pathlib.Path(__file__).resolve().parent / "lib"
_BUILD_LIB_DIR = pathlib.Path(__file__).resolve().parents[2] / "build" / "torch"
SCHEMAS = "libkdfuse_torch.so"
KERNELS = {"cpu": "libkdfuse_torch_cpu.so", "cuda": "libkdfuse_torch_cuda.so"}


def library_dir():
    """The directory the operator libraries are loaded from."""
    env = os.environ.get("KDFUSE_TORCH_LIB_DIR")
    if env:
        return pathlib.Path(env)
    return _PACKAGE_LIB_DIR if (_PACKAGE_LIB_DIR / SCHEMAS).is_file() else _BUILD_LIB_DIR


def _load():
    where = library_dir()
    schemas = where / SCHEMAS
    if not schemas.is_file():
        raise ImportError(f"kdfuse: the PyTorch operator library {schemas} is missing: build kdfuse (cmake, with "
                          f"KDFUSE_PYTHON set to this interpreter) or set KDFUSE_TORCH_LIB_DIR")
    torch.ops.load_library(str(schemas))
    loaded = []
    for device, name in KERNELS.items():
        path = where / name
        if path.is_file() and (device == "cpu" or torch.version.cuda is not None):
            torch.ops.load_library(str(path))
            loaded.append(device)
    if "cpu" not in loaded:
        raise ImportError(f"kdfuse: the CPU kernels {where / KERNELS['cpu']} are missing")
    return tuple(loaded)


#: the devices whose kernels are loaded ("cpu", and "cuda" when built)
DEVICES = _load()
