#!/usr/bin/env python3
"""One version everywhere: the CMake project's VERSION, the C header's KDFUSE_VERSION_MAJOR / MINOR / PATCH and the
Python package's kdfuse.__version__ (which the wheel's metadata reads)."""
import pathlib
import re
import sys


def main(root):
    root = pathlib.Path(root)
    cmake = re.search(r"project\(kdfuse VERSION (\d+\.\d+\.\d+)", (root / "CMakeLists.txt").read_text()).group(1)
    header = (root / "include" / "kdfuse" / "kdfuse.h").read_text()
    parts = [re.search(rf"#define KDFUSE_VERSION_{p} (\d+)", header).group(1) for p in ("MAJOR", "MINOR", "PATCH")]
    package = re.search(r'^__version__ = "([^"]+)"', (root / "python" / "kdfuse" / "__init__.py").read_text(),
                        re.M).group(1)
    versions = {"CMakeLists.txt": cmake, "kdfuse.h": ".".join(parts), "kdfuse/__init__.py": package}
    print(versions)
    return 0 if len(set(versions.values())) == 1 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
