#!/usr/bin/env python3
"""Kernel sources must be portable between nvcc and the SIMT backend.

Outside kernels/common/portability.cuh, no source in kernels/, host/, bench/ or tests/ may contain a
triple-chevron launch, an `extern __shared__` declaration or inline assembly: kdf::launch,
kdf::dynamic_shared and the portability header replace them.
"""
import pathlib
import re
import sys

RULES = [
    (re.compile(r"<<<"), "triple-chevron launch (use kdf::launch)"),
    (re.compile(r"\bextern\s+__shared__\b"), "extern __shared__ (use kdf::dynamic_shared<T>())"),
    (re.compile(r"\b(asm|__asm__)\s*(volatile\s*)?\("), "inline asm (only in kernels/common/portability.cuh)"),
]
SUFFIXES = {".cu", ".cuh", ".cpp", ".h", ".hpp"}
EXEMPT = {pathlib.Path("kernels/common/portability.cuh")}


def main(root: pathlib.Path) -> int:
    problems = []
    checked = 0
    for folder in ("kernels", "host", "bench", "tests"):
        for path in sorted((root / folder).rglob("*")):
            rel = path.relative_to(root)
            if path.suffix not in SUFFIXES or rel in EXEMPT:
                continue
            checked += 1
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("//", 1)[0]
                for pattern, what in RULES:
                    if pattern.search(code):
                        problems.append(f"{rel}:{lineno}: {what}: {line.strip()}")
    for p in problems:
        print(p)
    print(f"checked {checked} files, {len(problems)} problems")
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1])))
