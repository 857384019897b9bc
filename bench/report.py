#!/usr/bin/env python3
"""Markdown report of kdfuse's Google Benchmark JSON outputs and of the PyTorch baseline (docs/benchmarking.md).

    python3 bench/report.py OUT.md build/bench/*.json [--torch torch_baseline.json]

GPU runs (kdfuse_bench_<family>): per loss and preset the warm, cold and graph-replay time per call, the
achieved GB/s and share of the device's peak bandwidth (warm), GFLOP/s and share of the FP32 peak for the
GEMM-based losses, and the kernels and memsets of one call. Emulated runs (kdfuse_bench_<family>_sim):
the exact kernel-launch and cuBLAS-call counts at full size (count-only mode) and the analytic model; they
carry no timing.

The PyTorch baseline (bench/torch_baseline.py; given with --torch or recognised among the inputs by its
"format") adds columns: from a GPU run the binding's, eager PyTorch's and torch.compile's time per
forward+backward, kdfuse's speedup over eager and over torch.compile, and the peak memory of the three;
from an emulated (--smoke) run only the agreement of the eager and kdfuse losses (no timing, no speedup).
"""
import argparse
import json
import sys
from collections import defaultdict

TORCH_FORMAT = "kdfuse-torch-baseline"


def load(paths):
    """({(loss, preset): {variant: benchmark entry}}, the context of the first C++ file, the PyTorch baseline
    or None). Baseline files are recognised by their "format"; several are merged."""
    runs, context, baseline = defaultdict(dict), None, None
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        if data.get("format") == TORCH_FORMAT:
            if baseline is None:
                baseline = data
            else:
                baseline["results"] = baseline["results"] + data["results"]
            continue
        context = context or data.get("context", {})
        for b in data["benchmarks"]:
            loss, preset, variant = b["name"].split("/")[:3]
            runs[(loss, preset)][variant] = b
    return runs, context, baseline


def fmt(value, digits=3):
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def fmt_bytes(value):
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1000 or unit == "GiB":
            return f"{value:.3g} {unit}"
        value /= 1024


def per_call_us(entry):
    """Time per call in microseconds (manual time; the graph variant already reports it per call)."""
    if entry is None or entry.get("error_occurred"):
        return None
    scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[entry.get("time_unit", "ns")]
    return entry["real_time"] * scale


# ---- PyTorch baseline columns ------------------------------------------------------------------------------

def torch_index(baseline):
    """{(loss, preset): {variant: entry}} of the baseline's results."""
    index = defaultdict(dict)
    for e in baseline["results"] if baseline else []:
        index[(e["loss"], e["preset"])][e["variant"]] = e
    return index


def torch_headers(baseline):
    if baseline is None:
        return []
    if baseline.get("emulated"):
        return ["eager vs kdfuse loss (smoke, rel. diff)"]
    return ["binding us", "eager us", "compile us", "x eager", "x compile", "peak eager", "peak compile",
            "peak kdfuse"]


def torch_cells(baseline, variants):
    """The baseline's cells of one loss and preset (variants: {variant: entry}, possibly empty)."""
    if baseline is None:
        return []

    def failed(v):
        e = variants.get(v)
        return None if e is None or "error" not in e else ("OOM" if e["error"] == "out of memory" else "error")

    def time(v):
        return failed(v) or fmt((variants.get(v) or {}).get("time_us"))

    if baseline.get("emulated"):
        eager, fused = (variants.get(v, {}).get("loss_value") for v in ("eager", "kdfuse"))
        if failed("eager") or failed("kdfuse"):
            return ["error"]
        if eager is None or fused is None:
            return ["-"]
        return [fmt(abs(fused - eager) / abs(eager) if eager else abs(fused), 2)]

    def speedup(over):
        t, k = ((variants.get(v) or {}).get("time_us") for v in (over, "kdfuse"))
        return f"{t / k:.3g}x" if t and k else "-"

    def peak(v):
        return failed(v) or fmt_bytes((variants.get(v) or {}).get("peak_bytes"))

    return [time("kdfuse"), time("eager"), time("compile"), speedup("eager"), speedup("compile"),
            peak("eager"), peak("compile"), peak("kdfuse")]


def torch_preamble(baseline):
    if baseline is None:
        return []
    if baseline.get("emulated"):
        return [f"PyTorch baseline (bench/torch_baseline.py --smoke, {baseline.get('device', '?')}): smoke scale, "
                "each variant run once on the CPU: no timing, no peak memory, no speedup, torch.compile not run; "
                "the column compares the eager reference's loss with the kdfuse binding's.", ""]
    return [f"PyTorch baseline (bench/torch_baseline.py): {baseline.get('device', '?')}, torch "
            f"{baseline.get('torch', '?')}, one forward+backward per call, median of {baseline.get('iters')} calls "
            f"after {baseline.get('warmup')} warm-up calls (CUDA events, device synchronised before each). "
            "\"binding us\" is the kdfuse Python binding timed the same way (ctypes and output allocation "
            "included); the speedups are eager or torch.compile time over it. Peak memory: "
            "torch.cuda.max_memory_allocated during one call minus the memory allocated before it (the inputs).",
            ""]


# ---- the report ----------------------------------------------------------------------------------------------

def report(runs, context, baseline=None):
    lines = ["# kdfuse benchmark report", ""]
    extra = torch_index(baseline)
    keys = sorted(set(runs) | set(extra))
    headers = torch_headers(baseline)

    def cells(key):
        return "".join(f" {c} |" for c in torch_cells(baseline, extra.get(key, {})))

    tail_sep = "---|" * len(headers)
    head = "".join(f" {h} |" for h in headers)
    emulated = all("counts" in variants for variants in runs.values()) if runs else bool(baseline.get("emulated"))
    if emulated:
        lines += ["Emulated run (SIMT backend): no timings. Kernel launches and cuBLAS calls of one call at the",
                  "preset's full size, counted in the backend's count-only mode: exact, the GPU build issues the same.",
                  "Minimum bytes and GEMM FLOPs from the analytic model.", ""] + torch_preamble(baseline)
        lines += ["| loss | preset | kernels | cuBLAS calls | min. bytes | GEMM FLOPs |" + head,
                  "|---|---|---|---|---|---|" + tail_sep]
        for key in keys:
            e = runs.get(key, {}).get("counts", {})
            lines.append(f"| {key[0]} | {key[1]} | {fmt(e.get('kernels'))} | {fmt(e.get('cublas_calls'))} | "
                         f"{fmt(e.get('bytes'))} | {fmt(e.get('flops'))} |" + cells(key))
        return "\n".join(lines) + "\n"
    device = next((v[k].get("label") for v in runs.values() for k in v if v[k].get("label")), "?")
    lines += [f"Device: {device}. Host: {context.get('host_name', '?')}, {context.get('date', '?')}.", ""]
    lines += torch_preamble(baseline)
    lines += ["| loss | preset | warm us | cold us | graph us/call | GB/s | % peak BW | GFLOP/s | % peak FP32 | "
              "kernels | memsets |" + head,
              "|---|---|---|---|---|---|---|---|---|---|---|" + tail_sep]
    for key in keys:
        v = runs.get(key, {})
        warm = v.get("warm", {})
        lines.append("| " + " | ".join([
            key[0], key[1], fmt(per_call_us(v.get("warm"))), fmt(per_call_us(v.get("cold"))),
            fmt(per_call_us(v.get("graph"))), fmt(warm.get("GB/s")), fmt(warm.get("%peak_bw")),
            fmt(warm.get("GFLOP/s")), fmt(warm.get("%peak_fp32")), fmt(warm.get("kernels")), fmt(warm.get("memsets"))])
            + " |" + cells(key))
    return "\n".join(lines) + "\n"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="markdown report to write")
    parser.add_argument("inputs", nargs="*", help="Google Benchmark JSON files (and PyTorch baseline JSON files)")
    parser.add_argument("--torch", action="append", default=[], help="PyTorch baseline JSON (bench/torch_baseline.py)")
    args = parser.parse_args(argv[1:])
    if not args.inputs and not args.torch:
        parser.print_usage(sys.stderr)
        return 2
    runs, context, baseline = load(args.inputs + args.torch)
    if not runs and baseline is None:
        print("no benchmark entries in the inputs", file=sys.stderr)
        return 1
    with open(args.out, "w") as f:
        f.write(report(runs, context or {}, baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
