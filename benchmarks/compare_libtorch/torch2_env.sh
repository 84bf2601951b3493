#!/usr/bin/env bash
# torch2_env.sh: installs libtorch 2.x from PyPI's torch wheel into a virtual environment, for the second anchor
# of compare_libtorch (target compare_libtorch2), and prints the wheel's torch directory on the last line:
#
#   benchmarks/compare_libtorch/torch2_env.sh [VENV]     (default VENV: ~/.cache/seqattn-torch2/venv)
#   cmake -S . -B build-torch2 -DSEQATTN_BUILD_TESTS=OFF -DSEQATTN_BUILD_EXAMPLES=OFF -DSEQATTN_BUILD_BENCHMARKS=ON \
#         -DSEQATTN_TORCH2_PREFIX="$(benchmarks/compare_libtorch/torch2_env.sh | tail -1)"
#
# PyPI's Linux torch wheel is a CUDA build whose dependencies are GBs of nvidia-* packages; the C++ side needs
# none of them but two: libtorch_cpu.so links libcudart.so.12 and libcupti.so.12 (the profiler), so the wheel is
# installed with --no-deps and only those two small packages (48 MB) beside it, versions pinned to the wheel's.
# `import torch` does not work in this environment (libtorch.so wants cuBLAS, cuFFT, ...); the C++ ABI is read
# from the wheel's TorchConfig.cmake instead of torch._C._GLIBCXX_USE_CXX11_ABI, and this script checks that
# libtorch_cpu.so loads with every library it needs.
set -euo pipefail
TORCH_VERSION=2.5.1              # CPU kernels: MKL 2024.2 (sgemm) and oneDNN 3.5.3, bundled in libtorch_cpu.so
CUDA_RUNTIME=12.4.127            # nvidia-cuda-runtime-cu12 and nvidia-cuda-cupti-cu12, as torch 2.5.1 requires
VENV=${1:-$HOME/.cache/seqattn-torch2/venv}
PYTHON=${PYTHON:-python3}

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV" >&2
fi
if ! "$VENV/bin/pip" show torch 2>/dev/null | grep -qx "Version: $TORCH_VERSION"; then
  "$VENV/bin/pip" install --no-deps "torch==$TORCH_VERSION" "nvidia-cuda-runtime-cu12==$CUDA_RUNTIME" \
    "nvidia-cuda-cupti-cu12==$CUDA_RUNTIME" >&2
fi
PREFIX=$("$VENV/bin/python" -c \
  "import importlib.util as u; print(u.find_spec('torch').submodule_search_locations[0])")
missing=$(ldd "$PREFIX/lib/libtorch_cpu.so" | grep 'not found' || true)
if [[ -n "$missing" ]]; then
  echo "torch2_env.sh: $PREFIX/lib/libtorch_cpu.so does not load, missing:" >&2
  echo "$missing" >&2
  exit 1
fi
abi=$(grep -o '_GLIBCXX_USE_CXX11_ABI=[01]' "$PREFIX/share/cmake/Torch/TorchConfig.cmake" | head -1)
echo "torch $TORCH_VERSION in $VENV: libtorch_cpu.so loads without CUDA devices or libraries beyond libcudart" \
  "and libcupti; $abi" >&2
echo "$PREFIX"
