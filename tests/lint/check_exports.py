#!/usr/bin/env python3
"""The kdfuse shared libraries export the C API (kdf*) and nothing else."""
import subprocess
import sys


def main(libs):
    bad = 0
    for lib in libs:
        out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True, text=True).stdout
        names = [line.split()[-1] for line in out.splitlines() if line.strip()]
        api = [n for n in names if n.startswith("kdf")]
        other = [n for n in names if not n.startswith("kdf") and not n.startswith("KDFUSE_")]
        print(f"{lib}: {len(api)} C API symbols, {len(other)} others")
        for n in other:
            print(f"  unexpected export: {n}")
        if other or not api:
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
