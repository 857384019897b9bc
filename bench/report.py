#!/usr/bin/env python3
"""Markdown report of kdfuse's Google Benchmark JSON outputs (docs/benchmarking.md).

    python3 bench/report.py OUT.md build/bench/*.json

GPU runs (kdfuse_bench_<family>): per loss and preset the warm, cold and graph-replay time per call, the
achieved GB/s and share of the device's peak bandwidth (warm), GFLOP/s and share of the FP32 peak for the
GEMM-based losses, and the kernels and memsets of one call. Emulated runs (kdfuse_bench_<family>_sim):
the exact kernel-launch and cuBLAS-call counts at full size (count-only mode) and the analytic model; they
carry no timing.
"""
import json
import sys
from collections import defaultdict


def load(paths):
    """{(loss, preset): {variant: benchmark entry}} and the context of the first file."""
    runs, context = defaultdict(dict), None
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        context = context or data.get("context", {})
        for b in data["benchmarks"]:
            loss, preset, variant = b["name"].split("/")[:3]
            runs[(loss, preset)][variant] = b
    return runs, context


def fmt(value, digits=3):
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def per_call_us(entry):
    """Time per call in microseconds (manual time; the graph variant already reports it per call)."""
    if entry is None or entry.get("error_occurred"):
        return None
    scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[entry.get("time_unit", "ns")]
    return entry["real_time"] * scale


def report(runs, context):
    lines = ["# kdfuse benchmark report", ""]
    emulated = all("counts" in variants for variants in runs.values())
    if emulated:
        lines += ["Emulated run (SIMT backend): no timings. Kernel launches and cuBLAS calls of one call at the",
                  "preset's full size, counted in the backend's count-only mode: exact, the GPU build issues the same.",
                  "Minimum bytes and GEMM FLOPs from the analytic model.", "",
                  "| loss | preset | kernels | cuBLAS calls | min. bytes | GEMM FLOPs |", "|---|---|---|---|---|---|"]
        for (loss, preset), v in sorted(runs.items()):
            e = v["counts"]
            lines.append(f"| {loss} | {preset} | {fmt(e.get('kernels'))} | {fmt(e.get('cublas_calls'))} | "
                         f"{fmt(e.get('bytes'))} | {fmt(e.get('flops'))} |")
        return "\n".join(lines) + "\n"
    device = next((v[k].get("label") for v in runs.values() for k in v if v[k].get("label")), "?")
    lines += [f"Device: {device}. Host: {context.get('host_name', '?')}, {context.get('date', '?')}.", "",
              "| loss | preset | warm us | cold us | graph us/call | GB/s | % peak BW | GFLOP/s | % peak FP32 | kernels | memsets |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (loss, preset), v in sorted(runs.items()):
        warm = v.get("warm", {})
        lines.append("| " + " | ".join([
            loss, preset, fmt(per_call_us(v.get("warm"))), fmt(per_call_us(v.get("cold"))),
            fmt(per_call_us(v.get("graph"))), fmt(warm.get("GB/s")), fmt(warm.get("%peak_bw")),
            fmt(warm.get("GFLOP/s")), fmt(warm.get("%peak_fp32")), fmt(warm.get("kernels")), fmt(warm.get("memsets"))]) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    runs, context = load(argv[2:])
    if not runs:
        print("no benchmark entries in the inputs", file=sys.stderr)
        return 1
    with open(argv[1], "w") as f:
        f.write(report(runs, context))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
