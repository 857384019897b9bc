"""The pip package (python/pyproject.toml, python/setup.py): a wheel built from a copy of python/ with the SIMT
library of this test run (KDFUSE_BUILD_DIR = its build directory), installed with --target into a temporary
directory, then imported from there by a fresh interpreter without KDFUSE_LIB or the repository on its path: it
must load the libraries it ships and run a loss with its gradient. Skipped when the SIMT library is not built."""
import os
import pathlib
import shutil
import subprocess
import sys

from simt_library import load_or_skip

LIB = load_or_skip("kdfKD")

PYTHON_DIR = pathlib.Path(__file__).resolve().parents[1]

SNIPPET = """
import pathlib, torch, kdfuse, kdfuse.nn
assert pathlib.Path(kdfuse.__file__).parent == pathlib.Path(TARGET) / "kdfuse", kdfuse.__file__
assert kdfuse.library_path("simt").parent == pathlib.Path(TARGET) / "kdfuse" / "lib", kdfuse.library_path("simt")
import kdfuse._extension
assert kdfuse._extension.library_dir() == pathlib.Path(TARGET) / "kdfuse" / "lib", kdfuse._extension.library_dir()
y_s = torch.randn(4, 10, requires_grad=True)
y_t = torch.randn(4, 10)
loss = kdfuse.nn.DistillKL(4)(y_s, y_t)
loss.backward()
assert torch.isfinite(y_s.grad).all() and y_s.grad.abs().sum() > 0
print("kdfuse libraries:", sorted({l.split()[-1] for l in open("/proc/self/maps") if "libkdfuse" in l}))
"""


def test_wheel_ships_the_libraries(tmp_path):
    lib = pathlib.Path(LIB.kdfuse_path).resolve()
    build_dir = lib.parent.parent  # <build>/simt/libkdfuse_sim.so
    src = tmp_path / "src"
    shutil.copytree(PYTHON_DIR, src, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if k not in ("KDFUSE_LIB", "KDFUSE_TORCH_LIB_DIR", "PYTHONPATH")}
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "--target", str(target), str(src)], check=True, env={**env, "KDFUSE_BUILD_DIR": str(build_dir)})
    shipped = sorted(p.name for p in (target / "kdfuse" / "lib").iterdir())
    assert any(n.startswith("libkdfuse_sim.so.") for n in shipped), shipped
    assert any(n.startswith("libkdfuse_simt.so.") for n in shipped), shipped
    assert {"libkdfuse_torch.so", "libkdfuse_torch_cpu.so"} <= set(shipped), shipped
    out = subprocess.run([sys.executable, "-c", f"TARGET = {str(target)!r}\n" + SNIPPET], check=True, cwd=tmp_path,
                         env={**env, "PYTHONPATH": str(target)}, capture_output=True, text=True).stdout
    loaded = out.strip().split("\n")[-1]
    assert str(target) in loaded and str(build_dir) not in loaded, loaded  # the shipped copies, not the build's
