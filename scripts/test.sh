#!/usr/bin/env bash
# The README's test command: installs what is missing (Debian packages, the project's .venv with
# PyTorch for the reference), builds both libraries (the SIMT library with multiply-add contraction forced on,
# as nvcc compiles for a GPU), runs every test (C++, the Python reference's and the binding's, golden data
# generated from the reference) under the forward, reverse and a random SIMT schedule, runs the SIMT tests
# again under AddressSanitizer + UBSan (-O0: no contraction), compiles the CUDA library for sm_80/sm_90 (failing on any register spill), checks that an
# installed package can be consumed with find_package, and builds the Python wheel (CPU libraries), installs it
# into a fresh virtual environment outside the tree and runs the module tests against it.
#
# The sanitizer build also fuzzes every entry point (tests/fuzz, seeded with the random schedule's seed) and
# reports gcov line coverage of kernels/ and host/, failing below the goal.
#
# Environment: KDFUSE_JOBS (parallel jobs, default: nproc), KDFUSE_RANDOM_SEED (seed of the random
# schedule and the fuzzer, default: drawn and printed), KDFUSE_FUZZ_SECONDS (fuzzing in the sanitizer build,
# default 90), KDFUSE_SKIP_ASAN=1 to skip the sanitizer build, KDFUSE_ASAN_ALL=1 to run the sanitizer build's
# on-demand tests too (asan_on_demand below).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/deps.sh

jobs=${KDFUSE_JOBS:-$(nproc)}
seed=${KDFUSE_RANDOM_SEED:-$(( (RANDOM << 15) | RANDOM ))}
fuzz_seconds=${KDFUSE_FUZZ_SECONDS:-90}
# The slowest tests under AddressSanitizer (minutes each at -O0; their code paths are covered by smaller cases):
# in the sanitizer build only on demand (KDFUSE_ASAN_ALL=1). They run in every schedule of the main build.
asan_on_demand='^(nst\.NST\.GoldenCasesFromTheReference|vid\.VID\.GridStrideOverMorePlanesThanTheGrid|ofd\.OFD\.ManyChannelsLoopOverTheMarginGrid)$'
asan_exclude=(-E "$asan_on_demand")
if [ "${KDFUSE_ASAN_ALL:-0}" = "1" ]; then asan_exclude=(); fi
coverage_goal=95

step "dependencies"
kdfuse_install_debian_packages
py=$(kdfuse_setup_venv | tail -n 1)
nvcc=$(kdfuse_find_nvcc)
cuda_args=(-DKDFUSE_BUILD_CUDA=OFF)
if [ -n "$nvcc" ]; then
    cuda_args=(-DKDFUSE_BUILD_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc")
    echo "CUDA compiler: $nvcc"
elif [ "${CI:-}" = "true" ]; then
    echo "kdfuse: nvcc not found; CI must compile the CUDA library" >&2
    exit 1
else
    echo "kdfuse: nvcc not found: building the SIMT library only (CI requires the CUDA build)"
fi

contract=$(kdfuse_contract_option)
if [ "$contract" != ON ] && [ "${CI:-}" = "true" ]; then
    echo "kdfuse: CI must build the SIMT library with multiply-add contraction (a CPU with FMA)" >&2
    exit 1
fi

step "configure and build (SIMT library with multiply-add contraction, CUDA library for sm_80;sm_90, tests)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKDFUSE_SIMT_CONTRACT="$contract" -DKDFUSE_PYTHON="$py" "${cuda_args[@]}" >/dev/null
# CUDA objects always recompile so the log holds every kernel's ptxas report (spills fail the build).
find build \( -path '*/kdfuse.dir/*' -o -path '*/kdfuse_gpu_tests.dir/*' \) -name '*.cu.o' -delete
cmake --build build -j "$jobs" 2>&1 | tee build/build.log | grep -vE "^ptxas info|bytes stack frame|^\[ *[0-9]+%\]" || true
test "${PIPESTATUS[0]}" -eq 0

if [ -n "$nvcc" ]; then
    step "SASS audit of the CUDA build (no local memory; the generated resource tables match the build)"
    "$py" scripts/sass_audit.py --ptxas-log build/build.log --binary build/libkdfuse.so --check \
        --json build/sass_audit.json
fi

for schedule in forward reverse "random:$seed"; do
    step "tests, SIMT schedule $schedule"
    (cd build && KDFUSE_SIMT_SCHEDULE=$schedule ctest -j "$jobs" --output-on-failure)
done

step "accuracy against float64 on real-network features, kdfuse vs the seed in fp32 (once: schedule-independent)"
"$py" -m pytest -q -p no:cacheprovider python/tests/test_accuracy.py

if [ "${KDFUSE_SKIP_ASAN:-0}" != "1" ]; then
    step "SIMT tests under AddressSanitizer + UBSan (with gcov coverage; the fuzz harness for ${fuzz_seconds} s)"
    find build-asan -name '*.gcda' -delete 2>/dev/null || true
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKDFUSE_SANITIZE=ON -DKDFUSE_COVERAGE=ON -DKDFUSE_BUILD_CUDA=OFF \
        -DKDFUSE_FUZZ_SECONDS="$fuzz_seconds" -DKDFUSE_PYTHON="$py" >/dev/null
    cmake --build build-asan -j "$jobs" 2>&1 | grep -E "error|warning" || true
    test "${PIPESTATUS[0]}" -eq 0
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 KDFUSE_FUZZ_SEED="$seed" \
        KDFUSE_SIMT_SCHEDULE="random:$seed" ctest -j "$jobs" --output-on-failure "${asan_exclude[@]}")

    step "line coverage of kernels/ and host/ over the SIMT tests (gcov; goal >= ${coverage_goal}%)"
    gcovr -r . --object-directory build-asan --filter 'kernels/' --filter 'host/' --print-summary \
        --fail-under-line "$coverage_goal" | tee build-asan/coverage.txt
fi

step "install and consume the package with find_package"
rm -rf build/install build/consumer
cmake --install build --prefix build/install >/dev/null
cmake -S tests/install_consumer -B build/consumer -DCMAKE_PREFIX_PATH="$root/build/install" >/dev/null
cmake --build build/consumer -j "$jobs" >/dev/null
build/consumer/consumer_sim
if [ -x build/consumer/consumer_cuda ]; then
    build/consumer/consumer_cuda
fi

step "the Python wheel (CPU libraries), installed into a fresh virtual environment outside the tree, module tests"
# scikit-build-core builds the CMake project (SIMT and PyTorch operator libraries) into the wheel; auditwheel says
# what the libraries need from the system. The fresh environment sees the project's torch and test tools through
# a .pth file (no second PyTorch download) and runs the module tests against the installed package.
rm -rf build/wheel && mkdir -p build/wheel
"$py" -m pip wheel --no-build-isolation --no-deps -q -w build/wheel ./python \
    -C cmake.define.KDFUSE_BUILD_CUDA=OFF -C build-dir="$root/build/wheel-build"
wheel=$(ls build/wheel/kdfuse-*.whl)
"$py" -m auditwheel show "$wheel"
fresh=$(mktemp -d)
python3 -m venv "$fresh/venv"
"$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
    "$("$fresh/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/kdfuse_test_deps.pth"
"$fresh/venv/bin/python" -m pip install -q --no-deps "$wheel"
(cd "$fresh" && env -u KDFUSE_LIB -u KDFUSE_TORCH_LIB_DIR -u PYTHONPATH KDFUSE_TEST_INSTALLED=1 \
    "$fresh/venv/bin/python" -m pytest -q -p no:cacheprovider "$root/python/tests/test_extension.py" \
    "$root/python/tests/test_ops.py" "$root/python/tests/test_nn.py" "$root/python/tests/test_functional.py")
# the gradient check needs the reference from the source tree: refused with the reason, not a traceback
if (cd "$fresh" && "$fresh/venv/bin/python" -m kdfuse.gradcheck > "$fresh/gradcheck.out" 2>&1); then
    echo "kdfuse: the installed gradient check ran without kdfuse_ref" >&2
    exit 1
fi
grep -q "not part of the installed package" "$fresh/gradcheck.out"
rm -rf "$fresh"

step "all checks passed (random schedule seed $seed)"
