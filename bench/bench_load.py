#!/usr/bin/python3
"""make bench-load (issue #5): how fast a model comes back into memory.

For the peers' small and base models (../shared/peers/make_models.py), median of --reps loads
each, interleaved in one run:

  inferd, from the load cache   `inferd perf MODEL --cache FILE --load-reps N` after one load
                                that wrote FILE: packed weights and constants mapped from it
  inferd, from ONNX             `inferd perf MODEL --load-reps N`: parse, pack, no cache
  inferd server, reload         a server with two versions of the model and --max-loaded 1:
                                every request to the other model evicts one and reloads the
                                other from its cache (inferd_model_load_duration_seconds:
                                the whole load on the loader thread, pipeline and queue
                                included), and the latency of that request
  ONNX Runtime 1.30             InferenceSession.create (ort_bench.js --load-reps, graph
                                optimisation 'all'), the peers' node package
  torch.jit.load                TorchScript load + eval (engine_bench.py, torch-t1-malloc)

The targets from the issue: a reload of the small model under 20 ms, of base under 200 ms.
Files are read from the page cache in every case (each is loaded once before timing).

  /usr/bin/python3 bench/bench_load.py                  # ~3 min
  /usr/bin/python3 bench/bench_load.py --sizes small --reps 5 --no-write

Results: a section of bench/RESULTS.md between <!-- bench-load:start --> and
<!-- bench-load:end -->, and bench/out/load.json.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_engine as be  # noqa: E402
import benchlib  # noqa: E402
from benchlib import median  # noqa: E402

OUT = benchlib.OUT


def inferd_perf_loads(model, reps, cache=None):
    cmd = [be.INFERD, "perf", model, "--load-reps", str(reps), "--seconds", "0.05", "--batch",
           "1", "--seq", "8"]
    if cache:
        cmd += ["--cache", cache]
    recs = be.json_lines(cmd)
    load = next((r for r in recs if r["kind"] == "load"), None)
    return load and load["load_ms"], load and load.get("cache")


def ort_loads(model, reps):
    env = dict(os.environ, NODE_PATH=os.path.join(be.PEERS, "node_modules"))
    env.pop("OPENBLAS_CORETYPE", None)
    recs = be.json_lines(["node", os.path.join(be.SHARED, "ort-node", "ort_bench.js"), "--model",
                          model, "--intra", "1", "--inter", "1", "--batches", "1", "--seqs", "8",
                          "--min-time", "0.05", "--max-time", "0.2", "--min-runs", "1",
                          "--load-reps", str(reps)], env=env)
    load = next((r for r in recs if r["kind"] == "load"), None)
    return load and load["load_ms"]


def torch_loads(models, size, reps):
    out = os.path.join(OUT, f"load_torch_{size}.jsonl")
    if os.path.exists(out):
        os.remove(out)
    subprocess.run([be.PY, os.path.join(be.SHARED, "engine_bench.py"), "--models", models,
                    "--variants", "torch-t1-malloc", "--sizes", size, "--batches", "1", "--seqs",
                    "8", "--min-time", "0.05", "--max-time", "0.2", "--min-runs", "1",
                    "--load-reps", str(reps), "--out", out],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=3600)
    recs = [json.loads(l) for l in open(out) if l.strip()] if os.path.exists(out) else []
    load = next((r for r in recs if r["kind"] == "load"), None)
    return load and load["load_ms"]


def http(url, data=None, timeout=60):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def server_reloads(model, size, reps):
    """Two versions of the model (hard links) in a repository, --max-loaded 1: alternating
    requests make every request a reload from the version's cache."""
    repo = os.path.join(OUT, f"load_repo_{size}")
    shutil.rmtree(repo, ignore_errors=True)
    for name in ("a", "b"):
        os.makedirs(os.path.join(repo, name, "1"))
        os.link(model, os.path.join(repo, name, "1", "model.onnx"))
    port = benchlib.free_port()
    log = open(os.path.join(OUT, f"load_server_{size}.log"), "w")
    proc = subprocess.Popen([be.INFERD, "serve", "--repo", repo, "--http-port", str(port),
                             "--max-loaded", "1", "--threads", "2"], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    ids = [101] + [1000 + 37 * i % 20000 for i in range(30)] + [102]
    body = json.dumps({"inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [1, 32], "data": ids},
        {"name": "attention_mask", "datatype": "INT64", "shape": [1, 32], "data": [1] * 32}]})
    try:
        for _ in range(200):
            try:
                if http(url + "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        # First round writes both caches; then every request is a reload.
        for name in ("a", "b"):
            http(f"{url}/v2/models/{name}/infer", body.encode())
        m0 = http(url + "/metrics")[1].decode()
        n0 = metric(m0, "inferd_model_load_duration_seconds_count")
        s0 = metric(m0, "inferd_model_load_duration_seconds_sum")
        lat = []
        for i in range(reps):
            t = time.perf_counter()
            http(f"{url}/v2/models/{'ab'[i % 2]}/infer", body.encode())
            lat.append((time.perf_counter() - t) * 1e3)
        m1 = http(url + "/metrics")[1].decode()
        n = metric(m1, "inferd_model_load_duration_seconds_count") - n0
        s = metric(m1, "inferd_model_load_duration_seconds_sum") - s0
        hits = metric(m1, "inferd_load_cache_hits_total")
        loads = [float(x) for x in re.findall(r"loaded in ([0-9.]+) ms, cache hit",
                                             open(log.name).read())]
        return {"load_ms": loads, "mean_load_ms": 1e3 * s / n if n else None, "loads": n,
                "cache_hits": hits, "request_ms": lat}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
        shutil.rmtree(repo, ignore_errors=True)


def fmt(x, nd=1):
    return benchlib.fmt(x, nd)


def markdown(res, args, started, elapsed):
    L = ["<!-- bench-load:start -->",
         "## Loading a model back into memory (`make bench-load`, issue #5)",
         "",
         benchlib.command_line("bench_load.py", args.argv),
         f"Run {started}, {elapsed / 60:.0f} min, on this machine (2 cores, shared and noisy). "
         f"Median of {args.reps} loads of the peers' models (files in the page cache), 1 "
         "thread. **inferd, cache**: `inferd perf --cache` after the load that wrote the cache "
         "(packed weights and constants mapped, the ONNX skeleton parsed); **from ONNX**: no "
         "cache; **server reload**: a request to a version evicted by `--max-loaded 1`, loaded "
         "again from its cache on the loader thread (pipeline-less; queue created), as the "
         "server logs it, and the whole request's latency; **ORT**: `InferenceSession.create` "
         "(graph optimisation `all`); **torch**: `torch.jit.load` + `eval()`. Targets: small "
         "< 20 ms, base < 200 ms.",
         "",
         *benchlib.table_head("model", "file MB", "inferd, cache ms", "inferd, from ONNX ms",
                              "server reload ms (request ms)", "ORT session ms",
                              "torch.jit.load ms", "ORT / inferd cache",
                              "torch / inferd cache")]
    for size in args.sizes:
        r = res.get(size, {})
        c = median(r.get("inferd_cache") or [])
        o = median(r.get("inferd_onnx") or [])
        srv = r.get("server") or {}
        s = median(srv.get("load_ms") or [])
        q = median(srv.get("request_ms") or [])
        ort = median(r.get("ort") or [])
        tj = median(r.get("torch") or [])
        L.append(f"| {size} | {fmt(r.get('mb'), 0)} | **{fmt(c)}** | {fmt(o)} | "
                 f"{fmt(s)} ({fmt(q)}) | {fmt(ort)} | {fmt(tj)} | "
                 f"{fmt(ort / c if ort and c else None)}x | "
                 f"{fmt(tj / c if tj and c else None)}x |")
    L += ["", "<!-- bench-load:end -->"]
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,base")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-ort", action="store_true")
    ap.add_argument("--results", default=benchlib.RESULTS)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    args.sizes = args.sizes.split(",")
    os.makedirs(OUT, exist_ok=True)
    models = be.ensure_peers(args.sizes)
    started = benchlib.utc_now()
    t0 = time.time()
    res = {}
    for size in args.sizes:
        onnx = os.path.join(models, size + ".onnx")
        r = res.setdefault(size, {"mb": os.path.getsize(onnx) / 1e6})
        cache = os.path.join(OUT, f"load_{size}.cache")
        if os.path.exists(cache):
            os.remove(cache)
        inferd_perf_loads(onnx, 1, cache)  # writes the cache (and reads the file once)
        r["inferd_cache"], status = inferd_perf_loads(onnx, args.reps, cache)
        assert status == "hit", status
        r["inferd_onnx"], _ = inferd_perf_loads(onnx, args.reps)
        r["server"] = server_reloads(onnx, size, args.reps * 2)
        if not args.no_ort:
            r["ort"] = ort_loads(onnx, args.reps)
        if not args.no_torch:
            r["torch"] = torch_loads(models, size, args.reps)
        os.remove(cache)
        print(f"# {size}: " + json.dumps({k: (median(v) if isinstance(v, list) else v)
                                           for k, v in r.items() if k != "server"})
              + f" server {json.dumps({k: median(v) if isinstance(v, list) else v for k, v in r['server'].items()})}",
              flush=True)
    with open(os.path.join(OUT, "load.json"), "w") as f:
        json.dump({"args": args.argv, "started": started, "results": res}, f, indent=1)
    text = markdown(res, args, started, time.time() - t0)
    if not args.no_write:
        benchlib.write_section(args.results, text, "bench-load")
    print(text)


if __name__ == "__main__":
    main()
