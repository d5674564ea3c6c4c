#!/usr/bin/python3
"""Issue #5 benchmark: 100 text classifiers on a server whose memory holds only 8 of them.

The peers' answer is Flask+Gunicorn with an LRU of 8 loaded models per worker (a miss loads
the eager PyTorch model on the request path). inferd's is a memory budget
(`inferd serve --memory-budget BYTES`: least recently used versions are unloaded, evicted ones
come back from the memory-mapped pre-packed form). Same scenario as bench_text.py otherwise:
the peers' small model (100 names, one file), the peers' char tokenizer, Chinese texts of
20-120 characters, 16 Locust users, --warmup + --duration s per run, models picked uniformly
(the worst case for any cache) and with a Zipf(1) skew (model i with weight 1/(i+1): the 8
busiest get about half the requests).

  /usr/bin/python3 bench/bench_models100.py                     # ~10 min
  /usr/bin/python3 bench/bench_models100.py --duration 15 --dists uniform --no-write

All servers are started at once (idle ones use no CPU) and the load takes turns: --rounds
rounds over every (server, distribution), in an order that rotates every round, so that other
work on this shared machine weighs on all alike.

Servers:
  gunicorn        run_server.sh gunicorn on bench/.peers/models/repo100 (LRU_SIZE 8 per worker,
                  2 workers): load count from its /stats, per worker (polled until both
                  answered); mean load time measured apart (load_eager of the small model in
                  the same environment, median of 5, no other load)
  inferd-budget   inferd on bench/.peers/text_repo100 with --memory-budget = 8.5 x one
                  version's memory (inferd_model_memory_bytes of a one-model run); load count
                  and load time from /metrics. PENDING: the residency feature is not in
                  inferd yet; until it is, this run is reported as pending.
  inferd-all      inferd on text_repo100 with every model resident (today's inferd; ~5 GB)

Results: a section of bench/RESULTS.md between <!-- bench-models100:start --> and
<!-- bench-models100:end -->, and bench/out/models100.json.
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_text as bt  # noqa: E402
import benchlib  # noqa: E402
import make_text_repo  # noqa: E402
import text_pool  # noqa: E402

N = 100
LRU = 8


def flask_stats(srv, tries=60):
    """Sum of the gunicorn workers' /stats ({pid, loads, hits, evictions}); a sync worker
    answers per connection, so poll until every worker has answered."""
    seen = {}
    for _ in range(tries):
        try:
            st, data = bt.http_get(srv.url, "/stats", timeout=60)
        except OSError:
            continue
        if st == 200:
            d = json.loads(data)
            seen[d["pid"]] = d
        if len(seen) >= 2:
            break
    return {"workers": len(seen), "loads": sum(d["loads"] for d in seen.values()),
            "hits": sum(d["hits"] for d in seen.values()),
            "evictions": sum(d["evictions"] for d in seen.values())}


def eager_load_ms(reps=5):
    """Median and mean ms of one load_eager of the small model, in run_server.sh's gunicorn
    environment (1 torch thread, OpenBLAS 1 thread, OPENBLAS_CORETYPE unset)."""
    code = (
        "import sys, time, json, torch\n"
        f"sys.path.insert(0, {bt.SHARED!r})\n"
        "from make_models import load_eager\n"
        "torch.set_num_threads(1)\n"
        f"d = {os.path.join(bt.PEERS, 'models')!r}\n"
        "ts = []\n"
        f"for _ in range({reps}):\n"
        "    t = time.perf_counter()\n"
        "    load_eager(d + '/small.state.pt', d + '/small.json')\n"
        "    ts.append((time.perf_counter() - t) * 1e3)\n"
        "print(json.dumps(ts))\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", TORCH_THREADS="1")
    env.pop("OPENBLAS_CORETYPE", None)
    p = subprocess.run(["taskset", "-c", "0,1", bt.PY, "-c", code], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        return None
    ts = sorted(json.loads(p.stdout.strip().splitlines()[-1]))
    return {"median": benchlib.median(ts), "mean": sum(ts) / len(ts)}


def inferd_metrics(srv):
    """Model memory and, when inferd has them, load counts and load time from /metrics."""
    try:
        st, data = bt.http_get(srv.url, "/metrics")
    except OSError:
        return {}
    out = {"memory": 0.0, "loads": None, "load_s": None, "load_n": None}
    for line in data.decode().splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, val = line.split("{")[0].split(" ")[0], float(line.rsplit(" ", 1)[1])
        if name == "inferd_model_memory_bytes":
            out["memory"] = max(out["memory"], val)
        elif name in ("inferd_model_loads_total", "inferd_model_load_total",
                      "inferd_version_loads_total"):
            out["loads"] = (out["loads"] or 0) + val
        elif name in ("inferd_model_load_duration_seconds_sum", "inferd_load_duration_seconds_sum"):
            out["load_s"] = (out["load_s"] or 0) + val
        elif name in ("inferd_model_load_duration_seconds_count",
                      "inferd_load_duration_seconds_count"):
            out["load_n"] = (out["load_n"] or 0) + val
    return out


fmt = benchlib.fmt


def markdown(runs, args, started, elapsed, load, budget):
    L = ["<!-- bench-models100:start -->",
         f"## {N} classifiers, memory for {LRU}: Gunicorn's LRU vs inferd "
         "(`bench/bench_models100.py`, issue #5)",
         "",
         benchlib.command_line("bench_models100.py", args.argv),
         f"Run {started}, {elapsed / 60:.0f} min, on this machine (2 cores, shared and noisy).",
         f"{N} names for the peers' small model; texts, tokenizer, {args.users} Locust users and "
         f"the /ready probe as in `make bench-text`; {args.duration:g} s measured per server "
         f"and distribution, as {args.rounds} turns of {args.warmup:g} s warm-up + "
         f"{args.duration / args.rounds:g} s in a rotating order, all servers up. Models picked **uniform** (every model "
         "equally: the worst case for a cache) or **zipf:1** (model i with weight 1/(i+1)).",
         f"Gunicorn: 2 sync workers with an LRU of {LRU} each (run_server.sh defaults); "
         "**loads** = models loaded on the request path during the turns, warm-ups included "
         "(its /stats, both workers); **load ms** = one `load_eager` of the model measured apart "
         "in the same environment (median of 5"
         + (f": {fmt(load['median'])} ms" if load else ": not measured") + ").",
         "**start s**: from starting the server to its health endpoint answering 200. "
         f"inferd with a budget: `--memory-budget {budget}` "
         f"(~{LRU}.5 versions of {fmt(args.model_mib, 1)} MiB).",
         "",
         *benchlib.table_head("server", "setting", "dist", "QPS", "QPS per turn", "p50 ms",
                              "p95 ms", "p99 ms", "errors", "loads", "load ms", "/ready p99 ms",
                              "CPU%", "threads", "other CPU%", "start s")]
    for r in runs:
        if "error" in r:
            L.append(f"| {r['server']} | {r['setting']} | {r['dist']} | {r['error']} | "
                     "| | | | | | | | | | | |")
            continue
        lat = r["latency"]
        errs = sum(r["errors"].values()) if r["errors"] else 0
        L.append(f"| {r['server']} | {r['setting']} | {r['dist']} | **{fmt(r['qps'], 1)}** | "
                 + " ".join(fmt(q) for q in r.get("qps_rounds", [])) + " | "
                 f"{fmt(lat['p50'], 1)} | {fmt(lat['p95'], 1)} | {fmt(lat['p99'], 1)} | {errs} | "
                 f"{fmt(r.get('loads'))} | {fmt(r.get('load_ms'))} | "
                 f"{fmt(r['ready']['p99'], 1)} | {fmt(r['cpu'])} | {fmt(r['threads'])} | "
                 f"{fmt(r.get('other_cpu'))} | {fmt(r.get('start_s'), 1)} |")
    L.append("")
    L.append("<!-- bench-models100:end -->")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_options(
        ap, "--servers", ("--dists", dict(default="uniform,zipf:1")), "--duration", "--warmup",
        "--rounds", "--users", "--texts", "--seed", "--ready-interval", "--max-batch",
        "--delay-us", "--buckets", "--inferd", "--results", "--no-write",
        servers=dict(default="gunicorn,inferd-budget,inferd-all"),
        duration=dict(help=None),
        rounds=dict(help="turns per server and distribution, in a rotating order"),
        inferd=dict(help="inferd binary (default build/inferd)"))
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    args.inferd_bench_binary = None
    os.makedirs(bt.OUT, exist_ok=True)
    import bench_engine  # noqa: E402  makes the peers' models, installs onnxruntime-node
    bench_engine.ensure_peers(["small"])
    buckets = [int(b) for b in args.buckets.split(",") if b]
    make_text_repo.build("text_repo1", 1, args.max_batch, args.delay_us, buckets)
    repo100 = make_text_repo.build("text_repo100", N, args.max_batch, args.delay_us, buckets)
    peer100 = make_text_repo.peer_repo(N)
    texts_file = os.path.join(bt.OUT, "text_pool.json")
    texts = text_pool.write_pool(texts_file, args.texts, args.seed)
    started = benchlib.utc_now()
    t0 = time.time()
    servers = args.servers.split(",")
    load = eager_load_ms() if "gunicorn" in servers else None

    # One version's memory, for the budget.
    one = bt.start_server(bt.inferd_variant("text_repo1"), None, name="inferd1",
                          binary=args.inferd)
    try:
        args.model_mib = inferd_metrics(one).get("memory", 0) / 2**20 or 49.2
    finally:
        bt.stop_server(one)
    budget = f"{int(args.model_mib * (LRU + 0.5))}M"

    dists = args.dists.split(",")
    up, failed = {}, {}
    for name in servers:  # all up at once (idle ones use no CPU), the load takes turns
        if name == "gunicorn":
            v, extra = dict(bt.VARIANTS["gunicorn"]), ()
        else:
            v = bt.inferd_variant(repo100, args.inferd)
            v["setting"] = (f"--memory-budget {budget}" if name == "inferd-budget"
                            else f"all {N} resident")
            extra = ("--memory-budget", budget) if name == "inferd-budget" else ()
        print(f"# {name}: starting", flush=True)
        try:
            srv = bt.start_server(v, peer100, name=name, binary=args.inferd, extra_args=extra,
                                  timeout=900)
        except RuntimeError as e:
            msg = str(e)
            pending = name == "inferd-budget" and "memory-budget" in msg
            failed[name] = (v, "pending: `inferd serve` has no --memory-budget yet" if pending
                            else "did not start (see bench/out)")
            print(f"# {name}: {msg[:300]}", file=sys.stderr, flush=True)
            continue
        up[name] = srv
        if srv.kind == "inferd":
            bt.warm_up(srv, texts)
    seg = copy.copy(args)
    seg.duration = args.duration / args.rounds
    turns = [(name, dist) for name in servers for dist in dists]
    parts = {}
    try:
        for rnd in range(args.rounds):
            for name, dist in benchlib.rotated(turns, rnd):
                srv = up.get(name)
                if srv is None:
                    continue
                seg.dist = dist
                print(f"# round {rnd + 1}/{args.rounds}: {name} {dist}", flush=True)
                try:
                    before = flask_stats(srv) if name == "gunicorn" else inferd_metrics(srv)
                    rec = bt.measure(srv, "locust", seg, texts_file, None,
                                     f"{name}_{dist.replace(':', '')}_r{rnd}")
                    after = flask_stats(srv) if name == "gunicorn" else inferd_metrics(srv)
                    if name == "gunicorn":
                        rec["loads"] = after["loads"] - before["loads"]
                    elif after.get("loads") is not None:
                        rec["loads"] = after["loads"] - (before.get("loads") or 0)
                        if after.get("load_n"):
                            rec["load_n"] = after["load_n"] - (before.get("load_n") or 0)
                            rec["load_s"] = after["load_s"] - (before.get("load_s") or 0)
                except Exception as e:
                    rec = {"server": srv.variant["server"], "variant": name, "kind": srv.kind,
                           "setting": srv.variant["setting"], "error": str(e)[:200]}
                parts.setdefault((name, dist), []).append(rec)
                print("# " + json.dumps(bt.public(rec)), flush=True)
    finally:
        for srv in up.values():
            bt.stop_server(srv)
    runs = []
    for name, dist in turns:
        if name in failed:
            v, err = failed[name]
            runs.append({"server": v["server"], "variant": name, "setting": v["setting"],
                         "dist": dist, "error": err})
            continue
        recs = parts.get((name, dist), [])
        if not recs:
            continue
        rec = bt.merge_rounds(recs)
        rec["dist"] = dist
        good = [r for r in recs if "error" not in r]
        if good and all(r.get("loads") is not None for r in good):
            rec["loads"] = sum(r["loads"] for r in good)
        if name == "gunicorn":
            rec["load_ms"] = load and load["median"]
        elif good and all(r.get("load_n") for r in good):
            rec["load_ms"] = 1e3 * sum(r["load_s"] for r in good) / sum(r["load_n"] for r in good)
        runs.append(rec)
    with open(os.path.join(bt.OUT, "models100.json"), "w") as fh:
        json.dump({"args": args.argv, "started": started, "eager_load_ms": load,
                   "budget": budget, "runs": runs, "rounds": bt.public_rounds(parts)}, fh,
                  indent=1)
    text = markdown(runs, args, started, time.time() - t0, load, budget)
    if not args.no_write:
        benchlib.write_section(args.results, text, "bench-models100")
    print(text)


if __name__ == "__main__":
    main()
