#!/usr/bin/env bash
# Runs the libFuzzer targets in fuzz/ (clang + libclang-rt-14-dev), one at a time, each for
# SECONDS of wall time:
#
#   scripts/fuzz.sh SECONDS [TARGET...]      e.g. scripts/fuzz.sh 120 onnx infer_request
#
# Without TARGETs every fuzz/fuzz_*.c runs. Each target starts from its seed corpus
# fuzz/corpus/<name>/ plus what earlier runs found in fuzz/out/<name>/ (not committed: review it,
# minimise with -merge=1, and copy good small entries into fuzz/corpus/). A JSON dictionary
# (fuzz/dict/<name>.dict) is used when there is one. Crashes, leaks and timeouts are written to
# fuzz/crashes/<name>/, which `make test` replays with gcc from then on; the script exits 1 if
# any target found one.
#
# One line per target goes to stdout and is appended to fuzz/out/summary.tsv: the CPU seconds
# the fuzzer used (user + sys), executions, coverage (cov: edges, ft: features) and corpus size,
# the figures bench/RELIABILITY.md records.
set -euo pipefail
seconds=${1:-60}
shift || true
cd "$(dirname "$0")/.."
make --no-print-directory -j"$(nproc)" SANITIZE=fuzzer build-fuzz/libinferd.a >/dev/null
mkdir -p build-fuzz/fuzzers fuzz/out
libs="-ldnnl $(pkg-config --libs libmicrohttpd jansson libprotobuf-c libutf8proc) -lgomp -lpthread -lm"
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for src in fuzz/fuzz_*.c; do
        name=$(basename "$src" .c)
        targets+=("${name#fuzz_}")
    done
fi
found=0
for name in "${targets[@]}"; do
    src=fuzz/fuzz_$name.c
    [ -f "$src" ] || { echo "no such target: $src" >&2; exit 2; }
    bin=build-fuzz/fuzzers/$name
    clang -std=c11 -g -O1 -D_GNU_SOURCE -fopenmp=libgomp -Isrc -Ibuild-fuzz/gen \
        -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer \
        "$src" build-fuzz/libinferd.a $libs -o "$bin"
    mkdir -p "fuzz/out/$name" "fuzz/crashes/$name" "fuzz/corpus/$name"
    extra=()
    [ -f "fuzz/dict/$name.dict" ] && extra+=(-dict="fuzz/dict/$name.dict")
    # ONNX seeds are kilobytes; longer mutants mostly rewrite weights and only run slower.
    [ "$name" = onnx ] && extra+=(-max_len=65536)
    before=$(find "fuzz/crashes/$name" -type f | wc -l)
    log=fuzz/out/$name.log
    echo "== $name: ${seconds}s"
    # The engine is single-threaded here (see the Makefile's fuzzer build); OMP_NUM_THREADS
    # keeps dnnl's own pool to one thread too.
    # scripts/lsan.supp: the known leaks of libraries we cannot fix (oneDNN's per-thread
    # blocks, seen by targets that run a server's worker threads: api).
    OMP_NUM_THREADS=1 LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
        /usr/bin/time -f "cpu %U %S" -o "fuzz/out/$name.time" \
        "$bin" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
        "${extra[@]}" -artifact_prefix="fuzz/crashes/$name/" "fuzz/out/$name" "fuzz/corpus/$name" \
        >"$log" 2>&1 || true
    cpu=$(awk '/^cpu/ {printf "%.1f", $2 + $3}' "fuzz/out/$name.time")
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log")
    last=$(grep -E "^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)" "$log" | tail -1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
    after=$(find "fuzz/crashes/$name" -type f | wc -l)
    new=$((after - before))
    grep -E "ERROR|SUMMARY" "$log" | head -3 || true
    line=$(printf "%s\t%s\tcpu_s=%s\texecs=%s\tcov=%s\tft=%s\tcorpus=%s\tnew_crashes=%s" \
        "$(date -u +%FT%TZ)" "$name" "$cpu" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$new")
    echo "$line"
    echo "$line" >>fuzz/out/summary.tsv
    [ "$new" -eq 0 ] || found=1
done
exit $found
