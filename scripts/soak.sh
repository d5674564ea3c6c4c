#!/usr/bin/env bash
# Soak test (not in CI): MINUTES of mixed valid and invalid traffic at ~70% of capacity against
# one `inferd serve`, one line per minute:
#
#   scripts/soak.sh [MINUTES]            (default 10; `make soak MINUTES=N`)
#
# Valid traffic: `inferd bench --rate` at 60% of the capacity measured first (closed loop),
# JSON requests of 32 tokens to a text classifier: the peers' BERT-small if
# bench/.peers/models/small.onnx exists (see bench/bench_overload.py), else the tiny engine
# fixture peer_bert_op14 (then the load generators' own CPU is a large part). Invalid traffic: four
# more open loops at 2.5% of capacity each, every one sending one bad body over and over
# (malformed JSON, a wrong datatype, a shape/data mismatch, binary sizes beyond the body), so
# ~70% in all. Per minute: valid requests and their errors (must be none), p50/p99 of the
# valid ones, the statuses of the invalid ones (must all be 4xx), the server's RSS and threads.
# At the end: RSS growth from the first to the last minute and p99 drift (last / first), and RSS
# growth after warm-up (minute 2 to the last, and the largest reading from minute 2 on).
# Exits 1 if any valid request failed, an invalid one got anything but a 4xx, a new version
# was not switched to, or the server died. Output also goes to bench/out/soak-<date>.txt.
#
# Version swaps: the server polls the repository every second; at the start of every minute
# a new version folder of the model is renamed in (loaded beside, warmed up, made the default)
# and the one before the serving version is deleted (drained and unloaded), so the soak also
# covers loads, switches and unloads under traffic. The log's switches are counted at the end.
set -euo pipefail
minutes=${1:-10}
cd "$(dirname "$0")/.."
inferd=${INFERD_BIN:-build/inferd}
py=/usr/bin/python3
[ -x "$inferd" ] || { echo "build $inferd first (make)" >&2; exit 2; }
tmp=$(mktemp -d /tmp/inferd-soak-XXXXXX)
mkdir -p "$tmp/models/text/1" bench/out
model=bench/.peers/models/small.onnx
[ -f "$model" ] || model=tests/fixtures/engine/peer_bert_op14/model.onnx
ln -s "$PWD/$model" "$tmp/models/text/1/model.onnx"
echo '{"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_us": 1000}}' \
    >"$tmp/models/text/config.json"
out=bench/out/soak-$(date -u +%Y%m%dT%H%M%SZ).txt

"$inferd" serve --repo "$tmp/models" --http-port 0 --threads 2 --poll-interval 1 \
    2>"$tmp/inferd.log" &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
port=
for _ in $(seq 200); do
    port=$(sed -nE 's/.*listening on http:\/\/[^:]+:([0-9]+).*/\1/p' "$tmp/inferd.log" | head -1)
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/inferd.log"; exit 1; }
url=http://127.0.0.1:$port

# Invalid bodies: each must be answered 4xx, whatever the load.
printf '{"inputs": [' >"$tmp/bad_json.json"
printf '{"inputs":[{"name":"input_ids","shape":[1,3],"datatype":"FP32","data":[1,2,3]},{"name":"attention_mask","shape":[1,3],"datatype":"INT64","data":[1,1,1]}]}' \
    >"$tmp/bad_dtype.json"
printf '{"inputs":[{"name":"input_ids","shape":[1,4],"datatype":"INT64","data":[1,2,3]},{"name":"attention_mask","shape":[1,3],"datatype":"INT64","data":[1,1,1]}]}' \
    >"$tmp/bad_shape.json"
head_json='{"inputs":[{"name":"input_ids","shape":[1,3],"datatype":"INT64","parameters":{"binary_data_size":24}},{"name":"attention_mask","shape":[1,3],"datatype":"INT64","parameters":{"binary_data_size":24}}]}'
{ printf '%s' "$head_json"; head -c 30 /dev/zero; } >"$tmp/bad_binary.bin"
bad_binary_hl=${#head_json}

json_field() { $py -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
rss_mib() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$pid/status"; }
threads() { ls "/proc/$pid/task" | wc -l; }

# Minute m: version m+1 comes in (made beside, renamed in whole), version m-1 goes.
swap_versions() {
    local m=$1 staging="$tmp/models/text/.staging"
    mkdir -p "$staging"
    ln -sf "$PWD/$model" "$staging/model.onnx"
    mv "$staging" "$tmp/models/text/$((m + 1))"
    [ "$m" -gt 1 ] && rm -rf "${tmp:?}/models/text/$((m - 1))"
    return 0
}

"$inferd" bench --url "$url" --model text --concurrency 4 --duration 3 --quiet --json --seq 32 \
    >/dev/null
"$inferd" bench --url "$url" --model text --concurrency 32 --duration 10 --quiet --json \
    --seq 32 >"$tmp/cap.json"
cap=$(json_field "$tmp/cap.json" 'd["qps"]')
valid_rate=$($py -c "print(round($cap * 0.60, 1))")
bad_rate=$($py -c "print(max(1.0, round($cap * 0.025, 1)))")
{
    echo "# inferd soak: $minutes min, model $model, capacity $cap req/s (closed loop, 32 connections);"
    echo "# valid JSON requests at $valid_rate req/s + 4 invalid kinds at $bad_rate req/s each"
    echo "# machine load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    printf "%-6s %8s %8s %8s %9s %9s %-28s %8s %7s\n" minute valid v_errors dropped p50_ms \
        p99_ms invalid_statuses rss_mib threads
} | tee "$out"

fail=0
first_rss= first_p99= last_rss= last_p99= all_rss=
for m in $(seq "$minutes"); do
    swap_versions "$m"
    "$inferd" bench --url "$url" --model text --rate "$valid_rate" --duration 60 --quiet --json \
        --seq 32 >"$tmp/valid.json" &
    vpid=$!
    bpids=()
    for kind in bad_json bad_dtype bad_shape; do
        "$inferd" bench --url "$url" --model text --rate "$bad_rate" --duration 60 --quiet \
            --json --request "$tmp/$kind.json" >"$tmp/$kind.out" 2>/dev/null &
        bpids+=($!)
    done
    "$inferd" bench --url "$url" --model text --rate "$bad_rate" --duration 60 --quiet --json \
        --request "$tmp/bad_binary.bin" --binary-header-length "$bad_binary_hl" \
        >"$tmp/bad_binary.out" 2>/dev/null &
    bpids+=($!)
    wait "$vpid" "${bpids[@]}"
    kill -0 "$pid" 2>/dev/null || { echo "the server died" | tee -a "$out"; exit 1; }
    valid=$(json_field "$tmp/valid.json" 'd["ok"]')
    # Server-side failures of valid requests; "dropped" (due while every client connection was
    # busy) is the load generator's, shown apart.
    verr=$(json_field "$tmp/valid.json" 'sum(d["errors"].values()) + d["connect_errors"] + d["io_errors"] + d["timeouts"]')
    dropped=$(json_field "$tmp/valid.json" 'd["dropped"]')
    p50=$(json_field "$tmp/valid.json" 'round(d["p50"], 2)')
    p99=$(json_field "$tmp/valid.json" 'round(d["p99"], 2)')
    statuses=$($py - "$tmp" <<'EOF'
import json, sys
tot = {}
for kind in ("bad_json", "bad_dtype", "bad_shape", "bad_binary"):
    d = json.load(open(f"{sys.argv[1]}/{kind}.out"))
    for k, v in d["errors"].items():
        tot[k] = tot.get(k, 0) + v
    for k in ("ok", "connect_errors", "io_errors", "timeouts"):
        if d[k]:
            tot[k] = tot.get(k, 0) + d[k]
print(",".join(f"{k}:{v}" for k, v in sorted(tot.items())))
EOF
)
    rss=$(rss_mib)
    printf "%-6s %8s %8s %8s %9s %9s %-28s %8s %7s\n" "$m" "$valid" "$verr" "$dropped" "$p50" \
        "$p99" "$statuses" "$rss" "$(threads)" | tee -a "$out"
    [ "$verr" = 0 ] || fail=1
    if echo "$statuses" | tr ',' '\n' | grep -qvE '^4[0-9][0-9]:'; then fail=1; fi
    [ -n "$first_rss" ] || { first_rss=$rss; first_p99=$p99; }
    last_rss=$rss
    last_p99=$p99
    all_rss="$all_rss$rss,"
done
$py -c "
r0, r1, p0, p1 = $first_rss, $last_rss, $first_p99, $last_p99
print(f'# RSS {r0} -> {r1} MiB ({(r1 - r0) / r0 * 100:+.1f}%), p99 drift {p1 / p0:.2f}x '
      f'(minute 1 -> $minutes)')
# Minute 1 includes start-up (plans built, first version swap), so growth is also given from
# minute 2, with the largest reading from minute 2 on.
rss = [$all_rss]
if len(rss) >= 3:
    w = rss[1]
    print(f'# RSS after warm-up: {w} -> {rss[-1]} MiB ({(rss[-1] - w) / w * 100:+.1f}%, minute 2 -> '
          f'$minutes), max {max(rss[1:])} MiB ({(max(rss[1:]) - w) / w * 100:+.1f}%)')" | tee -a "$out"
switches=$(grep -c "is now the default" "$tmp/inferd.log" || true)
echo "# version switches under traffic: $switches (of $((minutes)) new versions)" | tee -a "$out"
[ "$switches" -ge $((minutes - 1)) ] || fail=1
[ "$fail" = 0 ] && echo "# PASS: no valid request failed, every invalid one got a 4xx" | tee -a "$out" \
    || echo "# FAIL" | tee -a "$out"
exit $fail
