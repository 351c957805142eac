#!/usr/bin/env bash
# Make a CUDA 13.0 toolkit folder from NVIDIA's wheels on PyPI, for `just build-cuda PREFIX`
# on a machine that has no CUDA toolkit (a cluster node with only the driver, or a laptop).
#
#   scripts/setup-cuda-prefix.sh PREFIX            # nvcc, runtime, cuBLAS, cuRAND, NVRTC
#   scripts/setup-cuda-prefix.sh PREFIX --no-driver
#
# --no-driver additionally writes a link-time stand-in for the driver library (libcuda.so.1) under
# PREFIX/lib/stubs, so that the build links on a machine without an NVIDIA driver (a login node,
# CI). The binary built that way runs only where the real driver is installed: the stand-in is
# never on the library path at run time.
#
# Needs python3 with pip (downloads about 650 MB once) and, with --no-driver, gcc.
# Versions are pinned together: nvcc's own wheel metadata would pull newer, mismatched parts.
set -euo pipefail

usage() { echo "usage: $0 PREFIX [--no-driver]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
prefix=$1
stub_driver=no
[[ "${2:-}" == "--no-driver" ]] && stub_driver=yes
[[ $# -le 2 ]] || usage

wheels=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
    nvidia-cublas==13.0.2.14
    nvidia-curand==10.4.0.35
    nvidia-cuda-nvrtc==13.0.88
)

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "downloading ${#wheels[@]} CUDA wheels ..." >&2
python3 -m pip download --quiet --no-deps --dest "$scratch/wheels" "${wheels[@]}"

echo "unpacking into $prefix ..." >&2
for wheel in "$scratch"/wheels/*.whl; do
    python3 -m zipfile -e "$wheel" "$scratch/unpacked"
done
mkdir -p "$prefix"
cp -a "$scratch/unpacked/nvidia/cu13/." "$prefix/"
# Zip archives do not keep the executable bit.
chmod +x "$prefix"/bin/* "$prefix"/nvvm/bin/*
# Build scripts look in lib64 and link against unversioned names.
ln -sfn lib "$prefix/lib64"
(
    cd "$prefix/lib"
    for versioned in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
        [[ -e "$versioned" ]] && ln -sf "$versioned" "${versioned%%.so.*}.so"
    done
)

if [[ "$stub_driver" == yes ]]; then
    # Every cu* entry point the driver header declares, each a function that fails when called.
    echo "writing the link-time driver stand-in ..." >&2
    mkdir -p "$prefix/lib/stubs"
    gcc -E -P -I"$prefix/include" "$prefix/include/cuda.h" \
        | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' \
        | tr -d '( \t' | sort -u \
        | awk '{ printf "int %s(void) { return 999; /* CUDA_ERROR_UNKNOWN */ }\n", $1 }' \
        > "$scratch/driver.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$prefix/lib/stubs/libcuda.so" "$scratch/driver.c"
fi

"$prefix/bin/nvcc" --version | tail -n 2
cat >&2 <<DONE
CUDA prefix ready: $prefix
build genolens for the GPU with:  just build-cuda $prefix
DONE
