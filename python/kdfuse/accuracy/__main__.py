"""python -m kdfuse.accuracy: the accuracy table (see kdfuse/accuracy/__init__.py and docs/accuracy.md).

Exit status: 0 if every row passes, 1 if a row fails, 2 if the library cannot be loaded.
"""
import argparse
import sys
import time

from . import FLOOR, RATIO_LIMIT, format_table, run


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kdfuse.accuracy",
                                     description="kdfuse vs the seed's PyTorch code in float32, against float64")
    parser.add_argument("--backend", choices=("simt", "cuda"), default="simt")
    parser.add_argument("--lib", help="path of the shared library (default: KDFUSE_LIB, else build/)")
    parser.add_argument("--loss", action="append", help="only this loss (repeatable), e.g. --loss rkd")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--failures", action="store_true", help="print only the failing rows")
    parser.add_argument("--floor", type=float, default=FLOOR,
                        help="least torch error a ratio divides by (default 2^-22; for experiments)")
    args = parser.parse_args(argv)

    from ..gradcheck import load_for_command

    loaded = load_for_command("accuracy", args.backend, args.lib)
    if loaded is None:
        return 2
    from .cases import all_cases
    device = loaded[1]
    print(f"error = ||x - ref|| / ||ref|| against kdfuse_ref in float64; ratio = err_kdfuse / max(err_torch_fp32, "
          f"{args.floor:.2e}); PASS if ratio <= {RATIO_LIMIT:g}")
    print()

    cases = all_cases()
    if args.loss:
        cases = [c for c in cases if c.loss in args.loss]
    start = time.monotonic()
    rows = run(cases, device, floor=args.floor)
    elapsed = time.monotonic() - start
    shown = [r for r in rows if r.status != "PASS"] if args.failures else rows
    print(format_table(shown, markdown=args.markdown))
    failed = sum(r.status != "PASS" for r in rows)
    failed_cases = sorted({(r.loss, r.case) for r in rows if r.status != "PASS"})
    print()
    print(f"({elapsed:.1f} s, {len(cases)} cases)")
    print(f"{len(rows) - failed} passed, {failed} failed" +
          (f" (in {len(failed_cases)} cases)" if failed_cases else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
