"""Packaging of the kdfuse Python package with the already-built libraries (pip install ./python).

The libraries are not built here: build them first (cmake, see the repository README), then

    pip install ./python                                   # libraries from ../build
    KDFUSE_BUILD_DIR=/path/to/build pip install ./python   # or from another build directory

The wheel ships, in kdfuse/lib/: the PyTorch operator libraries (libkdfuse_torch*.so, the ops torch.ops.kdfuse.*),
libkdfuse_sim.so.<soversion> (the SIMT build, CPU tensors) with the SIMT runtime it needs
(libkdfuse_simt.so.<soversion>), and libkdfuse.so.<soversion> (the CUDA build, CUDA tensors) when the build directory
has it. At least one of the two C libraries must be there. The CUDA build links cuBLAS by soname (libcublas.so.<major>): it loads in a
process where PyTorch's CUDA build of the same CUDA major version has been imported, or where the CUDA toolkit's
libraries are on the loader's path.
"""
import os
import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = pathlib.Path(__file__).resolve().parent


def _build_dir():
    return pathlib.Path(os.environ.get("KDFUSE_BUILD_DIR") or HERE.parent / "build").resolve()


def _soname_file(link):
    """The name the loader looks for: libX.so -> libX.so.<soversion> (CMake's chain), else libX.so itself."""
    return os.readlink(link) if link.is_symlink() else link.name


def _libraries(build):
    """{name in the package: file} of the libraries found in the build directory. The C libraries keep their soname
    file names (libX.so.<soversion>), which is what the PyTorch operator libraries beside them ask the loader for."""
    found = {}
    sim = build / "simt" / "libkdfuse_sim.so"
    if sim.is_file():
        runtime = build / "simt" / "libkdfuse_simt.so"
        if not runtime.is_file():
            raise SystemExit(f"kdfuse: {sim} found but not the SIMT runtime {runtime}")
        found[_soname_file(sim)] = sim.resolve()
        found[_soname_file(runtime)] = runtime.resolve()
    cuda = build / "libkdfuse.so"
    if cuda.is_file():
        found[_soname_file(cuda)] = cuda.resolve()
    for name in ("libkdfuse_torch.so", "libkdfuse_torch_cpu.so", "libkdfuse_torch_cuda.so"):
        if (build / "torch" / name).is_file():
            found[name] = (build / "torch" / name).resolve()
    if sim.is_file() and "libkdfuse_torch_cpu.so" not in found:
        raise SystemExit(f"kdfuse: {build} has no PyTorch operator libraries (torch/libkdfuse_torch*.so): configure "
                         "kdfuse with KDFUSE_PYTHON set to an interpreter with torch")
    return found


class BuildPyWithLibraries(build_py):
    """build_py, then the libraries copied into <build_lib>/kdfuse/lib/ (the package directory stays untouched)."""

    def run(self):
        super().run()
        build = _build_dir()
        libs = _libraries(build)
        if not libs:
            raise SystemExit(f"kdfuse: no library in {build} (neither simt/libkdfuse_sim.so nor libkdfuse.so): build "
                             "kdfuse first, or set KDFUSE_BUILD_DIR to its build directory")
        target = pathlib.Path(self.build_lib) / "kdfuse" / "lib"
        shutil.rmtree(target, ignore_errors=True)  # no library left over from an earlier build
        target.mkdir(parents=True)
        for name, source in libs.items():
            shutil.copyfile(source, target / name)
            os.chmod(target / name, 0o755)
            self.announce(f"kdfuse: {source} -> kdfuse/lib/{name}", level=2)


class BinaryDistribution(Distribution):
    """Shared libraries inside: a platform wheel, not a pure-Python one."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithLibraries}, distclass=BinaryDistribution)
