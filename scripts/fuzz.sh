#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for SECONDS each (clang + libclang-rt-14-dev).
# New corpus entries go to fuzz/out/<name>/ (review and copy good ones into fuzz/corpus/);
# crashes are written to fuzz/crashes/<name>/, which `make test` replays from then on.
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")/.."
make --no-print-directory SANITIZE=fuzzer build-fuzz/libinferd.a >/dev/null
mkdir -p build-fuzz/fuzzers
libs="-ldnnl $(pkg-config --libs libmicrohttpd jansson libprotobuf-c libutf8proc) -lgomp -lpthread -lm"
for src in fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    name=${name#fuzz_}
    bin=build-fuzz/fuzzers/$name
    clang -std=c11 -g -O1 -D_GNU_SOURCE -fopenmp=libgomp -Isrc -Ibuild-fuzz/gen \
        -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer \
        "$src" build-fuzz/libinferd.a $libs -o "$bin"
    mkdir -p "fuzz/out/$name" "fuzz/crashes/$name" "fuzz/corpus/$name"
    echo "== $name: ${seconds}s"
    start=$(date +%s.%N)
    cpu0=$(awk '{print $14+$15+$16+$17}' /proc/self/stat)
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
        -artifact_prefix="fuzz/crashes/$name/" "fuzz/out/$name" "fuzz/corpus/$name" \
        2>&1 | grep -E "^#[0-9]+ +(DONE|pulse)|ERROR|SUMMARY|Done" | tail -3 || true
done
