#!/usr/bin/env python3
"""Host overhead of the PyTorch path: CPU time per call of every loss's forward + backward as users run it, through
kdfuse.ops and through the kdfuse.nn module, next to one native aten op with its backward (F.kl_div on prepared
log-probabilities, the unit of the table in docs/benchmarking.md, "Host overhead of the PyTorch path") and to the
seed's module (the PyTorch reference, eager) on the same inputs.

Tiny CPU tensors on the SIMT build in count-only mode (kernels and GEMMs are validated and counted but not
executed, docs/architecture.md): what remains is the host work a GPU run also pays, Python dispatch, the
dispatcher and autograd, the operator library and the C library's validation. Every cell: `--calls` calls timed
with time.process_time, best of `--repeats` runs, in microseconds per call; ratios are against the native op (per
layer pair for modules that take layer lists). What runs as native aten ops (the unit, the seed's modules, the
layers inside VIDLoss, OFD and CRDLoss) runs for real: on tiny tensors that is host work too.

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


def _layers(leaves, outputs_fn):
    """A closure running layers forward (outputs_fn() returns their outputs) and backward from gradients made once,
    so that no op beyond the layers' own is timed."""
    grads = []

    def run():
        for x in leaves:
            x.grad = None
        outputs = outputs_fn()
        if not grads:
            grads.extend(torch.ones_like(o) for o in outputs)
        torch.autograd.backward(outputs, grads)
    return run


def _maps(shapes, seed, leaf):
    return [(_leaf if leaf else _const)(*shape, seed=seed + i) for i, shape in enumerate(shapes)]


class Row:
    """One loss: `op` runs kdfuse.ops.<loss> forward + backward; `module` the kdfuse.nn module as users run it and
    `seed` the reference module (RepDistiller's code, eager) on the same inputs; `pairs` layer pairs per call;
    `layers` the module's own trainable layers alone (VID's regressor, OFD's connector, CRD's embeddings' linear
    layers: native PyTorch layers that the seed's module runs too), forward + backward."""

    def __init__(self, loss, op, module_name, module, seed, pairs=1, layers=None):
        self.loss, self.op, self.module_name, self.module, self.seed, self.pairs, self.layers = (
            loss, op, module_name, module, seed, pairs, layers)


def native():
    """The unit: F.kl_div on prepared log-probabilities, forward + backward."""
    x = torch.log_softmax(_const(4, 10), 1).requires_grad_(True)
    p = torch.softmax(_const(4, 10, seed=2), 1)
    return _step([x], lambda: F.kl_div(x, p, reduction="batchmean"))


def rows():
    """Every loss, tiny CPU tensors (N = 2 maps of 4 x 4 x 4 or 4 rows of 8 / 10 values; three layer pairs where
    the module takes layer lists)."""
    import types

    from kdfuse import nn as knn
    from kdfuse import ops
    import kdfuse_ref.ab, kdfuse_ref.at, kdfuse_ref.cc, kdfuse_ref.crd, kdfuse_ref.fitnet, kdfuse_ref.fsp  # noqa: E401
    import kdfuse_ref.ft, kdfuse_ref.kd, kdfuse_ref.kdsvd, kdfuse_ref.nst, kdfuse_ref.ofd, kdfuse_ref.pkt  # noqa: E401
    import kdfuse_ref.rkd, kdfuse_ref.sp, kdfuse_ref.vid  # noqa: E401

    y_s, y_t = _leaf(4, 10), _const(4, 10)
    f_s, f_t = _leaf(2, 4, 4, 4), _const(2, 4, 4, 4)
    e_s, e_t = _leaf(4, 8), _const(4, 8)
    top_s, top_t = _leaf(2, 6, 4, 4, seed=3), _const(2, 6, 4, 4, seed=4)
    shapes = [(2, 4, 4, 4), (2, 6, 2, 2), (2, 8, 2, 2)]
    g_s, g_t = _maps(shapes, 5, True), _maps(shapes, 8, False)
    same_s, same_t = [f_s, f_s, f_s], [f_t, f_t, f_t]
    fsp_shapes = [(2, 4, 4, 4), (2, 6, 4, 4), (2, 8, 4, 4)]
    fsp_s, fsp_t = _maps(fsp_shapes, 11, True), _maps(fsp_shapes, 14, False)
    log_scale = _leaf(4, seed=17)
    opt = types.SimpleNamespace(s_dim=8, t_dim=8, feat_dim=8, nce_k=16, nce_t=0.07, nce_m=0.5, n_data=40)
    idx = torch.arange(4)
    contrast_idx = torch.randint(0, 40, (4, 17), generator=torch.Generator().manual_seed(18))
    contrast_idx[:, 0] = idx
    memory = [torch.nn.functional.normalize(_const(40, 8, seed=19 + i), dim=1) for i in range(2)]
    z = torch.tensor([-1.0, -1.0])
    v_s, v_t = _leaf(4, 8, seed=21), _leaf(4, 8, seed=22)

    def both(name, build_args=(), build_kwargs=None, **seed_kwargs):
        return (getattr(knn, name)(*build_args, **(build_kwargs or {})),
                getattr(getattr(kdfuse_ref, MODULE_OF[name]), name)(*build_args, **{**(build_kwargs or {}),
                                                                                     **seed_kwargs}))

    kd_m, kd_r = both("DistillKL", (4.0,))
    hint_m, hint_r = both("HintLoss")
    at_m, at_r = both("Attention")
    sp_m, sp_r = both("Similarity")
    cc_m, cc_r = both("Correlation", build_kwargs={"variant": "repdistiller"})
    vid_m, vid_r = both("VIDLoss", (4, 8, 4))
    rkd_m, rkd_r = both("RKDLoss")
    pkt_m, pkt_r = both("PKT")
    ab_m, ab_r = both("ABLoss", (3,))
    ft_m, ft_r = both("FactorTransfer")
    svd_m, svd_r = both("KDSVD")
    fsp_m, fsp_r = both("FSP", (fsp_shapes, fsp_shapes))
    nst_m, nst_r = both("NSTLoss")
    ofd_m, ofd_r = both("OFD", (4, 4))
    crd_m, crd_r = both("CRDLoss", (opt,))
    vid_in = _leaf(2, 4, 4, 4, seed=23)
    return [
        Row("KD", _step([y_s], lambda: ops.kd(y_s, y_t, 4.0)), "DistillKL",
            _step([y_s], lambda: kd_m(y_s, y_t)), _step([y_s], lambda: kd_r(y_s, y_t))),
        Row("FitNet", _step([f_s], lambda: ops.fitnet(f_s, f_t)), "HintLoss",
            _step([f_s], lambda: hint_m(f_s, f_t)), _step([f_s], lambda: hint_r(f_s, f_t))),
        Row("AT", _step([f_s], lambda: ops.at(f_s, f_t)), "Attention",
            _step([f_s], lambda: at_m(same_s, same_t)), _step([f_s], lambda: at_r(same_s, same_t)), pairs=3),
        Row("SP", _step([f_s], lambda: ops.sp(f_s, f_t)), "Similarity",
            _step([f_s], lambda: sp_m(same_s, same_t)), _step([f_s], lambda: sp_r(same_s, same_t)), pairs=3),
        Row("CC", _step([e_s], lambda: ops.cc(e_s, e_t, variant="repdistiller")), "Correlation",
            _step([e_s], lambda: cc_m(e_s, e_t)), _step([e_s], lambda: cc_r(e_s, e_t))),
        Row("VID", _step([f_s, log_scale], lambda: ops.vid(f_s, f_t, log_scale)), "VIDLoss (with its regressor)",
            _step([vid_in], lambda: vid_m(vid_in, f_t)), _step([vid_in], lambda: vid_r(vid_in, f_t)),
            layers=_layers([vid_in], lambda: [vid_m.regressor(vid_in)])),
        Row("RKD", _step([e_s], lambda: ops.rkd(e_s, e_t)), "RKDLoss",
            _step([e_s], lambda: rkd_m(e_s, e_t)), _step([e_s], lambda: rkd_r(e_s, e_t))),
        Row("PKT", _step([e_s], lambda: ops.pkt(e_s, e_t)), "PKT",
            _step([e_s], lambda: pkt_m(e_s, e_t)), _step([e_s], lambda: pkt_r(e_s, e_t))),
        Row("AB", _step([f_s], lambda: ops.ab(f_s, f_t)), "ABLoss",
            _step([f_s], lambda: ab_m(same_s, same_t)), _step([f_s], lambda: ab_r(same_s, same_t)), pairs=3),
        Row("FT", _step([f_s], lambda: ops.ft(f_s, f_t)), "FactorTransfer",
            _step([f_s], lambda: ft_m(f_s, f_t)), _step([f_s], lambda: ft_r(f_s, f_t))),
        Row("FSP", _step([f_s, top_s], lambda: ops.fsp(f_s, top_s, f_t, top_t)), "FSP",
            _step(fsp_s, lambda: fsp_m(fsp_s, fsp_t)), _step(fsp_s, lambda: fsp_r(fsp_s, fsp_t)), pairs=2),
        Row("NST", _step([f_s], lambda: ops.nst(f_s, f_t)), "NSTLoss",
            _step([f_s], lambda: nst_m(same_s, same_t)), _step([f_s], lambda: nst_r(same_s, same_t)), pairs=3),
        Row("OFD", _step([f_s], lambda: ops.ofd(f_s, f_t)), "OFD (with its connector)",
            _step([f_s], lambda: ofd_m(f_s, f_t)), _step([f_s], lambda: ofd_r(f_s, f_t)),
            layers=_layers([f_s], lambda: [ofd_m.connector(f_s)])),
        Row("CRD", _step([v_s, v_t], lambda: ops.crd(v_s, v_t, memory[0], memory[1], idx, z,
                                                     contrast_idx=contrast_idx)),
            "CRDLoss (with its embeddings)", _step([e_s], lambda: crd_m(e_s, e_t, idx, contrast_idx)),
            _step([e_s], lambda: crd_r(e_s, e_t, idx, contrast_idx)),
            layers=_layers([e_s], lambda: [crd_m.embed_s.linear(e_s), crd_m.embed_t.linear(e_t)])),
        Row("KDSVD", _step(g_s, lambda: ops.kdsvd(g_s, g_t, reduction="sum")), "KDSVD",
            _step(g_s, lambda: svd_m(g_s, g_t)), _step(g_s, lambda: svd_r(g_s, g_t)), pairs=2),
    ]


#: the reference module file of each module name
MODULE_OF = {"DistillKL": "kd", "HintLoss": "fitnet", "Attention": "at", "Similarity": "sp", "Correlation": "cc",
             "VIDLoss": "vid", "RKDLoss": "rkd", "PKT": "pkt", "ABLoss": "ab", "FactorTransfer": "ft", "KDSVD": "kdsvd",
             "FSP": "fsp", "NSTLoss": "nst", "OFD": "ofd", "CRDLoss": "crd"}


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
    from kdfuse.binding import _lib

    _lib.load("simt")
    runtime = _lib._runtimes[0]  # the SIMT runtime loaded beside libkdfuse_sim
    threads = torch.get_num_threads()
    runtime.kdfuse_simt_set_count_only(1)
    torch.set_num_threads(1)
    try:
        unit = per_call_us(native(), args.calls, args.repeats)
        table = [(row, *(per_call_us(run, args.calls, args.repeats) if run else None
                         for run in (row.op, row.module, row.seed, row.layers)))
                 for row in rows()]
    finally:  # the process may go on computing (the smoke test)
        runtime.kdfuse_simt_set_count_only(0)
        torch.set_num_threads(threads)
    if args.markdown:
        print(f"One native op (F.kl_div on prepared inputs, forward + backward): {unit:.0f} us\n")
        print("| loss | `kdfuse.ops` (us) | vs native op | `kdfuse.nn` module | module (us) | vs native op, per layer "
              "pair | its own layers alone (us) | module less its layers, vs native op | the seed's module, eager (us) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for row, op_us, module_us, seed_us, layers_us in table:
            pairs = f" ({row.pairs} layer pairs)" if row.pairs > 1 else ""
            own = f"{layers_us:.0f} | {(module_us - layers_us) / unit:.1f}x" if layers_us else "- | -"
            print(f"| {row.loss} | {op_us:.0f} | {op_us / unit:.1f}x | {row.module_name}{pairs} | {module_us:.0f} | "
                  f"{module_us / row.pairs / unit:.1f}x | {own} | {seed_us:.0f} |")
    else:
        print(f"{'native F.kl_div':40s} {unit:8.0f} us")
        for row, op_us, module_us, seed_us, _ in table:
            print(f"{row.loss:8s} op {op_us:8.0f} us {op_us / unit:5.1f}x   {row.module_name:32s} {module_us:8.0f} us "
                  f"{module_us / row.pairs / unit:5.1f}x per pair   seed {seed_us:8.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
