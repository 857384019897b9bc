"""bench/host_overhead.py (the host-overhead table of docs/benchmarking.md) runs: every row is timed, and the
SIMT runtime leaves count-only mode afterwards (a later call computes real values again)."""
import importlib.util
import pathlib

import torch

from kdfuse import ops

from simt_library import load_or_skip

load_or_skip("kdfKD")

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "bench" / "host_overhead.py"


def test_host_overhead_smoke(capsys):
    spec = importlib.util.spec_from_file_location("host_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--calls", "2", "--repeats", "1", "--markdown"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + len(module.cases())  # the header and one row per case
    assert lines[1].endswith("| 1.0x |")  # the native op is the unit
    y_s = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    y_t = torch.tensor([[3.0, 2.0, 1.0]])
    assert torch.isfinite(ops.kd(y_s, y_t, 1.0)).all()  # computed, not count-only garbage
