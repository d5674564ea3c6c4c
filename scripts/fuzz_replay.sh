#!/usr/bin/env bash
# Replays every fuzz corpus file and crash reproducer through the gcc-built targets.
set -u
dir=$1
fail=0
for t in "$dir"/fuzz_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    name=${name#fuzz_}
    corp=(fuzz/corpus/$name fuzz/crashes/$name)
    if ! "$t" "${corp[@]}"; then
        echo "FAILED: $t"
        fail=1
    fi
done
exit $fail
