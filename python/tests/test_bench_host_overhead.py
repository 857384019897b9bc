"""bench/host_overhead.py (the host-overhead table of docs/benchmarking.md) runs: every loss's op, module and seed
module are timed, and the
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
    out = capsys.readouterr().out
    assert out.startswith("One native op (F.kl_div on prepared inputs, forward + backward): ")
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    rows = module.rows()
    assert len(lines) == 1 + len(rows)  # the header and one row per loss, in order
    assert [line.split(" | ")[0][2:] for line in lines[1:]] == [row.loss for row in rows]
    for line, row in zip(lines[1:], rows):
        cells = line.strip("| ").split(" | ")
        assert all(float(cells[i].rstrip("x")) > 0 for i in (1, 2, 4, 5, 8)), line
        if row.layers:  # the module's own layers timed alone, and the module less them
            assert float(cells[6]) > 0 and cells[7].endswith("x"), line
            float(cells[7].rstrip("x"))
        else:
            assert cells[6:8] == ["-", "-"], line
    y_s = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    y_t = torch.tensor([[3.0, 2.0, 1.0]])
    assert torch.isfinite(ops.kd(y_s, y_t, 1.0)).all()  # computed, not count-only garbage
