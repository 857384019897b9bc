#!/usr/bin/env bash
# On-demand fuzzing of the C API (the long mode of CI's fuzz.api test): builds the SIMT library and the harness
# under AddressSanitizer + UBSan in build-fuzz/ and fuzzes every entry point for SECONDS (default 1800).
#
#   bash scripts/fuzz.sh [SECONDS] [SEED]
#
# A failure prints its case number; `build-fuzz/tests/fuzz/kdfuse_fuzz --seed SEED --case I` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
seconds=${1:-1800}
seed=${2:-$(( (RANDOM << 15) | RANDOM ))}
kdfuse_install_debian_packages
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DKDFUSE_SANITIZE=ON -DKDFUSE_BUILD_CUDA=OFF -DKDFUSE_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j "${KDFUSE_JOBS:-$(nproc)}" --target kdfuse_fuzz 2>&1 | grep -E "error|warning" || true
test "${PIPESTATUS[0]}" -eq 0
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-fuzz/tests/fuzz/kdfuse_fuzz --seconds "$seconds" --seed "$seed"
