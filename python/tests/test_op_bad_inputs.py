"""Every op called directly (torch.ops.kdfuse.*) with malformed tensors in each tensor position: empty, 0-d, 1-d,
3-d and 5-d, integer, float64 and float16 (where the op takes float32 only), NaN, expanded, zero-sized planes, a
huge expanded view, channels_last, meta beside CPU. Each call either runs or raises ValueError / TypeError /
NotImplementedError / IndexError with a message; never a crash or a generic RuntimeError."""
import itertools

import pytest
import torch

import kdfuse.ops  # noqa: F401 - loads the operator libraries

from simt_library import load_or_skip

load_or_skip("kdfKD")

ops = torch.ops.kdfuse
GOOD = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
ALLOWED = (ValueError, TypeError, NotImplementedError, IndexError)


def malformed():
    g = torch.Generator().manual_seed(1)
    return {
        "empty": torch.empty(0, 3, 4, 4), "0-d": torch.tensor(1.0), "1-d": torch.randn(5, generator=g),
        "3-d": torch.randn(2, 3, 4, generator=g), "5-d": torch.randn(2, 3, 4, 4, 1, generator=g),
        "int32": torch.ones(2, 3, 4, 4, dtype=torch.int32), "float64": torch.randn(2, 3, 4, 4, dtype=torch.float64),
        "float16": torch.randn(2, 3, 4, 4, generator=g).half(), "nan": torch.full((2, 3, 4, 4), float("nan")),
        "expanded": torch.randn(1, 3, 4, 4, generator=g).expand(2, 3, 4, 4), "zero-plane": torch.empty(2, 3, 0, 4),
        "huge-view": torch.randn(1).expand(2, 100000, 1, 1),
        "channels_last": GOOD.contiguous(memory_format=torch.channels_last),
        "meta": torch.empty(2, 3, 4, 4, device="meta"),
    }


def rows(x):
    return x.flatten(1) if x.dim() > 1 else x


CALLS = {
    "fitnet": lambda a, b: ops.fitnet(a, b, True), "at": lambda a, b: ops.at(a, b, 2.0, True),
    "ft": lambda a, b: ops.ft(a, b, 2.0, 1.0, True), "ab": lambda a, b: ops.ab(a, b, 1.0, True, True),
    "ofd": lambda a, b: ops.ofd(a, b, None, "seed", True), "ofd-original": lambda a, b: ops.ofd(a, b, None, "original", True),
    "vid": lambda a, b: ops.vid(a, b, torch.zeros(3), 1e-5, True, True), "sp": lambda a, b: ops.sp(a, b, True),
    "cc": lambda a, b: ops.cc(a, b, "seed", True, False), "cc-repdistiller": lambda a, b: ops.cc(a, b, "repdistiller", True, True),
    "pkt": lambda a, b: ops.pkt(a, b, True), "rkd": lambda a, b: ops.rkd(a, b, 25.0, 50.0, True),
    "nst": lambda a, b: ops.nst(a, b, True, True), "fsp": lambda a, b: ops.fsp(a, a, b, b, True, True),
    "kd": lambda a, b: ops.kd(rows(a), rows(b), None, 4.0, "batchmean", True, True),
    "kdsvd": lambda a, b: ops.kdsvd([a, a], [b, b], 1, 1e-5),
    "kdsvd_sum": lambda a, b: ops.kdsvd_sum([a, a], [b, b], 1, 1e-5, [True, True]),
    "kdsvd_backward": lambda a, b: ops.kdsvd_backward([a, a], [b, b], 1, 1e-5, torch.ones(1), [True, True]),
    "crd": lambda a, b: ops.crd(rows(a), rows(b), torch.randn(10, 48), torch.randn(10, 48), torch.tensor([0, 1]), None,
                                torch.tensor([-1.0, -1.0]), torch.tensor([3, 0]), 4, 0.07, 0.5, "once", 0.99, True,
                                True, True, True),
}


@pytest.mark.parametrize("op", sorted(CALLS))
def test_malformed_tensors_are_refused_with_a_clear_error(op):
    for (name, bad), position in itertools.product(malformed().items(), (0, 1)):
        args = (bad, GOOD) if position == 0 else (GOOD, bad)
        try:
            CALLS[op](*args)
        except ALLOWED as e:
            assert str(e), (op, name, position)
        except Exception as e:  # noqa: BLE001 - the failure is the point
            pytest.fail(f"{op} with {name} in position {position}: {type(e).__name__}: {e}")
