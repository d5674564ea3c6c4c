#!/usr/bin/python3
"""make bench-engine: inferd's engine against ONNX Runtime 1.30 and libtorch 1.13 on the
peers' model files, interleaved in one run (per model and thread count: inferd, ORT and
TorchScript, then again in the opposite order; per shape each engine's faster pass counts, so
a minute of interference on the shared machine hits no engine alone), written as a section of
bench/RESULTS.md.

Peers come from ../shared/peers (see its README): ONNX Runtime through onnxruntime-node
(ort_bench.js, intraOp = threads, graph optimisation 'all'), libtorch through
engine_bench.py's torch-tN-malloc variant (TorchScript, OpenBLAS pinned to N threads, glibc
malloc tuned: the best setting measured for it here). The machine is shared and noisy, so
every figure is quoted as a ratio against ORT measured minutes apart in the same run.

  /usr/bin/python3 bench/bench_engine.py                      # everything (~15 min)
  /usr/bin/python3 bench/bench_engine.py --passes 1           # one pass (~8 min)
  /usr/bin/python3 bench/bench_engine.py --sizes small --threads 2 --no-torch
"""
import argparse
import json
import os
import subprocess
import sys
import time

import benchlib

ROOT = benchlib.ROOT
SHARED = benchlib.SHARED
PEERS = benchlib.PEERS
INFERD = benchlib.INFERD
PY = benchlib.PY


def ensure_peers(sizes):
    models = os.path.join(PEERS, "models")
    need = [s for s in sizes if not os.path.exists(os.path.join(models, s + ".onnx"))]
    if need:
        os.makedirs(models, exist_ok=True)
        print(f"# making peer models {need} (needs python3-torch)", flush=True)
        subprocess.run([PY, os.path.join(SHARED, "make_models.py"), "--out", models,
                        "--sizes", ",".join(sorted(set(need) | {"small"}))], check=True)
    nm = os.path.join(PEERS, "node_modules", "onnxruntime-node")
    if not os.path.isdir(nm):
        print("# installing onnxruntime-node into bench/.peers", flush=True)
        for f in ("package.json", ".npmrc", "package-lock.json"):
            src = os.path.join(SHARED, "ort-node", f)
            if os.path.exists(src):
                subprocess.run(["cp", src, PEERS], check=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=PEERS, check=True)
    return models


def json_lines(cmd, env=None, timeout=3600):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                       timeout=timeout)
    if p.returncode != 0:
        print(f"# failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}", file=sys.stderr)
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]


def run_inferd(model, threads, batches, seqs, seconds, mixed):
    recs = json_lines([INFERD, "perf", model, "--threads", str(threads), "--batch", batches,
                       "--seq", seqs, "--vocab", "21128", "--seconds", str(seconds),
                       "--load-reps", "3"])
    if mixed:
        recs += [r for r in json_lines([INFERD, "perf", model, "--threads", str(threads),
                                        "--batch", "8", "--seq", "128", "--lengths", "random",
                                        "--min-len", "20", "--vocab", "21128", "--seconds",
                                        str(seconds)]) if r["kind"] == "run"]
    return recs


def run_ort(model, threads, batches, seqs, seconds):
    env = dict(os.environ, NODE_PATH=os.path.join(PEERS, "node_modules"))
    env.pop("OPENBLAS_CORETYPE", None)
    return json_lines(["node", os.path.join(SHARED, "ort-node", "ort_bench.js"), "--model", model,
                       "--intra", str(threads), "--inter", "1", "--batches", batches, "--seqs",
                       seqs, "--min-time", str(seconds), "--max-time", str(seconds * 4),
                       "--min-runs", "5", "--load-reps", "3"], env=env)


def run_torch(models, size, threads, batches, seqs, seconds):
    out = os.path.join(benchlib.OUT, f"torch_{size}_t{threads}.jsonl")
    subprocess.run([PY, os.path.join(SHARED, "engine_bench.py"), "--models", models,
                    "--variants", f"torch-t{threads}-malloc", "--sizes", size, "--batches",
                    batches, "--seqs", seqs, "--min-time", str(seconds), "--max-time",
                    str(seconds * 4), "--min-runs", "5", "--load-reps", "3", "--out", out],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=3600)
    return [json.loads(l) for l in open(out) if l.strip()] if os.path.exists(out) else []


def fmt(x, nd=2):
    return benchlib.fmt(x, nd)


def markdown(results, args, started, elapsed):
    L = []
    L.append("<!-- bench-engine:start -->")
    L.append("## Engine: inferd vs ONNX Runtime 1.30 vs libtorch 1.13 (`make bench-engine`)")
    L.append("")
    L.append(benchlib.command_line("bench_engine.py", args.argv))
    L.append(f"Run {started}, {elapsed / 60:.0f} min, on this machine (2 cores, AVX-512, shared "
             "and noisy: compare ratios within the run, not absolute numbers across runs). "
             f"{args.passes} pass{'es' if args.passes > 1 else ''} per model and thread count, "
             "engines in alternating order; per shape each engine's faster pass.")
    L.append("Models: the peers' seeded random BERT classifiers (`make_models.py`), inputs "
             "random ids with a full attention mask; ms per batch (median, p95), sequences/s "
             "from the median. **x ORT** = ORT median / inferd median (> 1: inferd faster).")
    L.append("")
    for size in args.sizes:
        L.append(f"### {size}")
        L.append("")
        L += benchlib.table_head("threads", "seq", "batch", "inferd ms (p95)", "ORT ms (p95)",
                                 "torch ms (p95)", "inferd seq/s", "ORT seq/s", "x ORT",
                                 "x torch")
        for t in args.threads:
            r = results.get((size, t), {})
            for seq in args.seqs:
                for b in args.batches:
                    i = r.get(("inferd", b, seq, "full"))
                    o = r.get(("ort", b, seq))
                    tt = r.get(("torch", b, seq))
                    ratio = o["median_ms"] / i["p50_ms"] if i and o else None
                    tr = tt["median_ms"] / i["p50_ms"] if i and tt else None
                    L.append(
                        f"| {t} | {seq} | {b} | "
                        f"{fmt(i and i['p50_ms'])} ({fmt(i and i['p95_ms'])}) | "
                        f"{fmt(o and o['median_ms'])} ({fmt(o and o['p95_ms'])}) | "
                        f"{fmt(tt and tt['median_ms'])} ({fmt(tt and tt['p95_ms'])}) | "
                        f"{fmt(i and i['items_per_s'], 0)} | {fmt(o and o['seq_per_s'], 0)} | "
                        f"**{fmt(ratio)}** | {fmt(tr)} |")
            mixed = r.get(("inferd", 8, 128, "random"))
            o = r.get(("ort", 8, 128))
            if mixed and o:
                L.append(f"| {t} | 20-128 | 8 | {fmt(mixed['p50_ms'])} ({fmt(mixed['p95_ms'])})"
                         f" | {fmt(o['median_ms'])} (padded to 128) | - | "
                         f"{fmt(mixed['items_per_s'], 0)} | {fmt(o['seq_per_s'], 0)} | "
                         f"**{fmt(o['median_ms'] / mixed['p50_ms'])}** | - |")
        L.append("")
    L.append("### Load time (file to ready), median of 3, ms")
    L.append("")
    L += benchlib.table_head("model", "inferd", "ORT session creation", "torch.jit.load",
                             "inferd / ORT")
    for size in args.sizes:
        loads = {}
        for t in args.threads:
            for k, v in results.get((size, t), {}).items():
                if k[0].endswith("load"):
                    loads.setdefault(k[0], v)
        i, o, tt = loads.get("inferd-load"), loads.get("ort-load"), loads.get("torch-load")
        L.append(f"| {size} | {fmt(i and i['load_ms_median'], 0)} | "
                 f"{fmt(o and o['load_ms_median'], 0)} | {fmt(tt and tt['load_ms_median'], 0)} | "
                 f"{fmt(i and o and i['load_ms_median'] / o['load_ms_median'])} |")
    L.append("")
    if args.profile:
        L.append("### Where the time goes: inferd per-op profile, small, batch 8, seq 128, "
                 f"{args.threads[-1]} threads (`inferd perf --profile`)")
        L.append("")
        L.append("```")
        L.extend(args.profile.rstrip().splitlines())
        L.append("```")
        L.append("")
    L.append("<!-- bench-engine:end -->")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,small,base")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--seqs", default="32,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--passes", type=int, default=2,
                    help="passes per model and thread count, in alternating engine order")
    ap.add_argument("--results", default=benchlib.RESULTS)
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    args.sizes = args.sizes.split(",")
    args.threads = [int(x) for x in args.threads.split(",")]
    args.batches = [int(x) for x in args.batches.split(",")]
    args.seqs = [int(x) for x in args.seqs.split(",")]
    os.makedirs(benchlib.OUT, exist_ok=True)
    models = ensure_peers(args.sizes)
    b, s = ",".join(map(str, args.batches)), ",".join(map(str, args.seqs))
    started = benchlib.utc_now()
    t0 = time.time()
    results = {}
    raw = open(os.path.join(benchlib.OUT, "engine.jsonl"), "w")
    median = {"inferd": "p50_ms", "ort": "median_ms", "torch": "median_ms"}

    def keep(r, key, rec):
        """Each engine's faster pass per shape; loads: the first pass's."""
        old = r.get(key)
        if old is None or (rec["kind"] == "run" and rec[median[key[0]]] < old[median[key[0]]]):
            r[key] = rec

    def inferd(size, model, t, r):
        for rec in run_inferd(model, t, b, s, args.seconds, mixed=True):
            raw.write(json.dumps(dict(rec, engine="inferd", size=size)) + "\n")
            if rec["kind"] == "load":
                keep(r, ("inferd-load",), rec)
            else:
                keep(r, ("inferd", rec["batch"], rec["seq"], rec["lengths"]), rec)

    def ort(size, model, t, r):
        for rec in run_ort(model, t, b, s, args.seconds):
            raw.write(json.dumps(dict(rec, engine="ort", size=size)) + "\n")
            if rec["kind"] == "load":
                keep(r, ("ort-load",), rec)
            elif rec["kind"] == "run" and not rec.get("skipped"):
                keep(r, ("ort", rec["batch"], rec["seq"]), rec)

    def torch(size, model, t, r):
        for rec in run_torch(models, size, t, b, s, args.seconds):
            raw.write(json.dumps(dict(rec, engine="torch", size=size)) + "\n")
            if rec["kind"] == "load":
                keep(r, ("torch-load",), rec)
            elif rec["kind"] == "run" and not rec.get("skipped"):
                keep(r, ("torch", rec["batch"], rec["seq"]), rec)

    engines = [("inferd", inferd), ("onnxruntime", ort)] + ([] if args.no_torch else
                                                           [("torch", torch)])
    for size in args.sizes:
        model = os.path.join(models, size + ".onnx")
        for t in args.threads:
            r = results.setdefault((size, t), {})
            for p in range(args.passes):
                for name, run in engines if p % 2 == 0 else engines[::-1]:
                    print(f"# {size} threads {t} pass {p + 1}: {name}", flush=True)
                    run(size, model, t, r)
                    raw.flush()
    args.profile = None
    if "small" in args.sizes:
        p = subprocess.run([INFERD, "perf", os.path.join(models, "small.onnx"), "--batch", "8",
                            "--seq", "128", "--threads", str(args.threads[-1]), "--vocab",
                            "21128", "--seconds", "3", "--profile"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        args.profile = p.stderr
    text = markdown(results, args, started, time.time() - t0)
    benchlib.write_section(args.results, text, "bench-engine")
    print(text)


if __name__ == "__main__":
    main()
