#!/usr/bin/python3
"""make bench-text: the production scenario inferd is built for. 21 text classifiers for one
task (21 copies of the peers' small BERT-shaped model), the peers' character tokenizer, random
Chinese texts of 20-120 characters, 16 concurrent users, CPU only; inferd's text API against
the three peer servers of ../shared/peers/servers, each at its best setting, in one run.

Every server is started on a free loopback port, waited for and warmed up (each model once);
they all stay up (idle ones use no CPU) while the load goes to one at a time: --rounds rounds,
the servers taking turns in an order that rotates every round, each turn being
  * Locust 2.12, headless, --users closed-loop users for --warmup + --duration/--rounds s
    (bench/locustfile.py: a random model and a random text of the pool per request);
  * `inferd bench` (closed loop, --users connections, one fixed ~70-character text to m00)
    for the same time, as a second driver with a load generator written in C.
The machine is shared with other work that comes and goes; taking turns spreads it over every
server alike (the per-round QPS are in the table). Meanwhile, from this process: GET of the health endpoint every --ready-interval s on a new
connection (as an orchestrator's probe does), and the server's process tree sampled every
0.5 s with psutil (CPU%, 100 = one core; largest thread count). inferd's batch-size histogram
is the difference of /metrics before and after the Locust run. Results: a section of
bench/RESULTS.md between <!-- bench-text:start --> and <!-- bench-text:end -->, and every
number in bench/out/text.json.

  /usr/bin/python3 bench/bench_text.py                          # everything, ~16 min
  /usr/bin/python3 bench/bench_text.py --duration 15 --servers node,inferd21 --no-write

Servers (--servers, in this order by default: gunicorn,tornado,node,inferd21,inferd1):
  gunicorn         Flask+Gunicorn: 2 sync workers, torch 1 thread each, LRU of 8 per worker
                   (run_server.sh defaults; the peers' README names no better setting)
  gunicorn-malloc  the same with glibc's malloc thresholds raised (MALLOC_TUNED=1)
  tornado          Tornado+TorchScript tuned: OMP_WAIT_POLICY=PASSIVE, MALLOC_TUNED=1
                   (the "92 QPS" setting of the README)
  tornado-default  Tornado+TorchScript as run_server.sh starts it
  node             Node.js+ONNX Runtime with ORT_SPIN=0 (the "155 QPS" setting)
  node-spin        Node.js+ONNX Runtime as run_server.sh starts it (spinning thread pools)
  inferd21         inferd on bench/.peers/text_repo21 (bench/make_text_repo.py)
  inferd1          inferd on bench/.peers/text_repo1 (one model: the 21-vs-1 ratio)
  inferd21-nice0   inferd21 with --worker-nice 0 (on a machine shared with other work, nice-10
                   workers get a small share of the CPU against others' nice-0 processes)
  inferd21-kserve  inferd on text_repo21 through KServe v2 infer (POST /v2/models/M/infer,
  inferd1-kserve   JSON tensors), the client tokenizing with the peers' chartok.py: the same
                   work minus the server-side tokenizer, usable before the text API exists
Every server runs under `taskset -c 0,1` (run_server.sh pins the peers; inferd is pinned the
same way). The load generators run unpinned on the same two cores: their CPU% is reported.
"""
import argparse
import copy
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import pct  # noqa: E402

ROOT = benchlib.ROOT
SHARED = benchlib.SHARED
PEERS = benchlib.PEERS
OUT = benchlib.OUT
RUN_SERVER = os.path.join(SHARED, "servers", "run_server.sh")
LOCUST = "/usr/bin/locust"
PY = benchlib.PY
sys.path.insert(0, os.path.join(SHARED, "servers"))
import make_text_repo  # noqa: E402
import text_pool  # noqa: E402

MALLOC = {"MALLOC_TUNED": "1"}
VARIANTS = {
    "gunicorn": dict(kind="peer", peer="gunicorn", server="Flask+Gunicorn",
                     setting="2 workers x 1 thread, LRU 8", env={}),
    "gunicorn-malloc": dict(kind="peer", peer="gunicorn", server="Flask+Gunicorn",
                            setting="2 workers x 1 thread, LRU 8, malloc tuned", env=MALLOC),
    "tornado": dict(kind="peer", peer="tornado", server="Tornado+TorchScript",
                    setting="2 threads, OMP passive, malloc tuned",
                    env=dict(OMP_WAIT_POLICY="PASSIVE", **MALLOC)),
    "tornado-default": dict(kind="peer", peer="tornado", server="Tornado+TorchScript",
                            setting="2 threads (run_server.sh defaults)", env={}),
    "node": dict(kind="peer", peer="node", server="Node.js+ONNX Runtime",
                 setting="intra 2, ORT_SPIN=0", env={"ORT_SPIN": "0"}),
    "node-spin": dict(kind="peer", peer="node", server="Node.js+ONNX Runtime",
                      setting="intra 2, spinning (defaults)", env={}),
    "inferd21": dict(kind="inferd", repo="text_repo21", server="inferd",
                     setting="defaults (workers at nice 10)"),
    "inferd1": dict(kind="inferd", repo="text_repo1", server="inferd",
                    setting="defaults (workers at nice 10)"),
    "inferd21-nice0": dict(kind="inferd", repo="text_repo21", server="inferd",
                           setting="workers at nice 0", args=["--worker-nice", "0"]),
    "inferd21-kserve": dict(kind="inferd", target="kserve", repo="text_repo21", server="inferd",
                            setting="KServe v2 infer, client tokenizes"),
    "inferd1-kserve": dict(kind="inferd", target="kserve", repo="text_repo1", server="inferd",
                           setting="KServe v2 infer, client tokenizes"),
}
DEFAULT_SERVERS = "gunicorn,tornado,node,inferd21,inferd1"


# ---------------------------------------------------------------------------------------------
# servers

class Server:
    def __init__(self, name, variant, models, proc, port, log):
        self.name, self.variant, self.models = name, variant, models
        self.proc, self.port, self.log = proc, port, log
        self.kind = variant["kind"]
        self.target = variant.get("target", self.kind)  # peer | inferd | kserve
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = "/v2/health/ready" if self.kind == "inferd" else "/ready"


def peer_repo_for(n):
    return make_text_repo.peer_repo(n)


def inferd_variant(repo, binary=None, target="inferd"):
    return dict(kind="inferd", target=target, repo=repo, server="inferd", setting="defaults",
                binary=binary)


def start_server(variant, peer_repo, name=None, binary=None, extra_args=(), timeout=600):
    """Starts a server in its own session, waits until its health endpoint answers 200."""
    os.makedirs(OUT, exist_ok=True)
    port = benchlib.free_port()
    name = name or variant.get("peer") or "inferd"
    log = os.path.join(OUT, f"text_{name}.log")
    logf = open(log, "w")
    env = dict(os.environ)
    if variant["kind"] == "peer":
        env["NODE_PATH"] = os.path.join(PEERS, "node_modules")
        env.update(variant["env"])
        cmd = [RUN_SERVER, variant["peer"], str(port), peer_repo]
        models = len([f for f in os.listdir(peer_repo) if f.endswith(".onnx")])
    else:
        repo = variant["repo"]
        repo = repo if os.path.isabs(repo) else os.path.join(PEERS, repo)
        inferd = binary or variant.get("binary") or benchlib.INFERD
        cmd = ["taskset", "-c", "0,1", inferd, "serve", "--repo", repo, "--http-port", str(port),
               *variant.get("args", ()), *extra_args]
        models = len([d for d in os.listdir(repo) if not d.startswith(".")])
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    srv = Server(name, variant, models, proc, port, log)
    srv.cmd = cmd
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}:\n"
                               + open(log).read()[-2000:])
        try:
            st, _ = http_get(srv.url, srv.ready_path, timeout=2)
            if st == 200:
                srv.start_s = time.time() - t0
                return srv
        except OSError:
            pass
        time.sleep(0.25)
    stop_server(srv)
    raise RuntimeError(f"{name} not ready after {timeout} s; see {log}")


def stop_server(srv):
    """SIGTERM to the server's process group (gunicorn: master and workers), then SIGKILL."""
    if srv.proc.poll() is None:
        try:
            os.killpg(srv.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            srv.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(srv.proc.pid, signal.SIGKILL)
            srv.proc.wait()


def http_get(url, path, timeout=10.0):
    host, port = url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def http_post(url, path, body, timeout=60.0):
    host, port = url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request("POST", path, body=body.encode(), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def request_for(srv, model, text):
    if srv.target == "kserve":
        import chartok  # noqa: E402  (../shared/peers/servers)
        ids = chartok.encode(text)
        n = len(ids)
        return f"/v2/models/{model}/infer", json.dumps({"inputs": [
            {"name": "input_ids", "datatype": "INT64", "shape": [1, n], "data": ids},
            {"name": "attention_mask", "datatype": "INT64", "shape": [1, n], "data": [1] * n}]})
    if srv.target == "inferd":
        return f"/v1/models/{model}:predict", json.dumps({"text": text}, ensure_ascii=False)
    return "/predict", json.dumps({"model": model, "text": text}, ensure_ascii=False)


def predict(srv, model, text):
    """One request; the answer as the peers give it: {"label": class index, "score": p}."""
    path, body = request_for(srv, model, text)
    st, data = http_post(srv.url, path, body)
    if st != 200:
        raise RuntimeError(f"{srv.name} {path}: HTTP {st}: {data[:300]!r}")
    d = json.loads(data)
    if srv.target == "kserve":
        lg = d["outputs"][0]["data"]
        mx = max(lg)
        arg = lg.index(mx)
        return {"label": arg, "score": 1.0 / sum(math.exp(x - mx) for x in lg)}
    if srv.kind == "peer":
        return {"label": int(d["label"]), "score": float(d["score"])}
    p = d["predictions"][0] if "predictions" in d else d
    label = p["label"]
    if isinstance(label, str) and label.startswith("label_"):
        label = label[len("label_"):]
    return {"label": int(label), "score": float(p["score"])}


# ---------------------------------------------------------------------------------------------
# measuring

class Sampler(threading.Thread):
    """CPU seconds and threads of a process tree, every `interval` s."""

    def __init__(self, pid, interval=0.5):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.samples = []  # (time, cpu seconds of the tree, threads of the tree)
        self.stop_ev = threading.Event()

    def sample(self):
        cpu = thr = 0
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    cpu += t.user + t.system
                    thr += p.num_threads()
            except psutil.NoSuchProcess:
                pass
        st = psutil.cpu_times()
        busy = sum(st) - st.idle - getattr(st, "iowait", 0)
        self.samples.append((time.time(), cpu, thr, busy))

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()
        self.sample()

    def over(self, start, end, machine=False):
        """(CPU% of the tree over [start, end], most threads seen in it[, the machine's busy
        CPU% over it, all processes: 200 = both cores])."""
        s = [x for x in self.samples if start - self.interval <= x[0] <= end + self.interval]
        if len(s) < 2:
            return (None, None, None) if machine else (None, None)
        a = min(s, key=lambda x: abs(x[0] - start))
        b = min(s, key=lambda x: abs(x[0] - end))
        dt = b[0] - a[0]
        cpu = 100.0 * (b[1] - a[1]) / dt if dt > 0 else None
        if machine:
            return cpu, max(x[2] for x in s), 100.0 * (b[3] - a[3]) / dt if dt > 0 else None
        return cpu, max(x[2] for x in s)


class ReadyProbe(threading.Thread):
    """GET of the health endpoint on a new connection every `interval` s, at a fixed rate (a
    probe that is still waiting does not delay the next one, as with an orchestrator's
    periodic probes); at most `max_open` probes wait at once."""

    def __init__(self, srv, interval, max_open=50):
        super().__init__(daemon=True)
        self.srv, self.interval, self.max_open = srv, interval, max_open
        self.records = []  # (time sent, ms, status; 0 = error or timeout)
        self.stop_ev = threading.Event()
        self.open = threading.Semaphore(max_open)
        self.lock = threading.Lock()
        self.threads = []

    def one(self):
        sent, t = time.time(), time.perf_counter()
        try:
            st, _ = http_get(self.srv.url, self.srv.ready_path, timeout=10)
        except OSError:
            st = 0
        with self.lock:
            self.records.append((sent, (time.perf_counter() - t) * 1e3, st))
        self.open.release()

    def run(self):
        due = time.time()
        while not self.stop_ev.is_set():
            if self.open.acquire(blocking=False):
                th = threading.Thread(target=self.one, daemon=True)
                th.start()
                self.threads.append(th)
            else:  # max_open probes already waiting: count this one as failed
                with self.lock:
                    self.records.append((time.time(), 10e3, 0))
            due += self.interval
            self.stop_ev.wait(max(0.0, due - time.time()))

    def stop(self):
        self.stop_ev.set()
        self.join()
        for th in self.threads:
            th.join(11)


def lat_summary(ms):
    v = sorted(ms)
    return {"n": len(v), "p50": pct(v, .5), "p95": pct(v, .95), "p99": pct(v, .99),
            "max": v[-1] if v else None, "mean": sum(v) / len(v) if v else None}


def metrics(srv):
    """inferd's batch-size histogram summed over models: {le: count}, plus sum and count."""
    try:
        st, data = http_get(srv.url, "/metrics")
    except OSError:
        return None
    if st != 200:
        return None
    h = {"buckets": {}, "sum": 0, "count": 0, "threads": None}
    for line in data.decode().splitlines():
        if line.startswith("inferd_batch_size_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            h["buckets"][le] = h["buckets"].get(le, 0) + int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("inferd_batch_size_sum{"):
            h["sum"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("inferd_batch_size_count{"):
            h["count"] += int(float(line.rsplit(" ", 1)[1]))
    return h


def metrics_diff(a, b):
    if not a or not b:
        return None
    les = list(b["buckets"])
    cum = [b["buckets"][le] - a["buckets"].get(le, 0) for le in les]
    per, prev = {}, 0
    for le, c in zip(les, cum):
        per[le] = c - prev
        prev = c
    n = b["count"] - a["count"]
    return {"per_bucket": per, "batches": n, "rows": b["sum"] - a["sum"],
            "mean": (b["sum"] - a["sum"]) / n if n else None}


def warm_up(srv, texts):
    """Every model once (loads lazily loading servers' first copies), untimed."""
    for i in range(srv.models):
        predict(srv, f"m{i:02d}", texts[i % len(texts)])


def run_locust(srv, args, texts_file, tag):
    out = os.path.join(OUT, f"locust_{tag}.json")
    if os.path.exists(out):
        os.remove(out)
    env = dict(os.environ, BENCH_TARGET=srv.target, BENCH_MODELS=str(srv.models),
               BENCH_TEXTS=texts_file, BENCH_WARMUP=str(args.warmup), BENCH_OUT=out,
               BENCH_DIST=getattr(args, "dist", "uniform"))
    cmd = [LOCUST, "-f", os.path.join(ROOT, "bench", "locustfile.py"), "--headless",
           "-u", str(args.users), "-r", str(args.users),
           "-t", f"{math.ceil(args.warmup + args.duration)}s", "-H", srv.url, "--only-summary", "--loglevel", "WARNING"]
    with open(os.path.join(OUT, f"locust_{tag}.log"), "w") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        return p, out


def measure(srv, driver, args, texts_file, body_text, tag):
    """One driver against one running server; returns the run's record."""
    sampler, probe = Sampler(srv.proc.pid), ReadyProbe(srv, args.ready_interval)
    before = metrics(srv) if srv.kind == "inferd" else None
    sampler.start()
    probe.start()
    t_launch = time.time()
    if driver == "locust":
        p, out = run_locust(srv, args, texts_file, tag)
    else:
        path, body = request_for(srv, "m00", body_text)
        bfile = os.path.join(OUT, f"body_{srv.target}.json")
        with open(bfile, "w", encoding="utf-8") as f:
            f.write(body)
        inferd = args.inferd_bench_binary or benchlib.INFERD
        cmd = [inferd, "bench", "--url", srv.url, "--path", path, "--body-file", bfile,
               "--concurrency", str(args.users), "--duration", str(args.duration),
               "--warmup", str(args.warmup), "--timeout", "60", "--json", "--quiet"]
        out = os.path.join(OUT, f"inferd_bench_{tag}.json")
        p = subprocess.Popen(cmd, stdout=open(out, "w"), stderr=subprocess.PIPE, text=True)
    gen = Sampler(p.pid)
    gen.start()
    rc = p.wait(timeout=args.warmup + args.duration + 300)
    gen.stop()
    probe.stop()
    sampler.stop()
    after = metrics(srv) if srv.kind == "inferd" else None
    rec = {"server": srv.variant["server"], "variant": srv.name, "setting": srv.variant["setting"],
           "kind": srv.kind, "target": srv.target, "models": srv.models, "driver": driver, "users": args.users, "rc": rc,
           "start_s": round(srv.start_s, 1)}
    if driver == "locust":
        if not os.path.exists(out):  # (locust exits 1 whenever a request failed)
            rec["error"] = f"locust exited {rc}; see bench/out/locust_{tag}.log"
            return rec
        d = json.load(open(out))
        start, end = d["window"]
        lat = [r[1] for r in d["requests"]]
        ok = sum(1 for r in d["requests"] if r[2] == 200)
        errors = {}
        for r in d["requests"]:
            if r[2] != 200:
                errors[str(r[2])] = errors.get(str(r[2]), 0) + 1
        rec.update(qps=ok / (end - start), requests=len(lat), ok=ok, errors=errors,
                   latency=lat_summary(lat), window=end - start, _lat=lat)
    else:
        err = p.stderr.read()
        try:
            d = json.loads(open(out).read().strip().splitlines()[-1])
        except (IndexError, ValueError):
            rec["error"] = f"inferd bench exited {rc}: {err[-500:]}"
            return rec
        start = t_launch + args.warmup  # inferd bench starts measuring after its warm-up
        end = start + args.duration
        rec.update(qps=d["qps"], requests=d["requests"], ok=d["ok"], errors=d.get("errors", {}),
                   latency={"p50": d["p50"], "p95": d["p95"], "p99": d["p99"], "max": d["max"],
                            "mean": d["mean"], "n": d["requests"]},
                   window=d["duration"])
    rec["cpu"], rec["threads"], rec["machine_cpu"] = sampler.over(start, end, machine=True)
    rec["gen_cpu"], _ = gen.over(start, end)
    if None not in (rec["cpu"], rec["gen_cpu"], rec["machine_cpu"]):
        rec["other_cpu"] = rec["machine_cpu"] - rec["cpu"] - rec["gen_cpu"]
    rec["loadavg"] = os.getloadavg()[0]
    rd = [r for r in probe.records if start <= r[0] <= end]
    rec["ready"] = lat_summary([r[1] for r in rd])
    rec["ready"]["failed"] = sum(1 for r in rd if r[2] != 200)
    rec["ready"]["over_1s"] = sum(1 for r in rd if r[1] > 1000)
    rec["_ready"] = [r[1] for r in rd]
    rec["batch"] = metrics_diff(before, after)
    rec["drain_s"] = drain(srv)
    return rec


def drain(srv, idle_pct=10.0, timeout=180.0):
    """Waits until the server has finished the requests the load generator left behind when it
    stopped (a sync Gunicorn worker still runs every request in its backlog): until its process
    tree uses less than idle_pct CPU over a second. Returns the seconds waited."""
    t0 = time.time()
    try:
        procs = [psutil.Process(srv.proc.pid)] + psutil.Process(srv.proc.pid).children(True)
    except psutil.NoSuchProcess:
        return 0.0
    while time.time() - t0 < timeout:
        a = sum(sum(p.cpu_times()[:2]) for p in procs if p.is_running())
        time.sleep(1.0)
        b = sum(sum(p.cpu_times()[:2]) for p in procs if p.is_running())
        if 100.0 * (b - a) < idle_pct:
            break
    return round(time.time() - t0, 1)


def public(rec):
    """A run's record without its raw latency lists."""
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def public_rounds(parts):
    """The records of every round, {(server, driver): [record, ...]}, as the JSON output
    keeps them: {"server driver": [public record, ...]}."""
    return {f"{k[0]} {k[1]}": [public(r) for r in v] for k, v in parts.items()}


def error_record(srv, name, driver, e):
    """The record of a turn of `driver` against server `name` that failed with e."""
    return {"server": srv.variant["server"], "variant": name, "setting": srv.variant["setting"],
            "kind": srv.kind, "models": srv.models, "driver": driver, "error": str(e)[:200]}


def merge_rounds(recs):
    """One record for the rounds of one server and driver: requests, windows and CPU seconds
    added up, latency percentiles over every request (Locust) or, for `inferd bench`, which
    reports only percentiles, their request-weighted mean (max: the largest)."""
    good = [r for r in recs if "error" not in r]
    if not good:
        return recs[0]
    out = public(good[0])
    w = sum(r["window"] for r in good)
    out.update(rounds=len(good), window=w, ok=sum(r["ok"] for r in good),
               requests=sum(r["requests"] for r in good),
               qps_rounds=[r["qps"] for r in good], failed_rounds=len(recs) - len(good))
    out["qps"] = out["ok"] / w
    errors = {}
    for r in good:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    out["errors"] = errors
    if all("_lat" in r for r in good):
        out["latency"] = lat_summary([x for r in good for x in r["_lat"]])
    else:
        n = sum(r["latency"]["n"] for r in good) or 1
        out["latency"] = {k: sum(r["latency"][k] * r["latency"]["n"] for r in good) / n
                          for k in ("p50", "p95", "p99", "mean")}
        out["latency"].update(n=n, max=max(r["latency"]["max"] for r in good))
    for k in ("cpu", "gen_cpu", "other_cpu", "machine_cpu"):
        xs = [(r[k], r["window"]) for r in good if r.get(k) is not None]
        out[k] = sum(x * t for x, t in xs) / sum(t for _, t in xs) if xs else None
    out["threads"] = max((r["threads"] for r in good if r.get("threads")), default=None)
    rd = [x for r in good for x in r["_ready"]]
    out["ready"] = lat_summary(rd)
    out["ready"]["failed"] = sum(r["ready"]["failed"] for r in good)
    out["ready"]["over_1s"] = sum(r["ready"]["over_1s"] for r in good)
    bs = [r["batch"] for r in good if r.get("batch")]
    if bs:
        per = {}
        for b in bs:
            for le, c in b["per_bucket"].items():
                per[le] = per.get(le, 0) + c
        n, rows = sum(b["batches"] for b in bs), sum(b["rows"] for b in bs)
        out["batch"] = {"per_bucket": per, "batches": n, "rows": rows,
                        "mean": rows / n if n else None}
    return out


# ---------------------------------------------------------------------------------------------
# report

f = benchlib.fmt


def check(ok):
    return "**yes**" if ok else "**no**"


def markdown(runs, args, started, elapsed, pool_source):
    L = ["<!-- bench-text:start -->",
         "## Text API, 21 classifiers, 16 users: inferd vs the peer servers (`make bench-text`)",
         "",
         benchlib.command_line("bench_text.py", args.argv),
         f"Run {started}" + (f", {elapsed / 60:.0f} min" if elapsed else "") + ", on this machine (2 cores, shared with other "
         "work and noisy: compare within the run).",
         f"Scenario: {args.models21} copies of the peers' small model (4 layers, hidden 312, 30 "
         "labels) behind each server's text endpoint, the peers' char tokenizer (inferd: "
         "`pipeline.json`, bench/make_text_repo.py), Chinese texts of 20-120 characters "
         f"({pool_source}, {args.texts} texts, seed {args.seed}), {args.users} closed-loop "
         f"users, {args.duration:g} s measured per server and driver, as {args.rounds} turns of "
         f"{args.warmup:g} s warm-up + {args.duration / args.rounds:g} s, the servers taking "
         "turns in a rotating order while all are up (idle ones use no CPU), so that other "
         "work on this shared machine weighs on all alike. Every server runs under "
         "`taskset -c 0,1`; the load generator shares those two cores (its CPU% is the "
         "`gen CPU%` column).",
         f"inferd's repositories (bench/make_text_repo.py): `max_batch_size` {args.max_batch}, "
         f"`max_queue_delay_us` {args.delay_us}, "
         + (f"`pad_dims` with `length_buckets` [{args.buckets}]" if args.buckets
            else "no padding") + "; `inferd serve` flags at their defaults (2 cores: "
         "`--threads 2`, workers at `--worker-nice 10`) unless the setting says otherwise.",
         "",
         "- **locust**: Locust 2.12 headless (`bench/locustfile.py`, FastHttpUser), a random "
         "model and a random text per request. **inferd bench**: `build/inferd bench`, "
         f"{args.users} keep-alive connections, one fixed text to model m00 (so every request "
         "hits one model, whatever the repository; its percentiles are the request-weighted "
         "mean of the turns').",
         f"- **/ready**: GET `/ready` (peers) or `/v2/health/ready` (inferd) every "
         f"{args.ready_interval:g} s on a new connection, from the benchmark's own process, "
         "during the measured window.",
         "- **CPU%**: the server's process tree (100 = one core), psutil; **threads**: the "
         "most the tree held (gunicorn: master + workers); **gen CPU%**: the load generator's; "
         "**other CPU%**: everything else on the machine meanwhile (other people's work: the "
         "2 cores give 200 in all).",
         "",
         *benchlib.table_head("server", "setting", "models", "driver", "QPS", "QPS per turn",
                              "p50 ms", "p95 ms", "p99 ms", "errors",
                              "/ready p50 / p99 / max ms", "CPU%", "threads", "gen CPU%",
                              "other CPU%")]
    for r in runs:
        if "error" in r:
            L.append(f"| {r['server']} | {r['setting']} | {r['models']} | {r['driver']} | "
                     f"failed: {r['error']} | | | | | | | | | | |")
            continue
        lat, rd = r["latency"], r["ready"]
        errs = sum(r["errors"].values()) if r["errors"] else 0
        L.append(f"| {r['server']} | {r['setting']} | {r['models']} | {r['driver']} | "
                 f"**{f(r['qps'], 1)}** | "
                 + " ".join(f(q) for q in r.get("qps_rounds", [])) + f" | {f(lat['p50'], 1)} | {f(lat['p95'], 1)} | "
                 f"{f(lat['p99'], 1)} | {errs} | {f(rd['p50'], 1)} / {f(rd['p99'], 1)} / "
                 f"{f(rd['max'], 1)} | {f(r['cpu'])} | {f(r['threads'])} | {f(r['gen_cpu'])} | "
                 f"{f(r.get('other_cpu'))} |")
    L.append("")
    batch = [r for r in runs if r.get("batch")]
    if batch:
        les = list(batch[0]["batch"]["per_bucket"])
        L.append("inferd's batch sizes during the run (batches per size bucket, from "
                 "`inferd_batch_size` in /metrics; warm-up included):")
        L.append("")
        L.append("| server | models | driver | batches | mean rows | "
                 + " | ".join(("<= " + le) if le != "+Inf" else "> 256" for le in les) + " |")
        L.append("|---|---|---|---|---|" + "---|" * len(les))
        for r in batch:
            b = r["batch"]
            L.append(f"| {r['variant']} | {r['models']} | {r['driver']} | {b['batches']} | "
                     f"{f(b['mean'], 2)} | "
                     + " | ".join(str(b["per_bucket"].get(le, 0)) for le in les) + " |")
        L.append("")
    loc = {r["variant"]: r for r in runs if r["driver"] == "locust" and "error" not in r}
    peers = [r for r in loc.values() if r.get("kind") == "peer"]
    if peers:
        best = max(peers, key=lambda r: r["qps"])
        for api, v21, v1 in (("text API", "inferd21", "inferd1"),
                             ("KServe v2, client-side tokenizer", "inferd21-kserve",
                              "inferd1-kserve")):
            i21, i1 = loc.get(v21), loc.get(v1)
            if not i21 and not (api == "text API" and v21 in args.servers.split(",")):
                continue
            L.append(f"Targets, inferd's {api} (Locust runs; best peer: {best['server']}, "
                     f"{best['setting']}, {f(best['qps'], 1)} QPS):")
            L.append("")
            L += benchlib.table_head("target", "measured", "met")
            if not i21:
                L.append(f"| all | `{v21}` not measured (see the table) | **no** |")
                L.append("")
                continue
            ratio = i21["qps"] / best["qps"]
            L.append(f"| QPS >= 1.7x the best peer's | {f(i21['qps'], 1)} / {f(best['qps'], 1)} "
                     f"= {ratio:.2f}x | {check(ratio >= 1.7)} |")
            L.append(f"| p95 <= 100 ms | {f(i21['latency']['p95'], 1)} ms | "
                     f"{check(i21['latency']['p95'] <= 100)} |")
            rp = i21["ready"]["p99"]
            L.append(f"| /ready p99 < 10 ms under load | {f(rp, 2)} ms | "
                     f"{check(rp is not None and rp < 10)} |")
            if i1:
                r21 = i21["qps"] / i1["qps"]
                L.append(f"| 21 models >= 0.9x one model's QPS | {f(i21['qps'], 1)} / "
                         f"{f(i1['qps'], 1)} = {r21:.2f}x | {check(r21 >= 0.9)} |")
            L.append("")
        for r in loc.values():
            if r.get("kind") == "inferd" and r["variant"] not in (
                    "inferd21", "inferd1", "inferd21-kserve", "inferd1-kserve"):
                L.append(f"`{r['variant']}` ({r['setting']}): {f(r['qps'], 1)} QPS = "
                         f"{r['qps'] / best['qps']:.2f}x the best peer, p95 "
                         f"{f(r['latency']['p95'], 1)} ms, /ready p99 "
                         f"{f(r['ready']['p99'], 2)} ms.")
                L.append("")
        L.append("Peers' /ready under the same load (Locust), p99: " + ", ".join(
            f"{r['server']} {f(r['ready']['p99'])} ms" for r in peers) + ".")
        L.append("")
    b21 = (loc.get("inferd21") or {}).get("batch")
    b1 = (loc.get("inferd1") or {}).get("batch")
    if b21 and b1 and b21["mean"] and b1["mean"]:
        L.append(f"Batching: under Locust the mean batch is {b21['mean']:.2f} rows with 21 models "
                 f"and {b1['mean']:.2f} with one. {args.users} users spread over 21 per-model "
                 "queues seldom leave two requests in one queue, so with 21 models inferd runs "
                 "mostly batches of one; `inferd bench`, which sends everything to m00, gets "
                 "full batches on either repository.")
        L.append("")
    spread = [max(r["qps_rounds"]) / min(r["qps_rounds"]) for r in runs
              if len(r.get("qps_rounds", [])) > 1 and min(r["qps_rounds"]) > 0]
    if spread:
        oth = [r["other_cpu"] for r in runs if r.get("other_cpu") is not None]
        L.append(f"Noise: one server's QPS differed up to {max(spread):.1f}x between its turns, "
                 f"while other work on the machine used {min(oth):.0f}-{max(oth):.0f}% CPU "
                 "(averages per server and driver; 200 = both cores). Ratios between servers "
                 "are the figures to trust, and only roughly.")
        L.append("")
    L.append("<!-- bench-text:end -->")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_options(
        ap, "--servers", "--drivers", "--duration", "--rounds", "--warmup", "--users", "--texts",
        "--seed", "--ready-interval", "--max-batch", "--delay-us", "--buckets", "--inferd",
        "--inferd-bench-binary",
        ("--inferd-args", dict(default="", help="extra `inferd serve` flags")),
        "--results", "--no-write",
        ("--report-only", dict(action="store_true",
                               help="run nothing: write the section again from "
                               "bench/out/text.json (pass the flags of the run it holds)")),
        servers=dict(default=DEFAULT_SERVERS,
                     help=f"comma-separated, from: {', '.join(VARIANTS)}"),
        rounds=dict(help="split each measurement into this many rounds, the servers taking "
                    "turns in a rotating order (other work on the machine then weighs on "
                    "every server alike)"),
        warmup=dict(help="unmeasured seconds before it"),
        texts=dict(help="size of the text pool"),
        max_batch=dict(help="inferd repos: max_batch_size"),
        delay_us=dict(help="inferd repos: max_queue_delay_us"),
        buckets=dict(help="inferd repos: length buckets"),
        no_write=dict(help="print, do not touch RESULTS.md"))
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    args.models21 = 21
    if args.report_only:
        d = json.load(open(os.path.join(OUT, "text.json")))
        args.argv = d["args"]
        text = markdown(d["runs"], args, d["started"], d.get("elapsed_s", 0),
                        d.get("pool_source", text_pool.text_pool_source()))
        if not args.no_write:
            benchlib.write_section(args.results, text, "bench-text")
        print(text)
        return
    servers = args.servers.split(",")
    drivers = args.drivers.split(",")
    benchlib.check_servers(servers, VARIANTS)
    os.makedirs(OUT, exist_ok=True)
    import bench_engine  # noqa: E402  makes the peers' models, installs onnxruntime-node
    bench_engine.ensure_peers(["small"])
    buckets = [int(b) for b in args.buckets.split(",") if b]
    for name, n in (("text_repo21", 21), ("text_repo1", 1)):
        make_text_repo.build(name, n, args.max_batch, args.delay_us, buckets)
    texts_file = os.path.join(OUT, "text_pool.json")
    texts = text_pool.write_pool(texts_file, args.texts, args.seed)
    pool_source = text_pool.text_pool_source()
    body_text = min(texts, key=lambda t: abs(len(t) - 70))
    started = benchlib.utc_now()
    t0 = time.time()
    started_srv, failed = {}, {}
    for name in servers:  # every server up at once; idle ones use no CPU
        v = VARIANTS[name]
        n = 1 if v.get("repo") == "text_repo1" else 21
        if v["kind"] == "inferd" and args.inferd_args:
            v = dict(v, setting=f"{v['setting']}; `{args.inferd_args}`")
        print(f"# {name}: starting", flush=True)
        try:
            srv = start_server(v, peer_repo_for(n), name=name, binary=args.inferd,
                               extra_args=args.inferd_args.split())
        except RuntimeError as e:
            print(f"# {name}: {e}", file=sys.stderr, flush=True)
            failed[name] = (v, n, "did not start (see bench/out/text_*.log)")
            continue
        try:
            warm_up(srv, texts)
            started_srv[name] = srv
        except Exception as e:
            print(f"# {name}: {e}", file=sys.stderr, flush=True)
            failed[name] = (v, n, str(e)[:200])
            stop_server(srv)
    seg = copy.copy(args)
    seg.duration = args.duration / args.rounds
    parts = {}
    try:
        for rnd in range(args.rounds):
            for name in benchlib.rotated(servers, rnd):  # a different order each round
                srv = started_srv.get(name)
                if srv is None:
                    continue
                for d in drivers:
                    print(f"# round {rnd + 1}/{args.rounds}: {name} {d} "
                          f"{seg.warmup:g}+{seg.duration:g} s", flush=True)
                    try:
                        rec = measure(srv, d, seg, texts_file, body_text, f"{name}_{d}_r{rnd}")
                    except Exception as e:  # keep going with the other servers
                        rec = error_record(srv, name, d, e)
                    parts.setdefault((name, d), []).append(rec)
                    print("# " + json.dumps(public(rec)), flush=True)
    finally:
        for srv in started_srv.values():
            stop_server(srv)
    runs = []
    for name in servers:
        for d in drivers:
            if name in failed:
                v, n, err = failed[name]
                runs.append({"server": v["server"], "variant": name, "setting": v["setting"],
                             "kind": v["kind"], "models": n, "driver": d, "error": err})
            elif (name, d) in parts:
                runs.append(merge_rounds(parts[(name, d)]))
    with open(os.path.join(OUT, "text.json"), "w") as fh:
        json.dump({"args": args.argv, "started": started, "elapsed_s": time.time() - t0,
                   "pool_source": pool_source, "runs": runs,
                   "rounds": public_rounds(parts)},
                  fh, indent=1)
    text = markdown(runs, args, started, time.time() - t0, pool_source)
    if not args.no_write:
        benchlib.write_section(args.results, text, "bench-text")
    print(text)


if __name__ == "__main__":
    main()
