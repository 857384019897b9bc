"""The SIMT build for the binding tests, or a module-level skip when it is not built (or lacks an entry)."""
import pytest

from kdfuse.binding import _lib


def load_or_skip(entry):
    """The loaded SIMT library, which exports `entry`; skips the calling test module otherwise."""
    try:
        lib = _lib.load("simt")
    except OSError as e:  # not built
        pytest.skip(f"SIMT library not available: {e}", allow_module_level=True)
    if not _lib.has(lib, entry):
        pytest.skip(f"the SIMT library does not export {entry}", allow_module_level=True)
    return lib
