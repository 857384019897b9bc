"""The SASS audit catches what it promises to catch, on a real nvcc build of tests/sass/broken_kernels.cu:
a stack frame fails the audit; a clean kernel passes with its slow-path call and 128-bit accesses reported.

    python3 tests/sass/audit_broken_kernels.py NVCC"""
import json
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
AUDIT = HERE.parent.parent / "scripts" / "sass_audit.py"


def main(nvcc):
    with tempfile.TemporaryDirectory() as tmp:
        obj, log, report = (str(pathlib.Path(tmp) / name) for name in ("broken.o", "ptxas.log", "audit.json"))
        build = subprocess.run([nvcc, "-c", "-std=c++20", "-gencode", "arch=compute_90,code=sm_90", "-Xptxas=-v",
                                str(HERE / "broken_kernels.cu"), "-o", obj], capture_output=True, text=True)
        if build.returncode != 0:
            sys.exit(f"nvcc failed:\n{build.stderr}")
        pathlib.Path(log).write_text(build.stdout + build.stderr)
        audit = subprocess.run([sys.executable, str(AUDIT), "--ptxas-log", log, "--binary", obj, "--all",
                                "--json", report], capture_output=True, text=True)
        print(audit.stdout, audit.stderr)
        failures = [line for line in audit.stdout.splitlines() if "FAIL" in line]
        records = {r["kernel"]: r for r in json.loads(pathlib.Path(report).read_text())}
    checks = [
        (audit.returncode == 1, "the audit fails"),
        (len(failures) == 1 and "stack_array_kernel" in failures[0] and "local memory" in failures[0],
         "exactly one failure, the stack frame of stack_array_kernel"),
        (records["stack_array_kernel"]["stack"] > 0, "stack_array_kernel has a stack frame"),
        (records["clean_kernel"]["stack"] == 0 and not records["clean_kernel"]["local_access"], "clean_kernel is clean"),
        ("sm20_div_s64" in records["clean_kernel"]["slow_paths"], "the 64-bit division is a slow-path call"),
        (records["clean_kernel"]["widest_load"] == 16 and records["clean_kernel"]["widest_store"] == 16,
         "float4 accesses are 128-bit LDG/STG"),
    ]
    bad = [what for ok, what in checks if not ok]
    for what in bad:
        print(f"FAILED: {what}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
