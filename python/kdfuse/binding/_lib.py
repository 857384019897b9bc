"""Loading of the kdfuse shared library for ctypes, with every function of the C API declared from the header
(include/kdfuse/kdfuse.h, read by _abi: no hand-written copy of the ABI).

Two builds export the same API: ``libkdfuse.so`` ("cuda", device pointers, CUDA streams) and
``libkdfuse_sim.so`` ("simt", the same kernels on the CPU: pointers are host memory, streams are
synchronous). ``load(backend)`` finds, loads and declares one of them; every status-returning function
raises :class:`KdfuseError` on a non-zero status (ctypes ``errcheck``), carrying the status name and
the library's last-error detail.

Library location: the environment variable ``KDFUSE_LIB`` if set (or the ``path`` argument of
``load``), else the copy shipped in the installed package (``kdfuse/lib/libkdfuse_sim.so`` /
``kdfuse/lib/libkdfuse.so``, see python/pyproject.toml), else ``build/simt/libkdfuse_sim.so`` (simt) /
``build/libkdfuse.so`` (cuda) under the repository root. The loaded library must report the requested
backend (kdfGetBackendName): passing device pointers to the CPU build, or host pointers to the CUDA
build, would crash the process.
"""
import atexit
import ctypes
import os
import pathlib
import threading

from . import _abi

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
DEFAULT_PATHS = {
    "simt": REPO_ROOT / "build" / "simt" / "libkdfuse_sim.so",
    "cuda": REPO_ROOT / "build" / "libkdfuse.so",
}
BACKENDS = tuple(DEFAULT_PATHS)
# The libraries a pip-installed package ships (python/pyproject.toml builds them into kdfuse/lib/).
PACKAGE_LIB_DIR = pathlib.Path(__file__).resolve().parents[1] / "lib"
PACKAGED_NAMES = {"simt": "libkdfuse_sim.so*", "cuda": "libkdfuse.so*"}
# libkdfuse_sim needs the SIMT runtime (libkdfuse_simt.so*): from a build tree (KDFUSE_LIB) its RUNPATH names that
# tree, so a copy beside the library is loaded first, by path (the dynamic loader then matches it by its soname).
SIMT_RUNTIME_GLOB = "libkdfuse_simt.so*"

# ---- the header's constants (kdfuse.h, read by _abi): KDF_STATUS_*, KDF_DTYPE_*, KDF_REDUCTION_*, KDF_MATH_*, ...
globals().update({name: value for name, value in _abi.CONSTANTS.items() if name.startswith("KDF_")})
STATUS_NAMES = {value: name for name, value in _abi.CONSTANTS.items() if name.startswith("KDF_STATUS_")}

# Workspace alignment: kdfuse.h requires 16 bytes; 256 matches cudaMalloc and costs nothing.
WORKSPACE_ALIGNMENT = 256

c_enum = _abi.c_enum
kdfStatus_t = c_enum
STATUS = _abi.STATUS  # in _abi.FUNCTIONS: returns kdfStatus_t, raise KdfuseError when non-zero
kdfHandle_t = ctypes.c_void_p  # struct kdfContext*
kdfStream_t = ctypes.c_void_p  # struct CUstream_st* (cudaStream_t)


class KdfuseError(RuntimeError):
    """A kdfuse call returned a non-zero kdfStatus_t (or the binding rejected an argument with the
    status the library would have used).

    status: the kdfStatus_t value; name: its enumerator ("KDF_STATUS_SHAPE_MISMATCH"); detail: the
    library's kdfGetLastErrorString() (or the binding's own explanation); function: the C function.
    """

    def __init__(self, status, name, detail, function=None):
        self.status = int(status)
        self.name = name
        self.detail = detail
        self.function = function
        # The library's details already start with the C function's name ("kdfKD: params->rows ...").
        where = f"{function}: " if function and not (detail or "").startswith(f"{function}:") else ""
        super().__init__(f"{where}{name}: {detail}" if detail else f"{where}{name}")


def binding_error(status, detail, function=None):
    """A KdfuseError raised by the Python side (argument checks the C API cannot express)."""
    return KdfuseError(status, STATUS_NAMES.get(status, "KDF_STATUS_UNKNOWN"), detail, function)


KDParams = _abi.STRUCTS["kdfKDParams_t"]

# Functions without which the library is unusable; the others (losses) may be missing from a build
# under construction: the attribute is then absent and callers report "not implemented".
_REQUIRED = ("kdfGetVersion", "kdfGetBackendName", "kdfGetStatusName", "kdfGetStatusString",
             "kdfGetLastErrorString")


def _make_errcheck(lib):
    def errcheck(result, func, args):
        if result != KDF_STATUS_SUCCESS:
            name = lib.kdfGetStatusName(result).decode()
            detail = lib.kdfGetLastErrorString().decode()
            raise KdfuseError(result, name, detail, func.__name__)
        return result

    return errcheck


def _declare(lib):
    """restype / argtypes of every KDFUSE_API function of the header (_abi.FUNCTIONS) on the loaded library."""
    errcheck = _make_errcheck(lib)
    for name, (restype, argtypes) in _abi.FUNCTIONS.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if name in _REQUIRED:
                raise
            continue
        fn.restype = kdfStatus_t if restype is STATUS else restype
        fn.argtypes = argtypes
        if restype is STATUS:
            fn.errcheck = errcheck


def has(lib, name):
    """Whether the loaded library exports `name` (a loss not built yet is absent)."""
    try:
        getattr(lib, name)
        return True
    except AttributeError:
        return False


def library_path(backend="simt", path=None):
    """The file load() would open for `backend`."""
    if backend not in DEFAULT_PATHS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if path is None:
        path = os.environ.get("KDFUSE_LIB")
    if not path:
        packaged = sorted(PACKAGE_LIB_DIR.glob(PACKAGED_NAMES[backend])) if PACKAGE_LIB_DIR.is_dir() else []
        path = packaged[0] if packaged else DEFAULT_PATHS[backend]
    return pathlib.Path(path)


_lock = threading.RLock()
# Held around every call that takes a cached handle (the API allows one host thread per handle).
CALL_LOCK = threading.Lock()
_libs = {}      # (backend, resolved path) -> CDLL
_requests = {}  # (backend, path argument, KDFUSE_LIB) -> CDLL: a request resolved once skips the file system
_runtimes = []  # SIMT runtimes loaded beside a libkdfuse_sim (kept loaded)
_handles = {}   # (backend, device key) -> (lib, kdfHandle_t)


def load(backend="simt", path=None):
    """The kdfuse library for `backend` ("simt" or "cuda"), loaded once and cached.

    Raises OSError if the file is missing or cannot be loaded, KdfuseError(KDF_STATUS_NOT_SUPPORTED)
    if it reports another backend than requested. The file is looked up once per (backend, path, KDFUSE_LIB):
    every loss call goes through here, and a repeated request is a dictionary lookup."""
    request = (backend, path, os.environ.get("KDFUSE_LIB"))
    lib = _requests.get(request)
    if lib is not None:
        return lib
    p = library_path(backend, path)
    if not p.is_file():
        raise OSError(f"kdfuse {backend} library not found at {p} (build it, or set KDFUSE_LIB)")
    key = (backend, str(p.resolve()))
    with _lock:
        lib = _libs.get(key)
        if lib is None:
            if backend == "simt":
                for runtime in sorted(p.parent.glob(SIMT_RUNTIME_GLOB)):
                    if runtime.is_file():
                        _runtimes.append(ctypes.CDLL(str(runtime)))
                        break
            lib = ctypes.CDLL(str(p))
            _declare(lib)
            actual = lib.kdfGetBackendName().decode()
            if actual != backend:
                raise binding_error(KDF_STATUS_NOT_SUPPORTED,
                                    f"{p} is the {actual!r} build, but the {backend!r} backend was requested")
            lib.kdfuse_path = str(p)
            _libs[key] = lib
        _requests[request] = lib
        return lib


def handle(backend="simt", device=None, path=None):
    """A kdfHandle_t for `backend`, created once (per CUDA device for "cuda") and destroyed at exit.

    For "cuda" the caller must have made `device` current (kdfCreate reads the current device); kd.py
    does so. A handle must be used from one host thread at a time and ctypes releases the GIL during
    the call, so callers sharing this cached handle hold CALL_LOCK around the calls that take it
    (kd.py does). For concurrent use, create per-thread handles with create_handle()."""
    lib = load(backend, path)
    key = (backend, lib.kdfuse_path, device)
    with _lock:
        entry = _handles.get(key)
        if entry is None:
            entry = (lib, create_handle(lib))
            _handles[key] = entry
        return entry[1]


def create_handle(lib):
    """A fresh kdfHandle_t from `lib` (caller destroys it with lib.kdfDestroy)."""
    h = kdfHandle_t()
    lib.kdfCreate(ctypes.byref(h))
    return h


@atexit.register
def _destroy_handles():
    with _lock:
        for lib, h in _handles.values():
            try:
                lib.kdfDestroy(h)
            except Exception:  # noqa: BLE001 - at exit, nothing useful to do
                pass
        _handles.clear()


def version_string(lib):
    v = lib.kdfGetVersion()
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}"
