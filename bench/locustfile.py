"""Locust 2.12 users for `make bench-text`: each user, in a closed loop, picks a random model
of the repository and a random Chinese text of the pool and asks for its class.

  target "peer"   (the peers' servers):  POST /predict {"model": M, "text": T}
  target "inferd" (inferd's text API):   POST /v1/models/M:predict {"text": T}
  target "kserve" (inferd, KServe v2):   POST /v2/models/M/infer with JSON tensors input_ids
                                         and attention_mask, tokenized here by the peers'
                                         chartok.py (the tokenizer runs in the client)

Run by bench/bench_text.py; by hand, e.g. against a peer on port 8003:

  BENCH_TARGET=peer BENCH_MODELS=21 BENCH_OUT=/tmp/locust.json \\
    locust -f bench/locustfile.py --headless -u 16 -r 16 -t 20s -H http://127.0.0.1:8003

Environment:
  BENCH_TARGET   peer | inferd | kserve (default peer)
  BENCH_MODELS   number of models m00..m(N-1), or a comma-separated list (default 21)
  BENCH_DIST     how models are picked: uniform (default), or zipf:S (model i, from 0, with
                 weight 1/(i+1)**S: a few busy models and a long tail)
  BENCH_TEXTS    JSON file {"texts": [...]} (default: text_pool.text_pool(2000, seed 1))
  BENCH_WARMUP   seconds after the start whose requests are not counted (default 0)
  BENCH_OUT      where to write the result JSON (default: nothing written): the measured
                 window [start, end] (Unix times), and one [end time, latency ms, status]
                 per request that completed in it (status 0: connection error)
  BENCH_READY    1: also probe the health endpoint (GET /ready or /v2/health/ready) every
                 BENCH_READY_INTERVAL s (default 0.1) from a greenlet, on a new connection
                 each time, and record its latencies under "ready" (bench_text.py probes
                 from its own process instead, so the load generator's event loop does not
                 add to them)

Latencies are measured by Locust (FastHttpUser, keep-alive where the server allows it)
from sending the request to reading the whole response.
"""
import json
import os
import random
import sys
import time

import gevent
from locust import FastHttpUser, constant, events, task

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import text_pool  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "peers", "servers"))
import chartok  # noqa: E402  the peers' tokenizer, for the kserve target

# (imported here: Locust drops sys.path[0] once this file is imported)

TARGET = os.environ.get("BENCH_TARGET", "peer")
_m = os.environ.get("BENCH_MODELS", "21")
MODELS = [f"m{i:02d}" for i in range(int(_m))] if _m.isdigit() else _m.split(",")
if os.environ.get("BENCH_TEXTS"):
    with open(os.environ["BENCH_TEXTS"], encoding="utf-8") as _f:
        TEXTS = json.load(_f)["texts"]
else:
    TEXTS = text_pool.text_pool(2000, seed=1)
WARMUP = float(os.environ.get("BENCH_WARMUP", "0"))
DIST = os.environ.get("BENCH_DIST", "uniform")
if DIST.startswith("zipf:"):
    _s = float(DIST[5:])
    _w = [1.0 / (i + 1) ** _s for i in range(len(MODELS))]
    CUM = [sum(_w[:i + 1]) for i in range(len(_w))]
elif DIST == "uniform":
    CUM = None
else:
    raise SystemExit(f"BENCH_DIST: expected uniform or zipf:S, not {DIST!r}")
OUT = os.environ.get("BENCH_OUT")
READY_PATH = "/ready" if TARGET == "peer" else "/v2/health/ready"

_state = {"t0": None, "t_end": None}
_records = []  # [end time, latency ms, status]
_ready = []


def kserve_body(ids):
    n = len(ids)
    return json.dumps({"inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [1, n], "data": ids},
        {"name": "attention_mask", "datatype": "INT64", "shape": [1, n], "data": [1] * n}]})


def _body(model, text):
    if TARGET == "kserve":
        return f"/v2/models/{model}/infer", kserve_body(chartok.encode(text))
    if TARGET == "inferd":
        return f"/v1/models/{model}:predict", json.dumps({"text": text}, ensure_ascii=False)
    return "/predict", json.dumps({"model": model, "text": text}, ensure_ascii=False)


class TextUser(FastHttpUser):
    wait_time = constant(0)
    connection_timeout = 10.0
    network_timeout = 60.0

    def on_start(self):
        self.rng = random.Random()

    @task
    def predict(self):
        model = (self.rng.choice(MODELS) if CUM is None
                 else self.rng.choices(MODELS, cum_weights=CUM)[0])
        path, body = _body(model, self.rng.choice(TEXTS))
        with self.client.post(path, data=body.encode(), name="predict", catch_response=True,
                              headers={"Content-Type": "application/json"}) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")


@events.request.add_listener
def _on_request(request_type, name, response_time, response_length, response=None,
                exception=None, **kw):
    if name != "predict":
        return
    status = getattr(response, "status_code", 0) or 0
    if exception is not None and status == 200:
        status = 0
    _records.append((time.time(), response_time, status))


def _probe(host):
    from geventhttpclient import HTTPClient
    from geventhttpclient.url import URL
    interval = float(os.environ.get("BENCH_READY_INTERVAL", "0.1"))
    url = URL(host + READY_PATH)
    while True:
        t = time.perf_counter()
        status = 0
        try:
            c = HTTPClient.from_url(url, connection_timeout=10, network_timeout=10)
            r = c.get(url.request_uri)
            r.read()
            status = r.status_code
            c.close()
        except Exception:
            pass
        _ready.append((time.time(), (time.perf_counter() - t) * 1000, status))
        gevent.sleep(interval)


@events.test_start.add_listener
def _on_start(environment, **kw):
    _state["t0"] = time.time()
    if os.environ.get("BENCH_READY") == "1":
        _state["probe"] = gevent.spawn(_probe, environment.host)


@events.test_stop.add_listener
def _on_stop(environment, **kw):
    _state["t_end"] = time.time()
    if _state.get("probe"):
        _state["probe"].kill()


@events.quitting.add_listener
def _on_quit(environment, **kw):
    if not OUT or _state["t0"] is None:
        return
    start, end = _state["t0"] + WARMUP, _state["t_end"] or time.time()
    keep = [r for r in _records if start <= r[0] <= end]
    ready = [r for r in _ready if start <= r[0] <= end]
    with open(OUT, "w") as f:
        json.dump({"target": TARGET, "models": len(MODELS), "texts": len(TEXTS),
                   "window": [start, end], "requests": keep, "ready": ready}, f)
