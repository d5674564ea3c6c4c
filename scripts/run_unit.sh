#!/usr/bin/env bash
# Runs every cmocka test binary under DIR (optionally only those under the given
# subfolders) and fails if any fails.
set -u
dir=$1; shift
subs=("$@")
fail=0; n=0
while IFS= read -r t; do
    if [ ${#subs[@]} -gt 0 ]; then
        keep=0
        for s in "${subs[@]}"; do case "$t" in "$dir/$s/"*) keep=1 ;; esac; done
        [ $keep -eq 1 ] || continue
    fi
    n=$((n + 1))
    if ! out=$("$t" 2>&1); then
        echo "$out"
        echo "FAILED: $t"
        fail=1
    else
        echo "ok   $(echo "$out" | grep -c '^\[       OK \]') tests  $t"
    fi
done < <(find "$dir" -type f -name 'test_*' -perm -u+x | sort)
[ $n -gt 0 ] || { echo "no unit tests found under $dir"; exit 1; }
exit $fail
