#!/usr/bin/python3
"""make bench-torch: the 21-model text scenario of `make bench-text` (issue #4) with TorchScript
files (issue #7). 21 copies of the peers' small BERT-shaped classifier, as model.pt, behind
inferd's text API (the peers' character tokenizer as pipeline.json), against

  tornado        the Tornado+TorchScript peer at its best setting (2 threads, OMP passive,
                 malloc tuned: the "92 QPS" setting of ../shared/peers/README.md), which runs
                 the same .pt files through the same libtorch 1.13;
  inferd21-onnx  inferd's own ONNX engine on the same models (small.onnx, same weights),
                 with the same repository settings;
  inferd21-pt    inferd with model.pt (platform torchscript) through the libtorch plugin.

Everything else is bench_text.py's: every server up at once under `taskset -c 0,1`, warmed up,
then taking turns for --rounds rounds in a rotating order, each turn Locust (--users closed-loop
users, a random model and text per request) and `inferd bench` (one fixed text to m00); the
health endpoint probed every --ready-interval s; CPU and threads of the server sampled.
Before measuring, each server answers the same texts and the labels and scores are compared
(inferd with .pt against Tornado, which runs the same file: the check of the .pt path).

OPENBLAS_CORETYPE is removed from the environment of every server (the peers' run_server.sh
does so for its own: OpenBLAS then picks its kernels from the CPU), so libtorch calls the same
OpenBLAS kernels in Tornado and in inferd.

The repositories are written to bench/out/torch_repos (the model files are symlinks to
bench/.peers/models). Results: a section of bench/RESULTS.md between
<!-- bench-torch:start --> and <!-- bench-torch:end -->, and every number in
bench/out/torch.json.

  /usr/bin/python3 bench/bench_torch.py --duration 45
  /usr/bin/python3 bench/bench_torch.py --duration 15 --servers inferd21-pt,tornado --no-write
"""
import argparse
import copy
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_text as bt  # noqa: E402
import benchlib  # noqa: E402
import make_text_repo  # noqa: E402

REPOS = os.path.join(bt.OUT, "torch_repos")
VARIANTS = {
    "tornado": bt.VARIANTS["tornado"],
    "inferd21-onnx": dict(kind="inferd", repo=os.path.join(REPOS, "onnx21"), server="inferd",
                          setting="ONNX engine, small.onnx (defaults)"),
    "inferd21-pt": dict(kind="inferd", repo=os.path.join(REPOS, "pt21"), server="inferd",
                        setting="TorchScript plugin, small.pt (defaults)"),
    "inferd1-pt": dict(kind="inferd", repo=os.path.join(REPOS, "pt1"), server="inferd",
                       setting="TorchScript plugin, small.pt, one model"),
}
DEFAULT_SERVERS = "tornado,inferd21-onnx,inferd21-pt"
TOL = 1e-4


def check_answers(servers, texts):
    """Each server's answers to the same texts (model m{i % 21}); returns (worst score
    difference from the first server, label mismatches)."""
    ref, worst, mism = None, 0.0, 0
    for srv in servers:
        got = [bt.predict(srv, f"m{i % srv.models:02d}", t) for i, t in enumerate(texts)]
        if ref is None:
            ref = got
            continue
        for a, b in zip(ref, got):
            worst = max(worst, abs(a["score"] - b["score"]))
            mism += a["label"] != b["label"]
    return worst, mism


def markdown(runs, args, started, elapsed, check):
    f = bt.f
    L = ["<!-- bench-torch:start -->",
         "## TorchScript models, 21 classifiers, 16 users: inferd's plugin vs Tornado+TorchScript "
         "and vs inferd's ONNX engine (`make bench-torch`)",
         "",
         benchlib.command_line("bench_torch.py", args.argv),
         f"Run {started}, {elapsed / 60:.0f} min, on this machine (2 cores, shared with other "
         "work and noisy: only ratios within this run mean anything, and only roughly).",
         "Scenario: the 21-model text scenario of `make bench-text` (21 copies of the peers' "
         "small model, 4 layers, hidden 312, 30 labels; the peers' char tokenizer; Chinese texts "
         f"of 20-120 characters, {args.texts} texts, seed {args.seed}; {args.users} closed-loop "
         f"users), {args.duration:g} s measured per server and driver as {args.rounds} turns of "
         f"{args.warmup:g} s warm-up + {args.duration / args.rounds:g} s, the servers taking "
         "turns in a rotating order while all are up. Every server under `taskset -c 0,1`, "
         "OPENBLAS_CORETYPE unset for all. inferd: repositories from bench/make_text_repo.py "
         f"(`max_batch_size` {args.max_batch}, `max_queue_delay_us` {args.delay_us}, "
         + (f"`pad_dims` with `length_buckets` [{args.buckets}]" if args.buckets
            else "no padding")
         + "), `inferd serve` flags at their defaults (`--threads 2`); the .pt repository "
         "declares `input_ids`, `attention_mask` (INT64 [-1, -1]) and `logits` (FP32 [-1, 30]) "
         "in config.json.",
         f"Answers: on {check['texts']} texts, inferd with model.pt gave the same labels as "
         f"{check['ref']} ({check['mismatches']} mismatches) with scores within "
         f"{check['worst']:.1e}.",
         "",
         *benchlib.table_head("server", "setting", "models", "driver", "QPS", "QPS per turn",
                              "p50 ms", "p95 ms", "p99 ms", "errors", "/ready p99 / max ms",
                              "CPU%", "threads", "other CPU%")]
    for r in runs:
        if "error" in r:
            L.append(f"| {r['server']} | {r['setting']} | {r['models']} | {r['driver']} | "
                     f"failed: {r['error']} | | | | | | | | | |")
            continue
        lat, rd = r["latency"], r["ready"]
        errs = sum(r["errors"].values()) if r["errors"] else 0
        L.append(f"| {r['server']} | {r['setting']} | {r['models']} | {r['driver']} | "
                 f"**{f(r['qps'], 1)}** | " + " ".join(f(q) for q in r.get("qps_rounds", []))
                 + f" | {f(lat['p50'], 1)} | {f(lat['p95'], 1)} | {f(lat['p99'], 1)} | {errs} | "
                 f"{f(rd['p99'], 1)} / {f(rd['max'], 1)} | {f(r['cpu'])} | {f(r['threads'])} | "
                 f"{f(r.get('other_cpu'))} |")
    L.append("")
    by = {(r["variant"], r["driver"]): r for r in runs if "error" not in r}
    lines = []
    for d in args.drivers.split(","):
        pt = by.get(("inferd21-pt", d))
        if not pt:
            continue
        for other, what in (("tornado", "Tornado+TorchScript (best setting)"),
                            ("inferd21-onnx", "inferd's ONNX engine")):
            o = by.get((other, d))
            if o and o["qps"]:
                lines.append(f"| {d} | inferd .pt / {what} | {f(pt['qps'], 1)} / "
                             f"{f(o['qps'], 1)} = **{pt['qps'] / o['qps']:.2f}x** | "
                             f"{f(pt['latency']['p95'], 1)} / {f(o['latency']['p95'], 1)} ms |")
    if lines:
        L += ["Ratios (same run):", "", *benchlib.table_head("driver", "ratio", "QPS", "p95")]
        L += lines
        L.append("")
    batch = [r for r in runs if r.get("batch")]
    if batch:
        L.append("inferd's mean batch (rows per batch, from /metrics): " + ", ".join(
            f"{r['variant']} {r['driver']} {f(r['batch']['mean'], 2)}" for r in batch) + ".")
        L.append("")
    spread = [max(r["qps_rounds"]) / min(r["qps_rounds"]) for r in runs
              if len(r.get("qps_rounds", [])) > 1 and min(r["qps_rounds"]) > 0]
    if spread:
        oth = [r["other_cpu"] for r in runs if r.get("other_cpu") is not None]
        L.append(f"Noise: one server's QPS differed up to {max(spread):.1f}x between its turns; "
                 + (f"other work on the machine used {min(oth):.0f}-{max(oth):.0f}% CPU "
                    "meanwhile (200 = both cores)." if oth else ""))
        L.append("")
    L.append("<!-- bench-torch:end -->")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_options(
        ap, "--servers", "--drivers", "--duration", "--rounds", "--warmup", "--users", "--texts",
        "--seed", "--ready-interval", "--max-batch", "--delay-us", "--buckets",
        ("--check-texts", dict(type=int, default=42)),
        "--inferd", "--inferd-bench-binary", "--results", "--no-write",
        servers=dict(default=DEFAULT_SERVERS,
                     help=f"comma-separated, from: {', '.join(VARIANTS)}"),
        duration=dict(default=45.0))
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    servers = args.servers.split(",")
    benchlib.check_servers(servers, VARIANTS)
    if not os.path.exists(os.path.join(os.path.dirname(os.path.abspath(
            args.inferd or benchlib.INFERD)), "libinferd_torch.so")):
        sys.exit("build/libinferd_torch.so is not built (install libtorch-dev, then make)")
    os.environ.pop("OPENBLAS_CORETYPE", None)
    os.makedirs(REPOS, exist_ok=True)
    import bench_engine  # noqa: E402  makes the peers' models if needed
    bench_engine.ensure_peers(["small"])
    buckets = [int(b) for b in args.buckets.split(",") if b]
    for name, n, model in (("onnx21", 21, "small.onnx"), ("pt21", 21, "small.pt"),
                           ("pt1", 1, "small.pt")):
        make_text_repo.build(name, n, args.max_batch, args.delay_us, buckets, model=model,
                             root=REPOS)
    texts_file = os.path.join(bt.OUT, "text_pool.json")
    texts = bt.text_pool.write_pool(texts_file, args.texts, args.seed)
    body_text = min(texts, key=lambda t: abs(len(t) - 70))
    started = benchlib.utc_now()
    t0 = time.time()
    up = {}
    try:
        for name in servers:
            v = VARIANTS[name]
            n = 1 if name.startswith("inferd1") else 21
            print(f"# {name}: starting", flush=True)
            srv = bt.start_server(v, bt.peer_repo_for(n), name=name, binary=args.inferd)
            bt.warm_up(srv, texts)
            up[name] = srv
        ref = "tornado" if "tornado" in up else next(iter(up))
        order = [up[ref]] + [s for k, s in up.items() if k != ref and k.endswith("21-pt")]
        worst, mism = check_answers(order, texts[:args.check_texts])
        check = {"texts": args.check_texts, "ref": VARIANTS[ref]["server"], "worst": worst,
                 "mismatches": mism}
        print(f"# answers: {json.dumps(check)}", flush=True)
        if mism or worst > TOL:
            sys.exit(f"inferd's .pt answers differ from {ref}'s: {check}")
        seg = copy.copy(args)
        seg.duration = args.duration / args.rounds
        parts = {}
        for rnd in range(args.rounds):
            for name in benchlib.rotated(servers, rnd):
                for d in args.drivers.split(","):
                    print(f"# round {rnd + 1}/{args.rounds}: {name} {d}", flush=True)
                    srv = up[name]
                    try:
                        rec = bt.measure(srv, d, seg, texts_file, body_text,
                                         f"torch_{name}_{d}_r{rnd}")
                    except Exception as e:  # noqa: BLE001  keep going with the others
                        rec = bt.error_record(srv, name, d, e)
                    parts.setdefault((name, d), []).append(rec)
                    print("# " + json.dumps(bt.public(rec)), flush=True)
    finally:
        for srv in up.values():
            bt.stop_server(srv)
    runs = [bt.merge_rounds(parts[(name, d)]) for name in servers
            for d in args.drivers.split(",") if (name, d) in parts]
    elapsed = time.time() - t0
    with open(os.path.join(bt.OUT, "torch.json"), "w") as fh:
        json.dump({"args": args.argv, "started": started, "elapsed_s": elapsed, "check": check,
                   "runs": runs, "rounds": bt.public_rounds(parts)}, fh, indent=1)
    text = markdown(runs, args, started, elapsed, check)
    if not args.no_write:
        benchlib.write_section(args.results, text, "bench-torch")
    print(text)


if __name__ == "__main__":
    main()
