#!/usr/bin/env python3
"""The roofline model's inputs for the eager PyTorch reference (modelled, not measured): every workload of
bench/torch_baseline.py (RepDistiller's modules, the same shapes as the C++ suites) runs one forward + backward at
the preset's full size on fake tensors (torch's FakeTensorMode: shapes and dtypes, no memory, no arithmetic), and
a dispatch mode counts what eager execution would do on a GPU:

- kernels: the aten operators that compute (views, reshapes and other aliasing operators launch nothing);
  matrix products (mm, bmm, addmm, baddbmm, ...) are counted apart as cuBLAS calls;
- bytes: each computing operator reads its tensor inputs and writes its outputs once (what eager moves when no
  intermediate stays in cache);
- FLOPs: 2 m n k per matrix product;
- host syncs: operators that copy a value to the host (.item(): aten._local_scalar_dense).

    python3 bench/eager_model.py --presets-exe build/bench/kdfuse_bench_presets --out build/bench-results/eager.json

Writes [{"loss", "preset", "dtype", "variant": "eager", "launches", "cublas_calls", "bytes", "flops",
"host_syncs"}], which bench/roofline.py turns into modelled times beside kdfuse's. A reference that depends on the
data (RKD's boolean mask, CRD's .item()) cannot run on fake tensors: its entry says so instead."""
import argparse
import json
import pathlib
import sys

import torch
from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import torch_baseline  # noqa: E402 - the workloads and presets

MATMULS = {"mm", "bmm", "addmm", "baddbmm", "addbmm", "matmul", "_scaled_mm"}
SYNCS = {"_local_scalar_dense", "item"}
# Operators that only allocate or describe memory: no kernel, no traffic.
METADATA = {"detach", "alias", "lift_fresh", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
            "_unsafe_view", "set_", "resize_"}


class Counter(TorchDispatchMode):
    """Counts the computing operators, their bytes and the matrix products' FLOPs."""

    def __init__(self):
        super().__init__()
        self.launches = self.cublas_calls = self.host_syncs = 0
        self.bytes = self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name in SYNCS:
            self.host_syncs += 1
            return out
        if func.is_view or name in METADATA:
            return out
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not outputs:
            return out
        self.bytes += sum(t.numel() * t.element_size() for t in inputs + outputs)
        if name in MATMULS:
            self.cublas_calls += 1
            a, b = inputs[-2], inputs[-1]
            self.flops += 2 * a.numel() * b.shape[-1]
        else:
            self.launches += 1
        return out


def count(workload, shapes):
    """One forward + backward of the reference at full size on fake tensors."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch_baseline.Inputs(torch.device("cpu"))
        reference, _ = workload(x, shapes)
        counter = Counter()
        with counter:
            loss = reference()
            loss.backward()
    return counter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets-exe", type=pathlib.Path, default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--loss", help="comma-separated losses (default: all)")
    args = ap.parse_args()
    presets = torch_baseline.load_presets(args.presets_exe or torch_baseline.default_presets_exe())
    entries = []
    for loss, preset, workload, shapes in torch_baseline.cases(presets, False,
                                                                set(args.loss.split(",")) if args.loss else None):
        try:
            c = count(workload, shapes)
        except (DynamicOutputShapeException, DataDependentOutputException) as e:  # a mask or an .item(): data
            entries.append({"loss": loss, "preset": preset, "variant": "eager",
                            "error": f"not modelled: depends on the data ({e.func})"})
            print(f"{loss}/{preset}: not modelled (depends on the data: {e.func})", flush=True)
            continue
        entries.append({"loss": loss, "preset": preset, "dtype": shapes.get("dtype", "float32").replace("float32", "fp32")
                        .replace("bfloat16", "bf16"), "variant": "eager", "launches": c.launches,
                        "cublas_calls": c.cublas_calls, "bytes": c.bytes, "flops": c.flops, "host_syncs": c.host_syncs})
        print(f"{loss}/{preset}: {c.launches} kernels, {c.cublas_calls} GEMMs, {c.bytes / 1e6:.4g} MB, "
              f"{c.host_syncs} host syncs", flush=True)
    pathlib.Path(args.out).write_text(json.dumps(entries, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
