#!/usr/bin/env python3
"""Summarises `ptxas -v` output from a build log: registers, shared memory and spills per kernel and
architecture. Fails if any kernel spills (the build already fails through -warn-spills -Werror; this is
the readable report). A log without ptxas lines (an incremental build compiled nothing) is not an error.

    python3 scripts/ptxas_summary.py build/build.log                 # every kernel and architecture
    python3 scripts/ptxas_summary.py build/build.log --markdown sm_90  # one architecture, as a table
                                                                        # (docs/benchmarking.md)"""
import re
import subprocess
import sys

ENTRY = re.compile(r"ptxas info\s*: Compiling entry function '(\S+)' for '(sm_\d+)'")
SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers.*?(?:, (\d+) bytes smem)?")


def warps_by_registers(regs):
    """Resident warps per SM the registers allow (64K registers per SM, allocated per warp in units of
    256; at most 64 warps), for sm_80 and sm_90 alike."""
    per_warp = -(-int(regs) * 32 // 256) * 256
    return min(64, 65536 // per_warp)


def markdown(rows, arch):
    """kdfuse's kernels (not the GPU self-tests' or CUB's) for one architecture; a kernel template
    instantiated in several translation units with the same resources is listed once."""
    seen, unique = set(), []
    for r in rows:
        key = (r["kernel"], r["regs"], r["smem"], r["spill"])
        if r["arch"] == arch and r["kernel"].removeprefix("void ").startswith("kdf::") and key not in seen:
            seen.add(key)
            unique.append(r)
    rows = sorted(unique, key=lambda r: r["kernel"].replace("(anonymous namespace)::", "").removeprefix("void "))
    print("| kernel | registers | static smem (bytes) | spill (bytes) | warps/SM (register limit) |")
    print("|---|---|---|---|---|")
    for r in rows:
        name = r["kernel"].replace("(anonymous namespace)::", "").removeprefix("void ")
        print(f"| `{name}` | {r['regs']} | {r['smem']} | {r['spill']} | {warps_by_registers(r['regs'])} |")
    return 0


def main(path, arch=None):
    rows, current = [], None
    for line in open(path, errors="replace"):
        if m := ENTRY.search(line):
            current = {"kernel": m.group(1), "arch": m.group(2), "regs": "?", "smem": "0", "stack": "?", "spill": 0}
            rows.append(current)
        elif current and (m := SPILL.search(line)):
            current["stack"] = m.group(1)
            current["spill"] = int(m.group(2)) + int(m.group(3))
        elif current and (m := USED.search(line)):
            current["regs"] = m.group(1)
            smem = re.search(r"(\d+) bytes smem", line)
            current["smem"] = smem.group(1) if smem else "0"
    if not rows:
        print("no ptxas output in the log (nothing was recompiled)")
        return 0
    mangled = "\n".join(r["kernel"] for r in rows)
    names = subprocess.run(["c++filt"], input=mangled, capture_output=True, text=True).stdout.splitlines()
    for r, name in zip(rows, names):
        r["kernel"] = name
    if arch:
        return markdown(rows, arch)
    for r in rows:
        r["kernel"] = r["kernel"] if len(r["kernel"]) <= 110 else r["kernel"][:107] + "..."
    spilling = [r for r in rows if r["spill"]]
    print(f"{'arch':6} {'regs':>4} {'smem':>6} {'stack':>5} {'spill':>5}  kernel")
    for r in sorted(rows, key=lambda r: (r["arch"], r["kernel"])):
        print(f"{r['arch']:6} {r['regs']:>4} {r['smem']:>6} {r['stack']:>5} {r['spill']:>5}  {r['kernel']}")
    print(f"{len(rows)} kernel compilations, {len(spilling)} with spills")
    return 1 if spilling else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--markdown":
        sys.exit(main(sys.argv[1], sys.argv[3]))
    sys.exit(main(sys.argv[1]))
