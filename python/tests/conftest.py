import pathlib
import sys

_ROOT = pathlib.Path(__file__).resolve().parents[2]
for _p in (_ROOT / "python_ref", _ROOT / "python"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
