#!/usr/bin/env python3
"""Host overhead of the PyTorch path: CPU time per call of a loss's forward + backward as users run it, next to
one native aten op with its backward (F.kl_div on prepared log-probabilities, the unit of the table in
docs/benchmarking.md, "Host overhead of the PyTorch path").

Tiny CPU tensors on the SIMT build in count-only mode (kernels and GEMMs are validated and counted but not
executed, docs/architecture.md): what remains is the host work a GPU run also pays, Python dispatch, the
custom-op and autograd machinery, the binding and the C library's validation. Every row: `--calls` calls timed
with time.process_time, best of `--repeats` runs, in microseconds per call; the ratio is against the native op.
Rows whose kernels would run (the native op and the eager reference) run for real: their tiny tensors make that
host work too.

    PYTHONPATH=python:python_ref python bench/host_overhead.py [--calls 200] [--repeats 5] [--markdown]
"""
import argparse
import time

import torch
import torch.nn.functional as F


def _leaf(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).requires_grad_(True)


def _const(*shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def _step(leaves, loss_fn):
    """A closure running loss_fn() forward and backward, the leaves' gradients reset first."""
    def run():
        for x in leaves:
            x.grad = None
        loss = loss_fn()
        (sum(loss) if isinstance(loss, list) else loss).backward()
    return run


def cases():
    """(name, closure) of every timed row; the first is the native reference."""
    from kdfuse import nn as knn
    from kdfuse import ops
    from kdfuse_ref.kd import DistillKL as SeedDistillKL

    x = torch.log_softmax(_const(4, 10), 1).requires_grad_(True)
    p = torch.softmax(_const(4, 10, seed=2), 1)
    y_s, y_t = _leaf(4, 10), _const(4, 10)
    f_s, f_t = _leaf(2, 4, 4, 4), _const(2, 4, 4, 4)
    e_s, e_t = _leaf(4, 8), _const(4, 8)
    top_s, top_t = _leaf(2, 6, 4, 4, seed=3), _const(2, 6, 4, 4, seed=4)
    g_s = [_leaf(2, 4, 4, 4, seed=5), _leaf(2, 6, 2, 2, seed=6), _leaf(2, 8, 2, 2, seed=7)]
    g_t = [_const(2, 4, 4, 4, seed=8), _const(2, 6, 2, 2, seed=9), _const(2, 8, 2, 2, seed=10)]
    seed_kd, kd_module, rkd_module, at_module = SeedDistillKL(4.0), knn.DistillKL(4.0), knn.RKDLoss(), knn.Attention()
    return [
        ("F.kl_div (one native op, prepared inputs)", _step([x], lambda: F.kl_div(x, p, reduction="batchmean"))),
        ("eager RepDistiller DistillKL", _step([y_s], lambda: seed_kd(y_s, y_t))),
        ("kdfuse.ops.kd", _step([y_s], lambda: ops.kd(y_s, y_t, 4.0))),
        ("kdfuse.ops.fitnet", _step([f_s], lambda: ops.fitnet(f_s, f_t))),
        ("kdfuse.ops.at", _step([f_s], lambda: ops.at(f_s, f_t))),
        ("kdfuse.ops.sp", _step([e_s], lambda: ops.sp(e_s, e_t))),
        ("kdfuse.ops.rkd", _step([e_s], lambda: ops.rkd(e_s, e_t))),
        ("kdfuse.ops.pkt", _step([e_s], lambda: ops.pkt(e_s, e_t))),
        ("kdfuse.ops.nst", _step([f_s], lambda: ops.nst(f_s, f_t))),
        ("kdfuse.ops.fsp", _step([f_s, top_s], lambda: ops.fsp(f_s, top_s, f_t, top_t))),
        ("kdfuse.ops.kdsvd (3 layers)", _step(g_s, lambda: ops.kdsvd(g_s, g_t).sum())),
        ("kdfuse.nn.DistillKL", _step([y_s], lambda: kd_module(y_s, y_t))),
        ("kdfuse.nn.RKDLoss", _step([e_s], lambda: rkd_module(e_s, e_t))),
        ("kdfuse.nn.Attention (3 layer pairs)", _step([f_s, f_s], lambda: at_module([f_s, f_s, f_s], [f_t, f_t, f_t]))),
    ]


def per_call_us(run, calls, repeats):
    run()  # first call: library load, handle, op registration
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            run()
        best = min(best, (time.process_time() - start) / calls)
    return best * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    from kdfuse import _lib

    _lib.load("simt")
    runtime = _lib._runtimes[0]  # the SIMT runtime loaded beside libkdfuse_sim
    threads = torch.get_num_threads()
    runtime.kdfuse_simt_set_count_only(1)
    torch.set_num_threads(1)
    try:
        rows = [(name, per_call_us(run, args.calls, args.repeats)) for name, run in cases()]
    finally:  # the process may go on computing (the smoke test)
        runtime.kdfuse_simt_set_count_only(0)
        torch.set_num_threads(threads)
    native = rows[0][1]
    if args.markdown:
        print("| call (tiny CPU tensors, forward + backward) | host time per call (us) | vs one native op |")
        print("|---|---|---|")
        for name, us in rows:
            print(f"| {name} | {us:.0f} | {us / native:.1f}x |")
    else:
        for name, us in rows:
            print(f"{name:45s} {us:8.0f} us  {us / native:5.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
