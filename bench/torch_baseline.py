#!/usr/bin/env python3
"""PyTorch baseline of the kdfuse benchmarks (docs/benchmarking.md): for every loss and workload preset of
the C++ suites, one forward+backward (loss.backward() w.r.t. the student inputs) of

    eager    the PyTorch reference (python_ref/kdfuse_ref, RepDistiller's modules) in eager mode,
    compile  the same function under torch.compile,
    kdfuse   the kdfuse binding (python/kdfuse): loss and gradients in the fused calls,

on the shapes bench/kdfuse_bench_presets prints (bench/common/presets.h as JSON), with the workload of each
loss as bench_<family>.cpp defines it.

GPU (the default; needs CUDA and the CUDA build of kdfuse, KDFUSE_LIB or build/libkdfuse.so): per variant
one first call (its loss value is recorded; torch.compile compiles here), --warmup calls, then --iters
calls each timed with CUDA events after a device synchronisation, median reported; then the peak memory of
one more call: torch.cuda.max_memory_allocated() after reset_peak_memory_stats(), minus what was allocated
before the call (the inputs), so outputs, gradients, temporaries and workspaces count.

    python bench/torch_baseline.py --out build/bench-results/torch_baseline.json \\
        --chart build/bench-results/torch_speedup.png

--smoke (no GPU needed): every variant runs once at the presets' smoke scale on the CPU, the binding on
the SIMT build (KDFUSE_LIB or build/simt/libkdfuse_sim.so). torch.compile is not run there: compiling
every case for the CPU takes minutes, too slow for the test suite. Nothing is timed (time_us null,
"emulated": true); the loss values are recorded, so eager and kdfuse can be compared.

Output (--out): {"format": "kdfuse-torch-baseline", "version": 1, "device", "emulated", "smoke", ...,
"results": [{"loss", "preset", "variant", "device", "emulated", "time_us", "peak_bytes", "loss_value"
[, "error"]}]}, one entry per loss, preset and variant; bench/report.py merges it into the report.
--chart: a PNG of kdfuse's speedup over eager and over torch.compile per loss for --chart-preset (log
scale; GPU runs only).
"""
import argparse
import gc
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
for _p in (ROOT / "python_ref", ROOT / "python"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import torch  # noqa: E402

import kdfuse  # noqa: E402
from kdfuse_ref.ab import ABLoss  # noqa: E402
from kdfuse_ref.at import Attention  # noqa: E402
from kdfuse_ref.cc import Correlation  # noqa: E402
from kdfuse_ref.crd import ContrastLoss, ContrastMemory, l2_normalize  # noqa: E402
from kdfuse_ref.fitnet import HintLoss  # noqa: E402
from kdfuse_ref.fsp import FSP  # noqa: E402
from kdfuse_ref.ft import FactorTransfer  # noqa: E402
from kdfuse_ref.kd import DistillKL  # noqa: E402
from kdfuse_ref.nst import NSTLoss  # noqa: E402
from kdfuse_ref.ofd import ofd_loss  # noqa: E402
from kdfuse_ref.pkt import PKT  # noqa: E402
from kdfuse_ref.rkd import RKDLoss  # noqa: E402
from kdfuse_ref.sp import Similarity  # noqa: E402
from kdfuse_ref.vid import vid_loss  # noqa: E402

FORMAT = "kdfuse-torch-baseline"
VERSION = 1
VARIANTS = ("eager", "compile", "kdfuse")
DEFAULT_CHART_PRESET = "cifar100_resnet32x4_resnet8x4"


def default_presets_exe():
    """KDFUSE_BENCH_PRESETS, else bench/kdfuse_bench_presets of the build KDFUSE_LIB comes from
    (<build>/simt/libkdfuse_sim.so or <build>/libkdfuse.so), else build/bench/kdfuse_bench_presets."""
    if os.environ.get("KDFUSE_BENCH_PRESETS"):
        return pathlib.Path(os.environ["KDFUSE_BENCH_PRESETS"])
    if os.environ.get("KDFUSE_LIB"):
        lib_dir = pathlib.Path(os.environ["KDFUSE_LIB"]).absolute().parent
        build = lib_dir.parent if lib_dir.name == "simt" else lib_dir
        return build / "bench" / "kdfuse_bench_presets"
    return ROOT / "build" / "bench" / "kdfuse_bench_presets"


def load_presets(exe):
    """{"networks": [...], "logits": [...], "crd": [...]} as bench/presets_json.cpp prints them."""
    return json.loads(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)


# ---- inputs ------------------------------------------------------------------------------------------

class Inputs:
    """Seeded input tensors on one device; remembers the leaves that get gradients (reset between calls)."""

    def __init__(self, device, seed=0):
        torch.manual_seed(seed)  # the reference modules' own initialisation (CRD's banks)
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.leaves = []

    def leaf(self, t):
        self.leaves.append(t.requires_grad_())
        return t

    def uniform(self, *shape, lo=-1.0, hi=1.0, grad=False, dtype=torch.float32):
        t = torch.empty(shape, device=self.device).uniform_(lo, hi, generator=self.generator).to(dtype)
        return self.leaf(t) if grad else t

    def maps(self, p, side, stages, grad=False):
        """The N x C x H x W stage outputs `stages` of preset p's `side` ("student" / "teacher")."""
        return [self.uniform(p["n"], *p[side][l], grad=grad) for l in stages]


def summed(call, stages):
    """kdfuse calls summed into one loss as the C++ suites run them: the first call writes the loss (and its
    gradient), the others accumulate into the loss (and into their own zero-initialised gradients)."""
    loss = torch.empty((), device=stages[0][0].device)
    for i, args in enumerate(stages):
        call(*args, accumulate=i > 0, out=(loss, torch.zeros_like(args[0]) if i else torch.empty_like(args[0])))
    return loss


def detached(tensors):
    return [t.detach() for t in tensors]


# ---- workloads: one function per loss, the workload of bench_<family>.cpp -----------------------------
# Each takes (x: Inputs, p: preset at the run's scale) and returns (reference, fused): reference() is the
# forward of the reference modules (a 0-dim or (1,) loss; the harness calls backward), fused() one
# kdfuse forward+backward returning the loss.

def kd(x, p):
    """bench_kd.cpp: the logits (N x classes of a network preset, rows x classes of an LLM preset, in the preset's
    dtype: PyTorch's DistillKL then runs in bf16 too, as an LLM training step would)."""
    rows = p["rows"] if "rows" in p else p["n"]
    dtype = getattr(torch, p.get("dtype", "float32"))
    y_s = x.uniform(rows, p["classes"], lo=-4.0, hi=4.0, grad=True, dtype=dtype)
    y_t = x.uniform(rows, p["classes"], lo=-4.0, hi=4.0, dtype=dtype)
    module = DistillKL(T=4.0)
    return (lambda: module(y_s, y_t)), (lambda: kdfuse.kd(y_s.detach(), y_t, T=4.0)[0])


def fitnet(x, p):
    """bench_feature.cpp: stage 2 (RepDistiller's hint layer), the teacher's shape on both sides."""
    (f_s,), (f_t,) = x.maps(p, "teacher", [1], grad=True), x.maps(p, "teacher", [1])
    module = HintLoss()
    return (lambda: module(f_s, f_t)), (lambda: kdfuse.fitnet(f_s.detach(), f_t)[0])


def at(x, p):
    """bench_feature.cpp: the three stages summed into one loss."""
    g_s, g_t = x.maps(p, "student", [0, 1, 2], grad=True), x.maps(p, "teacher", [0, 1, 2])
    module = Attention(p=2)
    return (lambda: sum(module(g_s, g_t))), (lambda: summed(kdfuse.at, list(zip(detached(g_s), g_t))))


def ft(x, p):
    """bench_feature.cpp: stage 3 (RepDistiller's FactorTransfer), the teacher's shape on both sides."""
    (f_s,), (f_t,) = x.maps(p, "teacher", [2], grad=True), x.maps(p, "teacher", [2])
    module = FactorTransfer(p1=2, p2=1)
    return (lambda: module(f_s, f_t)), (lambda: kdfuse.ft(f_s.detach(), f_t)[0])


def ab(x, p):
    """bench_feature.cpp: the three stages summed (teacher shapes), with ABLoss's layer weights."""
    g_s, g_t = x.maps(p, "teacher", [0, 1, 2], grad=True), x.maps(p, "teacher", [0, 1, 2])
    module = ABLoss(feat_num=3, margin=1.0)

    def fused():
        def layer(s, t, w, accumulate, out):
            return kdfuse.ab(s, t, margin=1.0, weight=w, accumulate=accumulate, out=out)
        return summed(layer, list(zip(detached(g_s), g_t, module.w)))
    return (lambda: sum(module(g_s, g_t))), fused


def ofd(x, p):
    """bench_feature.cpp: the three stages summed (teacher shapes); the loss after the connector (seed variant)."""
    g_s, g_t = x.maps(p, "teacher", [0, 1, 2], grad=True), x.maps(p, "teacher", [0, 1, 2])
    return ((lambda: sum(ofd_loss(s, t) for s, t in zip(g_s, g_t))),
            (lambda: summed(kdfuse.ofd, list(zip(detached(g_s), g_t)))))


def vid(x, p):
    """bench_feature.cpp: the three stages summed (teacher shapes); the loss after the regressor: gradient of
    pred_mean, log_scale (one value per channel) held fixed as in the C++ suite."""
    g_s, g_t = x.maps(p, "teacher", [0, 1, 2], grad=True), x.maps(p, "teacher", [0, 1, 2])
    log_scale = [x.uniform(t.shape[1]) for t in g_t]

    def fused():
        def layer(pred, target, ls, accumulate, out):
            return kdfuse.vid(pred, target, ls, accumulate=accumulate, out=out + (None,))
        return summed(layer, list(zip(detached(g_s), g_t, log_scale)))
    return (lambda: sum(vid_loss(s, t, ls) for s, t, ls in zip(g_s, g_t, log_scale))), fused


def sp(x, p):
    """bench_gram.cpp: stage 3, flattened per sample (RepDistiller's g[-2])."""
    (f_s,), (f_t,) = x.maps(p, "student", [2], grad=True), x.maps(p, "teacher", [2])
    module = Similarity()
    return (lambda: sum(module([f_s], [f_t]))), (lambda: kdfuse.sp(f_s.detach(), f_t)[0])


def cc(x, p):
    """bench_gram.cpp: RepDistiller's 128-d embeddings (the seed's Gram variant)."""
    e_s, e_t = x.uniform(p["n"], 128, grad=True), x.uniform(p["n"], 128)
    module = Correlation()
    return (lambda: module(e_s, e_t)), (lambda: kdfuse.cc(e_s.detach(), e_t)[0])


def rkd(x, p):
    """bench_gram.cpp: the penultimate embeddings."""
    e_s, e_t = x.uniform(p["n"], p["embed_s"], grad=True), x.uniform(p["n"], p["embed_t"])
    module = RKDLoss(w_d=25, w_a=50)
    return (lambda: module(e_s, e_t)), (lambda: kdfuse.rkd(e_s.detach(), e_t, w_d=25.0, w_a=50.0)[0])


def pkt(x, p):
    """bench_gram.cpp: the penultimate embeddings."""
    e_s, e_t = x.uniform(p["n"], p["embed_s"], grad=True), x.uniform(p["n"], p["embed_t"])
    module = PKT()
    return (lambda: module(e_s, e_t)), (lambda: kdfuse.pkt(e_s.detach(), e_t)[0])


def nst(x, p):
    """bench_gram.cpp: the three stages summed into one loss."""
    g_s, g_t = x.maps(p, "student", [0, 1, 2], grad=True), x.maps(p, "teacher", [0, 1, 2])
    module = NSTLoss(full_loss=True)
    return (lambda: sum(module(g_s, g_t))), (lambda: summed(kdfuse.nst, list(zip(detached(g_s), g_t))))


def fsp(x, p):
    """bench_gram.cpp: the two pairs of consecutive stages (the middle stage's gradient accumulated)."""
    g_s, g_t = x.maps(p, "student", [0, 1, 2], grad=True), x.maps(p, "teacher", [0, 1, 2])
    module = FSP([f.shape for f in g_s], [f.shape for f in g_t])
    return (lambda: sum(module(g_s, g_t))), (lambda: kdfuse.fsp_chain(detached(g_s), g_t)[0])


def crd_workload(x, p, z_mode):
    """bench_crd.cpp: RepDistiller's ContrastMemory + two ContrastLoss on L2-normalised embeddings (both
    get gradients, as both embed heads train), contrast indices given (int64, column 0 = idx), banks updated
    in place, Z already set (1e4: the steady state; "ema" updates it on every call)."""
    n, d, k, n_data = p["n"], p["d"], p["k"], p["n_data"]
    gen, dev = x.generator, x.device
    v_s = x.leaf(l2_normalize(torch.randn(n, d, generator=gen, device=dev)))
    v_t = x.leaf(l2_normalize(torch.randn(n, d, generator=gen, device=dev)))
    memory = ContrastMemory(d, n_data, k, T=0.07, momentum=0.5, z_mode=z_mode).to(dev)
    memory.params[2] = memory.params[3] = 1e4
    criterion_s, criterion_t = ContrastLoss(n_data), ContrastLoss(n_data)
    idx = torch.arange(n, device=dev) * 7919 % n_data
    contrast_idx = torch.randint(0, n_data, (n, k + 1), generator=gen, device=dev)
    contrast_idx[:, 0] = idx
    z = torch.full((2,), 1e4, device=dev)

    def reference():
        out_s, out_t = memory(v_s, v_t, idx, contrast_idx)
        return criterion_s(out_s) + criterion_t(out_t)

    def fused():  # the module's banks themselves: kdfuse updates them in place too
        return kdfuse.crd(v_s.detach(), v_t.detach(), memory.memory_v1, memory.memory_v2, idx, contrast_idx, z,
                          temperature=0.07, momentum=0.5, z_mode=z_mode)[0]
    return reference, fused


def crd(x, p):
    return crd_workload(x, p, "once")


def crd_ema(x, p):
    return crd_workload(x, p, "ema")


# (loss, preset lists of load_presets() it runs on, workload), in the C++ suites' order.
WORKLOADS = [
    ("kd", ("networks", "logits"), kd),
    ("fitnet", ("networks",), fitnet), ("at", ("networks",), at), ("ft", ("networks",), ft),
    ("ab", ("networks",), ab), ("ofd", ("networks",), ofd), ("vid", ("networks",), vid),
    ("sp", ("networks",), sp), ("cc", ("networks",), cc), ("rkd", ("networks",), rkd), ("pkt", ("networks",), pkt),
    ("nst", ("networks",), nst), ("fsp", ("networks",), fsp),
    ("crd", ("crd",), crd), ("crd_ema", ("crd",), crd_ema),
]
LOSSES = [name for name, _, _ in WORKLOADS]


def cases(presets, smoke, losses=None, preset_names=None):
    """[(loss, preset name, workload, shapes)] for the selected losses and presets."""
    out = []
    for name, kinds, workload in WORKLOADS:
        if losses and name not in losses:
            continue
        for kind in kinds:
            for p in presets[kind]:
                if not preset_names or p["name"] in preset_names:
                    out.append((name, p["name"], workload, p["smoke"] if smoke else p))
    return out


# ---- the harness -----------------------------------------------------------------------------------------

def run_variant(workload, shapes, variant, device, args):
    """{time_us, peak_bytes, loss_value} of one variant, the case built afresh (same seed: same inputs and
    state for every variant)."""
    x = Inputs(device)
    reference, fused = workload(x, shapes)
    if variant == "kdfuse":
        step = fused
    else:
        forward = reference if variant == "eager" else torch.compile(reference, dynamic=False, mode=args.compile_mode)

        def step():
            loss = forward()
            loss.backward()
            return loss

    def clear():
        for t in x.leaves:
            t.grad = None

    loss_value = float(step().detach().sum())  # compiles under torch.compile
    if device.type != "cuda":
        return {"time_us": None, "peak_bytes": None, "loss_value": loss_value}
    for _ in range(args.warmup):
        clear()
        step()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(args.iters):
        clear()
        torch.cuda.synchronize()
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    clear()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    return {"time_us": statistics.median(times), "peak_bytes": int(peak), "loss_value": loss_value}


def run(args):
    smoke = args.smoke
    if not smoke and not torch.cuda.is_available():
        print("torch_baseline: no GPU visible: only --smoke runs here (no timing without a GPU)", file=sys.stderr)
        return 2
    device = torch.device("cpu") if smoke else torch.device("cuda", torch.cuda.current_device())
    device_name = (f"CPU {platform.machine()} (kdfuse SIMT build)" if smoke else torch.cuda.get_device_name(device))
    variants = ("eager", "kdfuse") if smoke or args.no_compile else VARIANTS
    presets = load_presets(args.presets_exe)
    selected = cases(presets, smoke, set(args.loss.split(",")) if args.loss else None,
                     set(args.preset.split(",")) if args.preset else None)
    if not selected:
        print("torch_baseline: no loss/preset matches the filters", file=sys.stderr)
        return 2
    results, failed = [], 0
    for loss, preset, workload, shapes in selected:
        for variant in variants:
            entry = {"loss": loss, "preset": preset, "variant": variant, "device": device_name, "emulated": smoke,
                     "time_us": None, "peak_bytes": None, "loss_value": None}
            try:
                entry.update(run_variant(workload, shapes, variant, device, args))
            except torch.cuda.OutOfMemoryError:  # a result (the reference at LLM size), not a failure
                entry["error"] = "out of memory"
            except Exception as e:  # noqa: BLE001 - recorded, the other cases still run, exit status 1
                entry["error"] = f"{type(e).__name__}: {e}"
                failed += 1
            results.append(entry)
            if variant == "compile":
                torch._dynamo.reset()
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            print(describe(entry), flush=True)
    report = {
        "format": FORMAT, "version": VERSION, "device": device_name, "emulated": smoke, "smoke": smoke,
        "torch": torch.__version__, "kdfuse_library": str(kdfuse.library_path("simt" if smoke else "cuda")),
        "iters": None if smoke else args.iters, "warmup": None if smoke else args.warmup,
        "compile_mode": None if "compile" not in variants else args.compile_mode, "variants": list(variants),
        "notes": ["smoke scale on the CPU, each variant run once: no timing, no memory; torch.compile not run "
                  "(compiling every case for the CPU is too slow for the test suite)"] if smoke else [],
        "results": results,
    }
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print(f"torch_baseline: {len(results)} entries written to {args.out}")
    if args.chart:
        if smoke:
            print("torch_baseline: no chart of an emulated run (no timings)")
        else:
            chart(results, args.chart_preset, args.chart, device_name)
            print(f"torch_baseline: chart written to {args.chart}")
    if failed:
        print(f"torch_baseline: {failed} variant(s) failed (recorded in {args.out})", file=sys.stderr)
        return 1
    return 0


def describe(e):
    what = e.get("error") or (f"loss {e['loss_value']:.7g}" + ("" if e["time_us"] is None else
                                                                f", {e['time_us']:.1f} us, peak {e['peak_bytes']} B"))
    return f"{e['loss']:8} {e['preset']:32} {e['variant']:8} {what}"


# ---- chart -----------------------------------------------------------------------------------------------

def speedup(results, loss, preset, over):
    """time(over) / time(kdfuse) for one loss and preset, None when either is missing."""
    t = {e["variant"]: e.get("time_us") for e in results if e["loss"] == loss and e["preset"] == preset}
    return t[over] / t["kdfuse"] if t.get(over) and t.get("kdfuse") else None


def chart_preset_of(results, loss, preset):
    """`preset` if the loss ran on it, else the loss's preset of the same dataset (CRD's cifar100_... /
    imagenet_...), else None."""
    names = [e["preset"] for e in results if e["loss"] == loss]
    if preset in names:
        return preset
    same = [n for n in names if n.split("_")[0] == preset.split("_")[0]]
    return same[0] if same else None


def chart(results, preset, path, device_name):
    """Grouped bars of kdfuse's speedup over eager and over torch.compile per loss on `preset`, log scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, others, bars = [], set(), {"eager": [], "compile": []}
    for loss in LOSSES:
        p = chart_preset_of(results, loss, preset)
        if p is None:
            continue
        labels.append(loss if p == preset else loss + "*")
        if p != preset:
            others.add(p)
        for over in bars:
            bars[over].append(speedup(results, loss, p, over) or float("nan"))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(labels) + 2), 4.5))
    width = 0.4
    for i, (over, values) in enumerate(bars.items()):
        drawn = ax.bar([j + (i - 0.5) * width for j in range(len(labels))], values, width,
                       label=f"over {'eager PyTorch' if over == 'eager' else 'torch.compile'}")
        ax.bar_label(drawn, fmt="%.3g", fontsize=6)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("speedup of kdfuse (forward + backward)")
    note = f" (* on {', '.join(sorted(others))})" if others else ""
    ax.set_title(f"kdfuse vs PyTorch on {preset}{note}\n{device_name}", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON output file")
    parser.add_argument("--chart", help="PNG of the speedups (GPU runs)")
    parser.add_argument("--chart-preset", default=DEFAULT_CHART_PRESET,
                        help=f"preset of the chart (default {DEFAULT_CHART_PRESET}; CRD: the same dataset's)")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU, smoke scale, each variant once, eager and kdfuse only, no timing")
    parser.add_argument("--iters", type=int, default=50, help="timed calls per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing")
    parser.add_argument("--loss", help=f"comma-separated losses (default: all of {','.join(LOSSES)})")
    parser.add_argument("--preset", help="comma-separated preset names (default: all)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode (default: %(default)s)")
    parser.add_argument("--presets-exe", type=pathlib.Path, default=None,
                        help="the build's bench/kdfuse_bench_presets (default: KDFUSE_BENCH_PRESETS, else next "
                             "to KDFUSE_LIB's build, else build/bench/kdfuse_bench_presets)")
    args = parser.parse_args(argv)
    args.presets_exe = args.presets_exe or default_presets_exe()
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    if args.loss and set(args.loss.split(",")) - set(LOSSES):
        parser.error(f"unknown loss in --loss: {sorted(set(args.loss.split(',')) - set(LOSSES))}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
