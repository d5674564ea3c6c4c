#!/usr/bin/python3
"""make bench-residency (issue #5): does a busy resident model's latency move while other
models are loaded and evicted next to it?

One inferd, a repository of 1 + --cold copies of the peers' small model (hard links, each its
own version with its own load cache), and a memory budget that holds the hot model (pinned)
and two cold ones. Two phases of --duration s each, interleaved --rounds times:

  quiet     open-loop traffic (`inferd bench --rate R`, KServe tensors, batch 1, seq 32) on
            the hot model alone;
  resident  the same, and next to it a client that requests two cold models that stay in
            memory, in turn, one every --churn-interval s: the extra inference alone;
  churn     the same, with the client going through all the cold models in turn: every
            request evicts the least recently used cold model and loads another from its
            cache on a loader thread. Compared with `resident`, the difference is the loading
            and evicting.

Reported per phase: the hot model's QPS and p50/p95/p99/max latency (measured from when each
request was due, so a stall shows), errors, and in the churn phase the loads, evictions and
mean load time from /metrics. Variants: the loader at the workers' nice (10) and below them
(--loader-nice 19).

  /usr/bin/python3 bench/bench_residency.py                 # ~4 min
  /usr/bin/python3 bench/bench_residency.py --duration 10 --rounds 1 --no-write

Results: a section of bench/RESULTS.md between <!-- bench-residency:start --> and
<!-- bench-residency:end -->, and bench/out/residency.json.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_engine as be  # noqa: E402
import bench_load as bl  # noqa: E402
import benchlib  # noqa: E402

OUT = bl.OUT
be.INFERD = os.environ.get("INFERD_BIN", be.INFERD)


def make_repo(model, n_cold):
    repo = os.path.join(OUT, "residency_repo")
    shutil.rmtree(repo, ignore_errors=True)
    names = ["hot"] + [f"cold{i:02d}" for i in range(n_cold)]
    for name in names:
        os.makedirs(os.path.join(repo, name, "1"))
        os.link(model, os.path.join(repo, name, "1", "model.onnx"))
        cfg = {"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_us": 500}}
        if name == "hot":
            cfg["pinned"] = True
        with open(os.path.join(repo, name, "config.json"), "w") as f:
            json.dump(cfg, f)
    return repo, names


def start(repo, budget, extra, tag):
    port = benchlib.free_port()
    log = open(os.path.join(OUT, f"residency_{tag}.log"), "w")
    proc = subprocess.Popen(["taskset", "-c", "0,1", be.INFERD, "serve", "--repo", repo,
                             "--http-port", str(port), "--threads", "2", "--memory-budget",
                             str(budget), *extra], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if bl.http(url + "/v2/health/ready")[0] == 200:
                return proc, url, log
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"inferd did not start: see {log.name}")


def stop(proc, log):
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    log.close()


def body():
    ids = [101] + [1000 + 37 * i % 20000 for i in range(30)] + [102]
    return json.dumps({"inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [1, 32], "data": ids},
        {"name": "attention_mask", "datatype": "INT64", "shape": [1, 32],
         "data": [1] * 32}]}).encode()


def hot_load(url, rate, duration, pid):
    req = os.path.join(OUT, "residency_request.json")
    with open(req, "wb") as f:
        f.write(body())
    p = subprocess.run([be.INFERD, "bench", "--url", url, "--model", "hot", "--rate", str(rate),
                        "--duration", str(duration), "--warmup", "1", "--request", req,
                        "--server-pid", str(pid), "--json"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(lines[-1])


def churn(url, names, interval, stop_evt, out):
    i = 0
    b = body()
    while not stop_evt.is_set():
        t = time.perf_counter()
        name = names[i % len(names)]
        i += 1
        try:
            st, _ = bl.http(f"{url}/v2/models/{name}/infer", b)
            out["ok" if st == 200 else "failed"] += 1
        except OSError:
            out["failed"] += 1
        out["ms"].append((time.perf_counter() - t) * 1e3)
        left = interval - (time.perf_counter() - t)
        if left > 0:
            stop_evt.wait(left)


def metrics(url):
    text = bl.http(url + "/metrics")[1].decode()
    keys = ("inferd_loads_total", "inferd_evictions_total", "inferd_load_cache_hits_total",
            "inferd_model_load_duration_seconds_sum", "inferd_model_load_duration_seconds_count",
            "inferd_memory_used_bytes", "inferd_memory_budget_bytes")
    return {k: bl.metric(text, k) or 0.0 for k in keys}


def run_variant(repo, names, budget, args, tag, extra):
    proc, url, log = start(repo, budget, extra, tag)
    res = {"quiet": [], "resident": [], "churn": []}
    try:
        b = body()
        for name in names:  # every cache written, every plan for this shape built once
            bl.http(f"{url}/v2/models/{name}/infer", b)
        resident = names[1:3]
        for _ in range(3):  # the two used in the resident phase stay in memory from now on
            for name in resident:
                bl.http(f"{url}/v2/models/{name}/infer", b)
        for rnd in range(args.rounds):
            for phase in ("quiet", "resident", "churn"):
                m0 = metrics(url)
                stop_evt = threading.Event()
                ch = {"ok": 0, "failed": 0, "ms": []}
                t = None
                if phase != "quiet":
                    targets = resident if phase == "resident" else names[1:]
                    t = threading.Thread(target=churn, args=(url, targets, args.churn_interval,
                                                             stop_evt, ch))
                    t.start()
                rec = hot_load(url, args.rate, args.duration, proc.pid)
                stop_evt.set()
                if t:
                    t.join()
                m1 = metrics(url)
                d = {k: m1[k] - m0[k] for k in m1}
                rec.update(
                    phase=phase, round=rnd, loads=d["inferd_loads_total"],
                    evictions=d["inferd_evictions_total"],
                    load_ms=(1e3 * d["inferd_model_load_duration_seconds_sum"] /
                             d["inferd_model_load_duration_seconds_count"]
                             if d["inferd_model_load_duration_seconds_count"] else None),
                    churn_ok=ch["ok"], churn_failed=ch["failed"],
                    churn_ms=benchlib.median(ch["ms"]), used=m1["inferd_memory_used_bytes"],
                    budget=m1["inferd_memory_budget_bytes"])
                res[phase].append(rec)
                print(f"# {tag} {phase} round {rnd}: p50 {rec['p50']:.2f} p99 {rec['p99']:.2f} "
                      f"max {rec['max']:.1f} ms, qps {rec['qps']:.1f}, loads {rec['loads']:.0f}, "
                      f"load {bl.fmt(rec['load_ms'])} ms, errors {rec.get('errors')}", flush=True)
    finally:
        stop(proc, log)
    return res


def agg(recs, key):
    vals = [r[key] for r in recs if r.get(key) is not None]
    return benchlib.median(vals) if vals else None


def markdown(results, args, started, elapsed, budget):
    L = ["<!-- bench-residency:start -->",
         "## A busy model's latency while others load and evict (`make bench-residency`, "
         "issue #5)",
         "",
         benchlib.command_line("bench_residency.py", args.argv),
         f"Run {started}, {elapsed / 60:.0f} min, on this machine (2 cores, shared and noisy). "
         f"inferd `--threads 2 --memory-budget {budget}` (the hot model, pinned, and two cold "
         f"ones) on 1 + {args.cold} copies of the peers' small model. **hot**: open loop at "
         f"{args.rate:g} requests/s on the hot model (KServe tensors, batch 1, seq 32; latency "
         "from when each request was due), "
         f"{args.duration:g} s per phase, median over {args.rounds} rounds of each phase, "
         "phases interleaved. **resident**: meanwhile, one request every "
         f"{args.churn_interval:g} s to two cold models that stay in memory (the same extra "
         "inference, no loads); **churn**: the same rate of requests to the "
         f"{args.cold} cold models in turn, each evicting one and loading another from its "
         "load cache. **loads**, **load ms**: from /metrics during the phase.",
         "",
         *benchlib.table_head("loader", "phase", "hot QPS", "p50 ms", "p95 ms", "p99 ms",
                              "max ms", "errors", "loads", "evictions", "load ms",
                              "churn request ms")]
    for tag, res in results.items():
        for phase in ("quiet", "resident", "churn"):
            recs = res[phase]
            errs = sum(sum((r.get("errors") or {}).values()) for r in recs) + \
                sum(r.get("churn_failed", 0) for r in recs)
            L.append(f"| {tag} | {phase} | {bl.fmt(agg(recs, 'qps'))} | "
                     f"{bl.fmt(agg(recs, 'p50'), 2)} | {bl.fmt(agg(recs, 'p95'), 2)} | "
                     f"**{bl.fmt(agg(recs, 'p99'), 2)}** | {bl.fmt(agg(recs, 'max'))} | {errs} | "
                     f"{bl.fmt(sum(r['loads'] for r in recs), 0)} | "
                     f"{bl.fmt(sum(r['evictions'] for r in recs), 0)} | "
                     f"{bl.fmt(agg(recs, 'load_ms'))} | {bl.fmt(agg(recs, 'churn_ms'))} |")
    L += ["", "<!-- bench-residency:end -->"]
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cold", type=int, default=12)
    ap.add_argument("--churn-interval", type=float, default=0.1)
    ap.add_argument("--variants", default="nice10,nice19")
    ap.add_argument("--results", default=benchlib.RESULTS)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    os.makedirs(OUT, exist_ok=True)
    models = be.ensure_peers(["small"])
    repo, names = make_repo(os.path.join(models, "small.onnx"), args.cold)
    started = benchlib.utc_now()
    t0 = time.time()
    # What one copy holds serving this shape, measured, and room for the hot one and two.
    proc, url, log = start(repo, 1 << 40, [], "calibrate")
    try:
        bl.http(f"{url}/v2/models/cold00/infer", body())
        text = bl.http(url + "/metrics")[1].decode()
        one = max(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                  if l.startswith("inferd_model_resident_bytes{"))
    finally:
        stop(proc, log)
    # The first load of a version reserves its estimate (1.25 x the file): leave room for it.
    first = os.path.getsize(os.path.join(models, "small.onnx")) * 1.25 + (256 << 10)
    # The hot model grows past `one` under traffic (plans for more batch sizes, arenas at two
    # threads): 4 copies' worth keeps the two resident cold ones in memory (the resident
    # phase must load nothing), while 12 cold ones cannot all fit.
    budget = int(max(4.0 * one, 2 * first + 2 * one))
    variants = {"nice10": ("loader nice 10 (= workers)", []),
                "nice19": ("loader nice 19", ["--loader-nice", "19"])}
    results = {}
    for v in args.variants.split(","):
        tag, extra = variants[v]
        results[tag] = run_variant(repo, names, budget, args, v, extra)
    with open(os.path.join(OUT, "residency.json"), "w") as f:
        json.dump({"args": args.argv, "started": started, "budget": budget,
                   "results": results}, f, indent=1)
    text = markdown(results, args, started, time.time() - t0, budget)
    if not args.no_write:
        benchlib.write_section(args.results, text, "bench-residency")
    print(text)
    shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    main()
