"""python -m kdfuse.gradcheck: the gradient check of every implemented loss (see kdfuse/gradcheck/__init__.py)."""
import argparse
import sys
import time

from . import ATOL_FACTOR, ATOL_FLOOR, RTOL, Row, __doc__ as DOC, checker, load_for_command, print_table


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kdfuse.gradcheck", description=DOC.split("\n")[0])
    parser.add_argument("--backend", choices=("simt", "cuda"), default="simt")
    parser.add_argument("--lib", help="path of the shared library (default: KDFUSE_LIB, else build/)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from kdfuse.binding import _lib

    loaded = load_for_command("gradcheck", args.backend, args.lib)
    if loaded is None:
        return 2
    from kdfuse_ref import LOSSES
    lib, device = loaded
    print(f"tolerance: |lib - ref| <= atol + rtol*|ref| elementwise, rtol={RTOL:g}, "
          f"atol={ATOL_FACTOR:g}*max|ref| + {ATOL_FLOOR:g}; reference: kdfuse_ref in float64")
    print()

    start = time.monotonic()
    rows, missing = [], []
    for name in LOSSES:
        entry = checker(name)
        if entry is None or not _lib.has(lib, entry[0]):
            why = "not implemented" if entry is None else f"not implemented (no {entry[0]} in the library)"
            rows.append(Row(name, "-", "-", status=why))
            missing.append(name)
            continue
        rows.extend(entry[1](device, args.seed))
    elapsed = time.monotonic() - start
    print_table(rows)
    passed = sum(r.status == "PASS" for r in rows)
    failed = sum(r.status.startswith("FAIL") for r in rows)
    print()
    print(f"({elapsed:.1f} s)")
    print(f"{passed} passed, {failed} failed")
    if missing:
        print("not implemented: " + " ".join(missing))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
