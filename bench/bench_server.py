#!/usr/bin/python3
"""make bench-server: the server's own costs, written as a section of bench/RESULTS.md.

1. Overhead: a tiny MLP (tests/fixtures/engine/mlp_features_op11) with binary and JSON
   tensors, driven by `inferd bench` and by wrk, closed loop on keep-alive connections.
2. Batching gain: the peers' small BERT at 16 concurrent clients, dynamic batching on
   (max batch 16, 2 ms delay) vs off (max_batch_size 1).
3. /v2/health/ready latency (p50/p99/max) while both cores are saturated by inference.
4. Peak thread count of the server under that load (/proc/PID/status).

Client and server share the machine's 2 cores, as every peer comparison here does.
  /usr/bin/python3 bench/bench_server.py [--duration 10]
"""
import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import benchlib

ROOT = benchlib.ROOT
INFERD = benchlib.INFERD
PEERS = os.path.join(benchlib.PEERS, "models")


class Server:
    def __init__(self, repo, extra=()):
        self.port = benchlib.free_port()
        self.log = open(os.path.join(repo, "server.log"), "w")
        self.p = subprocess.Popen([INFERD, "serve", "--repo", repo, "--http-port", str(self.port),
                                   *extra], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if get(self.port, "/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=60)
        self.log.close()


def get(port, path):
    """One HTTP GET on a fresh connection; returns (status, seconds)."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), time.perf_counter() - t0


def bench(url, *args):
    p = subprocess.run([INFERD, "bench", "--url", url, "--json", "--quiet", *args],
                       capture_output=True, text=True, timeout=600)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"inferd bench failed: {p.stderr[-500:]}")
    return json.loads(lines[-1])


def wrk(url, model, duration, binary=False):
    """wrk with a Lua script POSTing an infer request for the MLP: JSON tensors, or (binary)
    the binary tensor extension both ways, as `inferd bench --binary` sends it."""
    if not shutil.which("wrk"):
        return None
    if binary:
        header = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 20],
                                         "parameters": {"binary_data_size": 80}}],
                             "parameters": {"binary_data_output": True}}).encode()
        body = header + struct.pack("<20f", *([0.5] * 20))
        headers = {"Content-Type": "application/octet-stream",
                   "Inference-Header-Content-Length": str(len(header))}
    else:
        body = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 20],
                                       "data": [0.5] * 20}]}).encode()
        headers = {"Content-Type": "application/json"}
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua.write('wrk.method = "POST"\nwrk.body = "%s"\n' % "".join("\\%d" % b for b in body))
    for k, v in headers.items():
        lua.write('wrk.headers["%s"] = "%s"\n' % (k, v))
    lua.close()
    p = subprocess.run(["wrk", "-t1", "-c32", f"-d{duration}s", "-s", lua.name, "--latency",
                        f"{url}/v2/models/{model}/infer"], capture_output=True, text=True)
    os.unlink(lua.name)
    out = p.stdout
    qps = next((float(l.split()[1]) for l in out.splitlines() if l.startswith("Requests/sec")), None)
    p99 = next((l.split()[1] for l in out.splitlines() if l.strip().startswith("99%")), None)
    errors = "Non-2xx" in out or "Socket errors" in out
    return {"qps": qps, "p99": p99, "errors": errors}


def perf(model, batch, seq, threads, seconds=5):
    """items/s of `inferd perf` on one batch shape."""
    run = benchlib.inferd_perf(model, threads, batch, seq, seconds, inferd=INFERD)
    if not run:
        raise RuntimeError("inferd perf failed (its error is above)")
    return run["items_per_s"]


def write_repo(root, name, model, config):
    d = os.path.join(root, name, "1")
    os.makedirs(d)
    os.symlink(os.path.abspath(model), os.path.join(d, "model.onnx"))
    with open(os.path.join(root, name, "config.json"), "w") as f:
        json.dump(config, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--results", default=benchlib.RESULTS)
    args = ap.parse_args()
    started = benchlib.utc_now()
    tmp = tempfile.mkdtemp(prefix="inferd-bench-server-")
    res = {}
    try:
        # 1. overhead on a tiny model
        write_repo(tmp, "mlp", os.path.join(ROOT, "tests/fixtures/engine/mlp_features_op11/model.onnx"),
                   {"max_batch_size": 64, "dynamic_batching": {"max_queue_delay_us": 0}})
        s = Server(tmp)
        try:
            bench(s.url, "--model", "mlp", "--concurrency", "32", "--duration", "2")  # warm-up
            res["binary"] = bench(s.url, "--model", "mlp", "--binary", "--concurrency", "32",
                                  "--duration", str(args.duration), "--server-pid", str(s.p.pid))
            res["json"] = bench(s.url, "--model", "mlp", "--concurrency", "32", "--duration",
                                str(args.duration), "--server-pid", str(s.p.pid))
            res["wrk_binary"] = wrk(s.url, "mlp", args.duration, binary=True)
            res["wrk"] = wrk(s.url, "mlp", args.duration)
        finally:
            s.stop()
        # the same binary run with epoll polling (--http-poll epoll), for the A/B
        s = Server(tmp, ("--http-poll", "epoll"))
        try:
            bench(s.url, "--model", "mlp", "--concurrency", "32", "--duration", "2")  # warm-up
            res["binary_epoll"] = bench(s.url, "--model", "mlp", "--binary", "--concurrency", "32",
                                        "--duration", str(args.duration), "--server-pid",
                                        str(s.p.pid))
        finally:
            s.stop()
        # 2-4. the peers' small model
        small = os.path.join(PEERS, "small.onnx")
        if os.path.exists(small):
            for mode, cfg in (("on", {"max_batch_size": 16,
                                      "dynamic_batching": {"max_queue_delay_us": 2000}}),
                              ("off", {"max_batch_size": 1})):
                root = os.path.join(tmp, "small_" + mode)
                write_repo(root, "small", small, cfg)
                s = Server(root)
                try:
                    common = ["--model", "small", "--binary", "--seq", "64", "--vocab", "21128",
                              "--concurrency", "16"]
                    bench(s.url, *common, "--duration", "2")
                    health, peak = [], [0]
                    stop = threading.Event()

                    def probe():
                        while not stop.is_set():
                            try:
                                code, secs = get(s.port, "/v2/health/ready")
                                if code == 200:
                                    health.append(secs * 1000)
                            except OSError:
                                pass
                            peak[0] = max(peak[0], benchlib.proc_status(s.p.pid, "Threads"))
                            time.sleep(0.02)

                    t = threading.Thread(target=probe)
                    t.start()
                    res["small_" + mode] = bench(s.url, *common, "--duration", str(args.duration),
                                                 "--server-pid", str(s.p.pid))
                    stop.set()
                    t.join()
                    res["health_" + mode] = health
                    res["threads_" + mode] = peak[0]
                finally:
                    s.stop()
            # What the engine allows batching to gain on this model: two workers at one
            # thread each running batch 1 (off) against batches of 8 on one thread each, or
            # of 16 on both threads (on).
            res["ceiling"] = {"b1": perf(small, 1, 64, 1), "b8": perf(small, 8, 64, 1),
                              "b16_2t": perf(small, 16, 64, 2)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    text = markdown(res, sys.argv[1:], started)
    benchlib.write_section(args.results, text, "bench-server")
    print(text)


def markdown(res, argv, started):
    L = ["<!-- bench-server:start -->", "## Server (`make bench-server`)", "",
         benchlib.command_line("bench_server.py", argv),
         f"Run {started}; client and server share the machine's 2 cores.", "",
         "### 1. Overhead: tiny MLP (20 features), 32 keep-alive connections", "",
         *benchlib.table_head("driver", "tensors", "requests/s", "p50 ms", "p99 ms",
                              "server CPU %", "server CPU us/request")]
    for k, label in (("binary", "binary"), ("json", "JSON"),
                     ("binary_epoll", "binary, `--http-poll epoll`")):
        r = res[k]
        cpu = r.get("server_cpu_percent") or 0
        L.append(f"| inferd bench | {label} | {r['qps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                 f"{cpu:.0f} | {cpu * 1e4 / r['qps'] if r['qps'] else 0:.1f} |")
    for k, label in (("wrk_binary", "binary"), ("wrk", "JSON")):
        w = res.get(k)
        if w:
            bad = " (**errors**: non-2xx or socket errors)" if w["errors"] else ""
            L.append(f"| wrk (1 thread) | {label} | {w['qps'] or 0:.0f}{bad} | - | {w['p99']} | - | - |")
    L.append("")
    if "small_on" in res:
        on, off = res["small_on"], res["small_off"]
        L += ["### 2. Batching gain: peers' small BERT, seq 64, 16 concurrent clients", "",
              *benchlib.table_head("batching", "requests/s", "p50 ms", "p95 ms", "p99 ms"),
              f"| on (max 16, 2 ms) | {on['qps']:.1f} | {on['p50']:.1f} | {on['p95']:.1f} | {on['p99']:.1f} |",
              f"| off | {off['qps']:.1f} | {off['p50']:.1f} | {off['p95']:.1f} | {off['p99']:.1f} |",
              f"| **gain** | **{on['qps'] / off['qps']:.2f}x** | | "
              f"{'lower' if on['p95'] < off['p95'] else 'higher'} p95 | |", ""]
        c = res["ceiling"]
        best_on = max(2 * c["b8"], c["b16_2t"])
        L += ["Engine ceiling, same run (`inferd perf`, small, seq 64, sequences/s): batch 1 on "
              f"one thread {c['b1']:.0f}, batch 8 on one thread {c['b8']:.0f}, batch 16 on two "
              f"threads {c['b16_2t']:.0f}. Two workers can run {2 * c['b1']:.0f}/s unbatched and "
              f"at best {best_on:.0f}/s batched: the most batching can gain here is "
              f"**{best_on / (2 * c['b1']):.2f}x**, since batch 1 already runs at "
              f"{c['b1'] / c['b8'] * 100:.0f}% of batch 8's speed a thread (its 64-row GEMMs "
              "are efficient).", ""]
        L += ["### 3-4. /v2/health/ready while both cores run inference; peak threads", "",
              *benchlib.table_head("batching", "ready probes", "p50 ms", "p99 ms", "max ms",
                                   "server CPU %", "peak threads")]
        for mode in ("on", "off"):
            h = sorted(res["health_" + mode])
            L.append(f"| {mode} | {len(h)} | {benchlib.pct(h, .5):.2f} | "
                     f"{benchlib.pct(h, .99):.2f} | {max(h):.2f} | "
                     f"{res['small_' + mode].get('server_cpu_percent') or 0:.0f} | "
                     f"{res['threads_' + mode]} |")
        L.append("")
    L.append("<!-- bench-server:end -->")
    return "\n".join(L) + "\n"

if __name__ == "__main__":
    main()
