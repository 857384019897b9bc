import os
import pathlib
import sys

_ROOT = pathlib.Path(__file__).resolve().parents[2]
# KDFUSE_TEST_INSTALLED=1: the tests run against an installed kdfuse (scripts/test.sh, the wheel step), so the
# source tree's python/ stays off the path.
_INSTALLED = os.environ.get("KDFUSE_TEST_INSTALLED") == "1"
for _p in (_ROOT / "python_ref",) + (() if _INSTALLED else (_ROOT / "python",)):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
if _INSTALLED:
    import kdfuse

    assert _ROOT not in pathlib.Path(kdfuse.__file__).resolve().parents, f"kdfuse imported from {kdfuse.__file__}"
