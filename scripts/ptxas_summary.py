#!/usr/bin/env python3
"""Summarises `ptxas -v` output from a build log: registers, shared memory and spills per kernel and
architecture. Fails if any kernel spills (the build already fails through -warn-spills -Werror; this is
the readable report). A log without ptxas lines (an incremental build compiled nothing) is not an error."""
import re
import subprocess
import sys

ENTRY = re.compile(r"ptxas info\s*: Compiling entry function '(\S+)' for '(sm_\d+)'")
SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers.*?(?:, (\d+) bytes smem)?")


def main(path):
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
        r["kernel"] = name if len(name) <= 110 else name[:107] + "..."
    spilling = [r for r in rows if r["spill"]]
    print(f"{'arch':6} {'regs':>4} {'smem':>6} {'stack':>5} {'spill':>5}  kernel")
    for r in sorted(rows, key=lambda r: (r["arch"], r["kernel"])):
        print(f"{r['arch']:6} {r['regs']:>4} {r['smem']:>6} {r['stack']:>5} {r['spill']:>5}  {r['kernel']}")
    print(f"{len(rows)} kernel compilations, {len(spilling)} with spills")
    return 1 if spilling else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
