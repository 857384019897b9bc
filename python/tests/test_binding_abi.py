"""kdfuse.binding._abi reads the ctypes layout of the C API from the header: a C++ program generated from what it
parsed, compiled against the header, prints every struct's size and every field's offset, which must equal ctypes'
layout; every KDFUSE_API function is declared; the KDF_*_INIT defaults and the enumerators are the header's."""
import ctypes
import pathlib
import shutil
import subprocess

import pytest

from kdfuse.binding import _abi

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_layouts_match_the_compiler(tmp_path):
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    lines = ['#include <kdfuse/kdfuse.h>', '#include <cstddef>', '#include <cstdio>', 'int main() {']
    expected = []
    for name, cls in _abi.STRUCTS.items():
        lines.append(f'    std::printf("%zu\\n", sizeof({name}));')
        expected.append(ctypes.sizeof(cls))
        for field, _ in cls._fields_:
            lines.append(f'    std::printf("%zu\\n", offsetof({name}, {field}));')
            expected.append(getattr(cls, field).offset)
    lines += ['    return 0;', '}']
    source = tmp_path / "abi.cpp"
    source.write_text("\n".join(lines) + "\n")
    subprocess.run([compiler, "-std=c++17", f"-I{ROOT / 'include'}", str(source), "-o", str(tmp_path / "abi")],
                   check=True)
    printed = [int(x) for x in subprocess.run([str(tmp_path / "abi")], check=True, capture_output=True,
                                              text=True).stdout.split()]
    assert printed == expected
    assert len(_abi.STRUCTS) >= 16  # every params struct and kdfFeatureMap_t


def test_functions_constants_and_defaults():
    declared = set(_abi.FUNCTIONS)
    in_header = {line.split("(")[0].split()[-1].lstrip("*") for line in _abi.header_path().read_text().splitlines()
                 if line.startswith("KDFUSE_API")}
    assert declared == in_header and "kdfKDSVD" in declared
    assert _abi.FUNCTIONS["kdfKD"][0] is _abi.STATUS and len(_abi.FUNCTIONS["kdfKD"][1]) == 14
    assert _abi.FUNCTIONS["kdfGetBackendName"] == (ctypes.c_char_p, [])
    assert _abi.CONSTANTS["KDF_STATUS_INTERNAL_ERROR"] == 9 and _abi.CONSTANTS["KDF_KDSVD_MAX_LAYERS"] == 8
    kd = _abi.STRUCTS["kdfKDParams_t"]()
    assert (kd.struct_size, kd.temperature, kd.reduction) == (ctypes.sizeof(kd), 4.0, 0)
    crd = _abi.STRUCTS["kdfCRDParams_t"](rows=3)
    assert (crd.rows, crd.dim, crd.k, crd.update_memory, crd.weight) == (3, 128, 16384, 1, 1.0)
    assert abs(crd.temperature - 0.07) < 1e-7
    svd = _abi.STRUCTS["kdfKDSVDParams_t"]()
    assert (svd.k, svd.weight, svd.student[7].n) == (1, 1.0, 0)
    with pytest.raises(TypeError, match="no field"):
        _abi.STRUCTS["kdfKDParams_t"](temperatur=2.0)
