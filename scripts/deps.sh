#!/usr/bin/env bash
# Installs the Debian packages inferd needs to build, test and run.
# As root it runs apt-get for whatever is missing; otherwise it prints the command.
# Usage: scripts/deps.sh [core|build|test|bench|train|all]   (default: test)
set -euo pipefail

# libtorch-dev (with g++) builds the TorchScript backend's plugin; it is large (~1 GB with its
# dependencies) and optional: without it inferd builds, and a model.pt is refused with the reason.
# `core` is the build without it (the container image: `make TORCH=0`).
core_pkgs=(gcc make pkg-config libmicrohttpd-dev libjansson-dev libdnnl-dev
           libprotobuf-c-dev protobuf-c-compiler libonnx-dev libutf8proc-dev)
build_pkgs=("${core_pkgs[@]}" g++ libtorch-dev)
test_pkgs=(libcmocka-dev python3 python3-pytest python3-numpy python3-requests python3-onnx
           clang libclang-rt-14-dev yamllint)
bench_pkgs=(wrk python3-torch python3-onnx python3-locust python3-psutil python3-tornado libopenblas0-pthread
            python3-flask gunicorn nodejs npm fortunes-zh)
# bench-text takes its Chinese texts from fortunes-zh.
# train: tools/train_examples.py, which regenerates models/ (docs/examples.md). fortunes-zh is
# the Chinese model's text; libopenblas0-pthread makes torch's Linear ~10x faster than the
# reference libblas3 (installing it also switches the system's libblas.so.3 alternative).
train_pkgs=(python3-torch python3-onnx python3-numpy fortunes-zh libopenblas0-pthread)

what=${1:-test}
case "$what" in
    core) want=("${core_pkgs[@]}") ;;
    build) want=("${build_pkgs[@]}") ;;
    test) want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
    bench) want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
    train) want=("${train_pkgs[@]}") ;;
    all) want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}" "${train_pkgs[@]}") ;;
    *) echo "usage: $0 [core|build|test|bench|train|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
    # nodejs may come from another repository than Debian's; any installed version will do.
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "inferd needs these Debian packages: ${missing[*]}" >&2
    echo "run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
