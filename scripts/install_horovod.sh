#!/usr/bin/env bash
# Build Horovod 0.28.1 from source against the torch already in the venv (PyTorch + MPI + Gloo).
#
# Why the toolchain file: Horovod's CMake forces C++14, but torch >= 2.1 headers need C++17, and
# CXXFLAGS cannot override the standard flag CMake adds. A CMAKE_PROJECT_INCLUDE file remaps
# CMake's "C++14" compile option to -std=c++17 without patching Horovod's sources.
#
# Usage: PYTHON=/path/to/python scripts/install_horovod.sh   (default: .venv/bin/python)
#        HOROVOD_SOURCE=/path/horovod-0.28.1.tar.gz ...        (offline nodes: a downloaded sdist)
# Idempotent: exits at once when horovod.torch imports and the build lists PyTorch, MPI and Gloo.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
HOROVOD_VERSION="${HOROVOD_VERSION:-0.28.1}"
BUILD_DIR="${HOROVOD_BUILD_DIR:-$REPO/.horovod-build}"
HOROVOD_SOURCE="${HOROVOD_SOURCE:-horovod==$HOROVOD_VERSION}"

if [[ ! -x "$PYTHON" ]]; then
    echo "install_horovod: no python at $PYTHON (set PYTHON=...)" >&2
    exit 2
fi
BIN_DIR="$(dirname "$PYTHON")"

check_build() {
    "$PYTHON" -c "import horovod.torch" >/dev/null 2>&1 || return 1
    local out
    out="$(PATH="$BIN_DIR:$PATH" "$BIN_DIR/horovodrun" --check-build 2>/dev/null)" || return 1
    grep -q "\[X\] PyTorch" <<<"$out" && grep -q "\[X\] MPI" <<<"$out" && grep -q "\[X\] Gloo" <<<"$out"
}

if check_build; then
    echo "install_horovod: Horovod with PyTorch, MPI and Gloo already installed"
    exit 0
fi

for tool in cmake g++ mpicxx; do
    if ! command -v "$tool" >/dev/null; then
        echo "install_horovod: '$tool' not found (Debian: apt-get install cmake g++ libopenmpi-dev)" >&2
        exit 2
    fi
done

TORCH_BEFORE="$("$PYTHON" -c 'import torch; print(torch.__version__)')" || {
    echo "install_horovod: torch is not importable by $PYTHON; install torch first" >&2
    exit 2
}

# Horovod's build and runtime dependencies (cffi is a setup_requires), only those missing: offline
# nodes may have them all already. --no-deps so pip never touches torch.
missing=()
for pair in cffi:cffi pycparser:pycparser cloudpickle:cloudpickle psutil:psutil pyyaml:yaml packaging:packaging; do
    "$PYTHON" -c "import ${pair#*:}" >/dev/null 2>&1 || missing+=("${pair%%:*}")
done
if ((${#missing[@]})); then
    "$PYTHON" -m pip install --quiet --no-deps "${missing[@]}"
fi

mkdir -p "$BUILD_DIR"
cat >"$BUILD_DIR/cxx17.cmake" <<'CMAKE'
# Horovod asks for C++14; torch headers need C++17. Remap the compile option CMake uses for C++14.
set(CMAKE_CXX14_STANDARD_COMPILE_OPTION "-std=c++17")
set(CMAKE_CXX14_EXTENSION_COMPILE_OPTION "-std=gnu++17")
CMAKE
cat >"$BUILD_DIR/toolchain.cmake" <<CMAKE
set(CMAKE_PROJECT_INCLUDE "$BUILD_DIR/cxx17.cmake")
CMAKE

echo "install_horovod: building $HOROVOD_SOURCE against torch $TORCH_BEFORE (a few minutes)"
CMAKE_TOOLCHAIN_FILE="$BUILD_DIR/toolchain.cmake" \
MAKEFLAGS="-j$(nproc)" \
HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 \
HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 \
PATH="$BIN_DIR:$PATH" \
    "$PYTHON" -m pip install --no-deps --no-build-isolation --no-cache-dir "$HOROVOD_SOURCE"

TORCH_AFTER="$("$PYTHON" -c 'import torch; print(torch.__version__)')"
if [[ "$TORCH_AFTER" != "$TORCH_BEFORE" ]]; then
    echo "install_horovod: torch changed from $TORCH_BEFORE to $TORCH_AFTER; reinstall torch $TORCH_BEFORE" >&2
    exit 1
fi

if ! check_build; then
    echo "install_horovod: build finished but horovodrun --check-build lacks PyTorch, MPI or Gloo:" >&2
    PATH="$BIN_DIR:$PATH" "$BIN_DIR/horovodrun" --check-build >&2 || true
    exit 1
fi
PATH="$BIN_DIR:$PATH" "$BIN_DIR/horovodrun" --check-build
echo "install_horovod: done"
