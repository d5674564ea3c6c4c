#!/usr/bin/python3
"""Overload: open-loop load at twice the measured capacity, for 60 s (issue #6).

1. Starts `inferd serve` on a repository with one text classifier whose config.json turns
   admission control on: max_queue_size and default_timeout_us (the queue-wait timeout of
   requests that do not set their own). The model is the peers' BERT-small (4 layers, hidden
   312, made by ../shared/peers/make_models.py into bench/.peers/models/ if missing, ~20 s),
   so requests are compute-bound and the load generator's own CPU is small next to the
   server's; `--model fixture` uses the tiny engine fixture instead (HTTP-bound).
2. Capacity: a closed loop (`inferd bench --concurrency C`), requests per second.
3. Baseline: 3 s of lone requests from this script (latency when idle).
4. Overload: `inferd bench --rate 2*capacity` for 60 s while this script samples
   /v2/health/ready at ~20/s on its own keep-alive connection, the server's RSS at 5/s, and
   sends a probe infer request every 100 ms to time accepted and refused requests from the
   client's side.
5. Recovery: from the moment the overload stops, lone requests back to back: the time until
   the first one answers 200 within 2x the baseline p50, and then 10 s at half capacity
   (errors must be 0).

Accepted requests are timed by the server too (the inferd_request_duration_seconds histogram
counts successful requests only, arrival to response): its p99 and maximum bucket are
compared with the timeout. Refusals are counted from the load generator's status codes.

  /usr/bin/python3 bench/bench_overload.py                    # ~2 min; prints a summary
  /usr/bin/python3 bench/bench_overload.py --write            # also writes bench/RELIABILITY.md
  /usr/bin/python3 bench/bench_overload.py --duration 10      # a shorter run while developing
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import benchlib

ROOT = benchlib.ROOT
INFERD = os.environ.get("INFERD_BIN") or benchlib.INFERD
PEER_MODELS = os.path.join(benchlib.PEERS, "models")
SHARED = benchlib.SHARED
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "engine", "peer_bert_op14", "model.onnx")
REPORT = os.path.join(ROOT, "bench", "RELIABILITY.md")
BEGIN, END = "<!-- overload:begin -->", "<!-- overload:end -->"


def pct(xs, p):
    """Nearest-rank percentile of xs (p in 0..100), rounding its rank half to even: not
    benchlib.pct, whose rank is the ceiling (the two differ on some list lengths)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def rss_kib(pid):
    return benchlib.proc_status(pid, "VmRSS")


class Server:
    def __init__(self, args):
        self.tmp = tempfile.mkdtemp(prefix="inferd-overload-")
        mdir = os.path.join(self.tmp, "models", "text", "1")
        os.makedirs(mdir)
        os.symlink(args.model_path, os.path.join(mdir, "model.onnx"))
        self.config = {"max_batch_size": 8,
                       "dynamic_batching": {"max_queue_delay_us": args.delay_us,
                                            "max_queue_size": args.max_queue,
                                            "default_timeout_us": args.timeout_us}}
        with open(os.path.join(self.tmp, "models", "text", "config.json"), "w") as f:
            json.dump(self.config, f)
        self.log = open(os.path.join(self.tmp, "inferd.log"), "wb")
        cmd = [INFERD, "serve", "--repo", os.path.join(self.tmp, "models"), "--http-port", "0",
               "--threads", str(args.threads), "--max-connections", "1024"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        self.port = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.port is None:
            text = open(self.log.name, errors="replace").read()
            m = re.search(r"listening on http://[^:]+:(\d+)", text)
            if m:
                self.port = int(m.group(1))
            time.sleep(0.05)
        if self.port is None:
            raise RuntimeError("inferd did not start:\n" + open(self.log.name).read())
        while True:
            try:
                if self.get("/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    def metrics(self):
        return self.get("/metrics")[1].decode()

    def stop(self):
        self.proc.terminate()
        code = self.proc.wait(60)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return code


def hist(metrics, name, **labels):
    """Cumulative buckets {le: count} of a Prometheus histogram."""
    out = {}
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in metrics.splitlines():
        if not line.startswith(name + "_bucket{"):
            continue
        lab = line[line.index("{") + 1:line.index("}")]
        if all(w in lab.split(",") for w in want):
            le = re.search(r'le="([^"]+)"', lab).group(1)
            out[float("inf") if le == "+Inf" else float(le)] = float(line.split()[-1])
    return out


def hist_delta_quantile(before, after, q):
    """Upper bound of the bucket holding quantile q of the observations between two scrapes."""
    les = sorted(after)
    counts = [after[le] - before.get(le, 0) for le in les]
    total = counts[-1] if counts else 0
    if total <= 0:
        return float("nan"), 0
    for le, c in zip(les, counts):
        if c >= q * total:
            return le, total
    return les[-1], total


def bench(port, *args):
    cmd = [INFERD, "bench", "--url", f"http://127.0.0.1:{port}", "--model", "text", "--json",
           "--quiet", *args]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def infer_body(seq):
    ids = [101] + [5 + i % 90 for i in range(seq - 2)] + [102]  # inside every vocabulary
    return json.dumps({"inputs": [
        {"name": "input_ids", "shape": [1, seq], "datatype": "INT64", "data": ids},
        {"name": "attention_mask", "shape": [1, seq], "datatype": "INT64",
         "data": [1] * seq}]}).encode()


class Client:
    """One keep-alive connection, reconnecting after errors."""

    def __init__(self, port):
        self.port = port
        self.c = None

    def call(self, method, path, body=None):
        for attempt in range(2):
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                t0 = time.perf_counter()
                self.c.request(method, path, body=body,
                               headers={"Content-Type": "application/json"} if body else {})
                r = self.c.getresponse()
                r.read()
                return r.status, (time.perf_counter() - t0) * 1000
            except (OSError, http.client.HTTPException):
                self.c = None
                if attempt:
                    return None, None
        return None, None


def sampler(srv, stop, ready, rss, probes, body):
    """Health at ~20/s (a new connection each time, as an orchestrator's probe), RSS at ~5/s,
    a probe infer request at ~10/s (keep-alive), until stop is set."""
    probe = Client(srv.port)
    t_next = time.monotonic()
    i = 0
    while not stop.is_set():
        st, ms = Client(srv.port).call("GET", "/v2/health/ready")
        ready.append((time.monotonic(), st, ms))
        if i % 4 == 0:
            rss.append((time.monotonic(), rss_kib(srv.proc.pid)))
        if i % 2 == 0:
            st, ms = probe.call("POST", "/v2/models/text/infer", body)
            probes.append((time.monotonic(), st, ms))
        i += 1
        t_next += 0.05
        time.sleep(max(0.0, t_next - time.monotonic()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=60, help="overload seconds (default 60)")
    ap.add_argument("--factor", type=float, default=2.0, help="load / capacity (default 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq", type=int, default=32, help="tokens per request (default 32)")
    ap.add_argument("--concurrency", type=int, default=32, help="closed loop for capacity")
    ap.add_argument("--max-queue", type=int, default=64, help="max_queue_size (default 64)")
    ap.add_argument("--timeout-us", type=int, default=100000,
                    help="default_timeout_us (default 100000)")
    ap.add_argument("--delay-us", type=int, default=1000, help="max_queue_delay_us")
    ap.add_argument("--model", default="small", help="peer model size (tiny, small) or "
                    "'fixture' (default small)")
    ap.add_argument("--write", action="store_true", help="write the section of RELIABILITY.md")
    args = ap.parse_args()
    if args.model == "fixture":
        args.model_path = FIXTURE
    else:
        args.model_path = os.path.join(PEER_MODELS, args.model + ".onnx")
        if not os.path.exists(args.model_path):
            print(f"# making the peers' {args.model} model (needs python3-torch)", flush=True)
            subprocess.run(["/usr/bin/python3", os.path.join(SHARED, "make_models.py"), "--out",
                            PEER_MODELS, "--sizes", args.model], check=True)

    srv = Server(args)
    res = {"config": srv.config, "threads": args.threads, "seq": args.seq, "model": args.model,
           "loadavg_before": open("/proc/loadavg").read().split()[:3]}
    try:
        body = infer_body(args.seq)
        bench(srv.port, "--concurrency", "4", "--duration", "2", "--seq", str(args.seq))  # warm
        cap = bench(srv.port, "--concurrency", str(args.concurrency), "--duration", "10",
                    "--seq", str(args.seq))
        res["capacity_qps"] = cap["qps"]
        res["capacity_errors"] = cap["errors"]
        c = Client(srv.port)
        base = []
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:
            st, ms = c.call("POST", "/v2/models/text/infer", body)
            if st == 200:
                base.append(ms)
        res["baseline_p50_ms"] = pct(base, 50)
        res["baseline_p99_ms"] = pct(base, 99)
        idle_ready = [Client(srv.port).call("GET", "/v2/health/ready")[1] for _ in range(20)]
        res["idle_ready_p50_ms"] = pct(idle_ready, 50)

        rate = args.factor * cap["qps"]
        m0 = srv.metrics()
        stop = threading.Event()
        ready, rss, probes = [], [], []
        rss0 = rss_kib(srv.proc.pid)
        t = threading.Thread(target=sampler, args=(srv, stop, ready, rss, probes, body))
        t.start()
        t_load = time.monotonic()
        load = bench(srv.port, "--rate", f"{rate:.1f}", "--duration", str(args.duration),
                     "--max-connections", "512", "--timeout", "10", "--seq", str(args.seq),
                     "--server-pid", str(srv.proc.pid))
        t_drop = time.monotonic()
        stop.set()
        t.join()
        m1 = srv.metrics()

        # Recovery: lone requests from the moment the load stopped.
        rec = []
        c = Client(srv.port)
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:
            st, ms = c.call("POST", "/v2/models/text/infer", body)
            rec.append((time.monotonic() - t_drop, st, ms))
        ok_at = next((at for at, st, ms in rec
                      if st == 200 and ms <= 2 * res["baseline_p50_ms"]), None)
        after = bench(srv.port, "--rate", f"{cap['qps'] / 2:.1f}", "--duration", "10",
                      "--seq", str(args.seq))

        labels = {"model": "text", "version": "1"}
        p99_le, n_ok = hist_delta_quantile(hist(m0, "inferd_request_duration_seconds", **labels),
                                           hist(m1, "inferd_request_duration_seconds", **labels),
                                           0.99)
        max_le, _ = hist_delta_quantile(hist(m0, "inferd_request_duration_seconds", **labels),
                                        hist(m1, "inferd_request_duration_seconds", **labels),
                                        1.0)
        during = [(at, st, ms) for at, st, ms in ready if t_load <= at <= t_drop]
        ready_ms = [ms for _, st, ms in during if st == 200]
        probe_ok = [ms for at, st, ms in probes if st == 200]
        probe_refused = [ms for at, st, ms in probes if st in (429, 503)]
        rss_during = [k for at, k in rss if t_load <= at <= t_drop]
        res.update({
            "rate_qps": rate,
            "overload": {k: load.get(k) for k in (
                "qps", "requests", "sent", "ok", "errors", "errors_total", "connect_errors",
                "io_errors", "timeouts", "dropped", "p50", "p99", "max", "duration",
                "server_cpu_percent", "server_threads_max", "connections_max")},
            "accepted_server_p99_le_s": p99_le,
            "accepted_server_max_le_s": max_le,
            "accepted_server_count": n_ok,
            "probe_accepted": len(probe_ok), "probe_accepted_p50_ms": pct(probe_ok, 50),
            "probe_accepted_max_ms": max(probe_ok) if probe_ok else None,
            "probe_refused": len(probe_refused), "probe_refused_p50_ms": pct(probe_refused, 50),
            "probe_refused_p99_ms": pct(probe_refused, 99),
            "probe_other": sorted({st for _, st, _ in probes if st not in (200, 429, 503)},
                                  key=str),
            "ready_samples": len(during), "ready_failures": len(during) - len(ready_ms),
            "ready_p50_ms": pct(ready_ms, 50), "ready_p99_ms": pct(ready_ms, 99),
            "ready_max_ms": max(ready_ms) if ready_ms else None,
            "rss_before_kib": rss0, "rss_min_kib": min(rss_during) if rss_during else None,
            "rss_max_kib": max(rss_during) if rss_during else None,
            "rss_after_kib": rss_kib(srv.proc.pid),
            "recovery_first_fast_ok_s": ok_at,
            "recovery_statuses_first_s": sorted({st for at, st, _ in rec if at < 1}, key=str),
            "after": {k: after.get(k) for k in ("qps", "ok", "errors", "p50", "p99", "max")},
            "loadavg_after": open("/proc/loadavg").read().split()[:3],
        })
    finally:
        res["exit_code"] = srv.stop()
    print(json.dumps(res, indent=1))
    section = markdown(res, args)
    print(section)
    if args.write:
        write_section(section)
    ok = (res["ready_p99_ms"] < 10 and res["ready_failures"] == 0 and
          res["after"]["errors"] == {} and res["exit_code"] == 0)
    return 0 if ok else 1


MODEL_NOTE = {"small": "the peers' BERT-small: 4 layers, hidden 312, 11.4 M parameters",
              "tiny": "the peers' BERT-tiny", "fixture": "engine fixture peer_bert_op14"}


def markdown(r, args):
    o = r["overload"]
    refused = sum(v for k, v in o["errors"].items() if k in ("429", "503"))
    other = {k: v for k, v in o["errors"].items() if k not in ("429", "503")}
    timeout_ms = r["config"]["dynamic_batching"]["default_timeout_us"] / 1000
    lines = [
        BEGIN,
        f"Measured {benchlib.utc_now()} with "
        f"`/usr/bin/python3 bench/bench_overload.py --write` (duration {args.duration} s, "
        f"{args.factor:g}x): model {r['model']} ({MODEL_NOTE.get(r['model'], '')}), "
        f"{args.seq} tokens per request, `--threads "
        f"{r['threads']}`, config.json `{json.dumps(r['config'], separators=(',', ':'))}`. "
        f"The machine is shared (load average {' '.join(r['loadavg_before'])} before, "
        f"{' '.join(r['loadavg_after'])} after).",
        "",
        *benchlib.table_head("figure", "value"),
        f"| capacity (closed loop, {args.concurrency} connections, 10 s) | "
        f"{r['capacity_qps']:.0f} req/s |",
        f"| idle latency of a lone request (p50 / p99) | {r['baseline_p50_ms']:.1f} / "
        f"{r['baseline_p99_ms']:.1f} ms |",
        f"| offered load (open loop) | {r['rate_qps']:.0f} req/s for {o['duration']:.0f} s "
        f"({o['sent']} requests) |",
        f"| accepted (200) | {o['ok']} ({100 * o['ok'] / max(1, o['sent']):.1f}%), "
        f"{o['ok'] / max(1e-9, o['duration']):.0f} req/s |",
        f"| refused early (429 / 503) | {refused} "
        f"({100 * refused / max(1, o['sent']):.1f}%): {o['errors']} |",
        f"| other failures | statuses {other or 'none'}, connect errors "
        f"{o['connect_errors']}, I/O errors {o['io_errors']}, client timeouts {o['timeouts']}, "
        f"dropped by the client {o['dropped']} |",
        f"| accepted latency, server side (p99 / max bucket) vs queue timeout | "
        f"<= {r['accepted_server_p99_le_s'] * 1000:.0f} ms / <= "
        f"{r['accepted_server_max_le_s'] * 1000:.0f} ms vs {timeout_ms:.0f} ms + one batch |",
        f"| probe requests every 100 ms: accepted (p50 / max) | {r['probe_accepted']}: "
        f"{r['probe_accepted_p50_ms']:.1f} / {r['probe_accepted_max_ms'] or float('nan'):.1f} "
        f"ms |",
        f"| probe requests: refused (p50 / p99) | {r['probe_refused']}: "
        f"{r['probe_refused_p50_ms']:.1f} / {r['probe_refused_p99_ms']:.1f} ms |",
        f"| all responses at the load generator (p50 / p99 / max) | {o['p50']:.1f} / "
        f"{o['p99']:.1f} / {o['max']:.1f} ms |",
        f"| `/v2/health/ready` during overload ({r['ready_samples']} samples, ~20/s, "
        f"a new connection each) | p50 {r['ready_p50_ms']:.2f} ms, **p99 {r['ready_p99_ms']:.2f} ms**, "
        f"max {r['ready_max_ms']:.1f} ms, {r['ready_failures']} failures |",
        f"| `/v2/health/ready` idle (p50, new connection) | {r['idle_ready_p50_ms']:.2f} ms |",
        f"| server RSS before / min / max during / after | {r['rss_before_kib'] // 1024} / "
        f"{(r['rss_min_kib'] or 0) // 1024} / {(r['rss_max_kib'] or 0) // 1024} / "
        f"{r['rss_after_kib'] // 1024} MiB |",
        f"| server CPU during overload, threads | {o['server_cpu_percent']}% (100 = one core),"
        f" {o['server_threads_max']} threads |",
        f"| recovery: first lone request back within 2x idle p50 | "
        f"{r['recovery_first_fast_ok_s'] * 1000 if r['recovery_first_fast_ok_s'] is not None else float('nan'):.0f}"
        f" ms after the load stopped (statuses in the first second: "
        f"{r['recovery_statuses_first_s']}) |",
        f"| then 10 s at half capacity | {r['after']['ok']} ok, errors {r['after']['errors'] or 'none'}, "
        f"p50 {r['after']['p50']:.1f} ms, p99 {r['after']['p99']:.1f} ms |",
        END,
    ]
    return "\n".join(lines)


def write_section(section):
    # Not benchlib.write_section: RELIABILITY.md's markers, and the newlines around the
    # section, are its own.
    text = open(REPORT).read() if os.path.exists(REPORT) else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text += "\n" + section + "\n"
    with open(REPORT, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
