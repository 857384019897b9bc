#!/usr/bin/env bash
# Installs what the build needs and is missing: Debian packages through apt-get. Sourced by the
# README's commands; does nothing when everything is present.
set -euo pipefail

KDFUSE_DEBIAN_PACKAGES=(cmake g++ make python3 binutils libboost-context-dev libgtest-dev libgmock-dev libbenchmark-dev gcovr)

# A heading for the next step of a script's log, with the time it starts.
step() { printf '\n==== %s (%s)\n' "$*" "$(date +%T)"; }

kdfuse_install_debian_packages() {
    local missing=()
    for pkg in "${KDFUSE_DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    echo "kdfuse: installing Debian packages: ${missing[*]}"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "kdfuse: need root (or sudo) to install ${missing[*]}" >&2; return 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ON when the SIMT library can be built with multiply-add contraction forced on (KDFUSE_SIMT_CONTRACT, as nvcc
# compiles for a GPU): any CPU but an x86 one without FMA instructions. Both README commands build it so.
kdfuse_contract_option() {
    if [ "$(uname -m)" != x86_64 ] || grep -qw fma /proc/cpuinfo; then
        echo ON
    else
        echo "kdfuse: this CPU has no FMA instructions: the SIMT library is built without contraction" >&2
        echo OFF
    fi
}

# nvcc from PATH, else the toolkit's default location. Prints nothing if there is none.
kdfuse_find_nvcc() {
    if command -v nvcc >/dev/null; then
        command -v nvcc
    elif [ -x /usr/local/cuda/bin/nvcc ]; then
        echo /usr/local/cuda/bin/nvcc
    fi
}

# The project-local virtual environment (.venv) with PyTorch, the test tools, matplotlib (the benchmark
# chart), scikit-build-core and auditwheel (the package's wheel), cuobjdump and nvdisasm (the SASS audit; the
# toolkit has neither); created or completed when something is missing.
# Prints the interpreter's path on the last line.
kdfuse_setup_venv() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    local venv="$root/.venv"
    local check="import torch, numpy, pytest, scipy, matplotlib, scikit_build_core, auditwheel"
    if ! "$venv/bin/python" -c "$check" >/dev/null 2>&1 ||
        ! compgen -G "$venv/lib/python3*/site-packages/nvidia/cu*/bin/nvdisasm" >/dev/null; then
        echo "kdfuse: setting up $venv (PyTorch from PyPI)" >&2
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            KDFUSE_DEBIAN_PACKAGES+=(python3-venv)
            kdfuse_install_debian_packages >&2
            python3 -m venv --clear "$venv"
        fi
        "$venv/bin/python" -m pip install -q -r "$root/python_ref/requirements.txt" >&2
    fi
    echo "$venv/bin/python"
}
