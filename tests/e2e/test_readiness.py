"""End-to-end tests of the readiness contract (issue #8): /ready and /v2/health/ready.

- With pinned models: ready once every pinned model's default version is loaded, while the
  unpinned ones may still be loading.
- --strict-readiness: ready once every model's default version is loaded; a model that fails
  to load keeps the server out of service; refused together with a memory budget.
- Draining on SIGTERM: not ready, on connections that were open before the signal, while the
  requests in flight are still being answered; live all along.

Loads are made slow-ish with a large warm-up run on the peers' BERT-shaped test model (a
warm-up object in config.json runs after every load), and one loader thread loads the models
one after the other. The tests never rely on a load taking a given time: each /ready answer is
paired with the repository index read right after it (loads only move forward), and the
tests require that a not-ready answer was seen at all only where the load is a few hundred
milliseconds long, against a 10 ms polling loop.
"""
import http.client
import json
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from conftest import Server, inferd_bin, make_repo, metric_value

SLOW = {"case": "peer_bert_op14",
        "config": {"max_batch_size": 64, "warmup": {"batch_size": 64, "seq_len": 512}}}
UNPINNED = ["u1", "u2", "u3", "u4"]


def slow_repo(root, pinned=True):
    cfg = dict(SLOW["config"], pinned=pinned)
    models = {name: SLOW for name in UNPINNED}
    models["z_pinned"] = {"case": SLOW["case"], "config": cfg}
    return make_repo(root, models)


def states(srv):
    return {x["name"]: x["state"] for x in srv.index()}


def sample_until_ready(srv, timeout=60.0):
    """Polls /ready, each answer followed by the index. Returns [(status, body, states)] up to
    and including the first 200."""
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = srv.get("/ready")
        samples.append((r.status_code, r.text, states(srv)))
        if r.status_code == 200:
            return samples
        time.sleep(0.01)
    raise AssertionError(f"not ready after {timeout} s:\n{srv.log()}")


def start(srv):
    srv.start()
    return srv


def test_ready_when_the_pinned_model_is_loaded(tmp_path, inferd_available):
    repo = slow_repo(tmp_path / "models")
    srv = start(Server(repo, tmp_path / "inferd.log", "--loader-threads", "1", "--cache-dir",
                       "off", threads=1))
    try:
        samples = sample_until_ready(srv)
        status, body, st = samples[-1]
        assert body == "ok\n"
        # Ready only once the pinned model is: it is READY in the index read after.
        assert st["z_pinned"] == "READY", samples[-1]
        # Before that, not ready, saying why.
        assert samples[0][0] == 503, samples[0]
        assert samples[0][1] == ("not ready: 1 pinned model(s) without their default version "
                                 "loaded\n"), samples[0]
        # Unpinned models do not hold readiness back: some were still loading (the index was
        # read after the first 200, so they were loading then too).
        assert any(st[u] != "READY" for u in UNPINNED), st
        assert srv.get("/v2/health/ready").status_code == 200
        # All of them load in the end, and readiness stays.
        deadline = time.monotonic() + 60
        while any(s != "READY" for s in states(srv).values()):
            assert time.monotonic() < deadline, states(srv)
            assert srv.get("/ready").status_code == 200
            time.sleep(0.05)
        # The pinned model loaded first, though its name sorts last.
        log = srv.log()
        first = min(log.index(f"model {m} version 1 ready") for m in UNPINNED)
        assert log.index("model z_pinned version 1 ready") < first
    finally:
        assert srv.stop() == 0, srv.log()


def test_strict_readiness_waits_for_every_model(tmp_path, inferd_available):
    repo = slow_repo(tmp_path / "models")
    srv = start(Server(repo, tmp_path / "inferd.log", "--strict-readiness", "--loader-threads",
                       "1", "--cache-dir", "off", threads=1))
    try:
        samples = sample_until_ready(srv)
        assert all(s == "READY" for s in samples[-1][2].values()), samples[-1]
        # While the pinned model was loaded and others were not, strict readiness said no.
        waiting = [s for s in samples if s[2]["z_pinned"] == "READY"
                   and any(s[2][u] != "READY" for u in UNPINNED)]
        assert waiting, samples
        assert all(s[0] == 503 and "(--strict-readiness)" in s[1] for s in waiting), waiting
        assert srv.get("/v2/health/ready").status_code == 200
    finally:
        assert srv.stop() == 0, srv.log()


def test_strict_readiness_with_a_broken_model(tmp_path, inferd_available):
    repo = make_repo(tmp_path / "models", {
        "good": {"case": "mlp_features_op11"},
        "broken": {"file": b"not an onnx file"}})
    strict = Server(repo, tmp_path / "strict.log", "--strict-readiness", threads=1).start()
    plain = Server(repo, tmp_path / "plain.log", threads=1).start()
    try:
        # Without --strict-readiness every start-up load has been tried: ready.
        plain.wait_ready()
        deadline = time.monotonic() + 30
        while states(strict).get("broken") != "UNAVAILABLE" or states(strict)["good"] != "READY":
            assert time.monotonic() < deadline, strict.log()
            time.sleep(0.05)
        for _ in range(10):  # and it stays so: nothing else is coming
            r = strict.get("/ready")
            assert r.status_code == 503, r.text
            assert r.text == ("not ready: 1 model(s) without their default version loaded "
                              "(--strict-readiness)\n")
            assert strict.get("/v2/health/ready").status_code == 400
            assert strict.get("/live").status_code == 200
            time.sleep(0.05)
        # The model that did load serves.
        r = strict.post("/v2/models/good/infer", json={"inputs": [
            {"name": "features", "shape": [1, 20], "datatype": "FP32", "data": [0.5] * 20}]})
        assert r.status_code == 200, r.text
    finally:
        assert strict.stop() == 0, strict.log()
        assert plain.stop() == 0, plain.log()


@pytest.mark.parametrize("flag", [["--memory-budget", "1G"], ["--max-loaded", "4"]])
def test_strict_readiness_is_refused_with_on_demand_loading(tmp_path, flag):
    out = subprocess.run([inferd_bin(), "serve", "--repo", str(tmp_path), "--strict-readiness",
                          *flag], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2, out
    assert f"--strict-readiness cannot be combined with {flag[0]}" in out.stderr, out.stderr
    assert '"pinned": true' in out.stderr


def test_help_lists_strict_readiness():
    out = subprocess.run([inferd_bin(), "serve", "--help"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 0 and "--strict-readiness" in out.stdout


def big_request(i):
    ids = np.full((16, 512), 100 + i, dtype=np.int64)
    ids[:, 0] = 101
    return {"inputs": [
        {"name": "input_ids", "shape": list(ids.shape), "datatype": "INT64",
         "data": ids.flatten().tolist()},
        {"name": "attention_mask", "shape": list(ids.shape), "datatype": "INT64",
         "data": np.ones_like(ids).flatten().tolist()}]}


def test_not_ready_while_draining(tmp_path, inferd_available):
    repo = make_repo(tmp_path / "models", {
        "slow": {"case": "peer_bert_op14",
                 "config": {"max_batch_size": 128,
                            "dynamic_batching": {"max_queue_delay_us": 10000000}}}})
    srv = Server(repo, tmp_path / "inferd.log", "--workers", "1", threads=1).start().wait_ready()
    try:
        srv.require_ready("slow")
        # Connections opened before SIGTERM: the listening socket closes at the signal.
        probes = {p: http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
                  for p in ("/ready", "/v2/health/ready", "/live")}
        for c in probes.values():
            c.connect()
        results = []

        def one(i):
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            c.request("POST", "/v2/models/slow/infer", body=json.dumps(big_request(i)),
                      headers={"Content-Type": "application/json"})
            results.append(c.getresponse().status)
            c.close()

        # 6 x 16 rows of 512 tokens wait for a fuller batch (a long queue delay); the drain runs
        # them at once, which takes a while on one thread.
        n = 6
        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        deadline = time.monotonic() + 20
        while metric_value(srv.metrics(), "inferd_pending_requests", model="slow", version="1") < n:
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.01)
        assert srv.get("/ready").status_code == 200
        srv.session.close()
        srv.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while "received SIGTERM: draining" not in srv.log():
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.005)
        answers = {}
        for path, c in probes.items():
            c.request("GET", path)
            r = c.getresponse()
            answers[path] = (r.status, r.read().decode())
        in_flight = n - len(results)
        for t in ts:
            t.join()
        code = srv.proc.wait(30)
        srv.log_file.close()
        assert code == 0, srv.log()
        assert results == [200] * n, results
        # The probes were answered while requests were still in flight (so, during the drain).
        assert in_flight > 0, (results, answers)
        assert answers["/ready"] == (503, "not ready: draining: the server is shutting down\n")
        assert answers["/v2/health/ready"] == (400, '{"ready":false}'), answers
        assert answers["/live"] == (200, "ok\n"), answers
    finally:
        if srv.proc.poll() is None:  # a failed assertion must not leave it running
            srv.proc.kill()
            srv.proc.wait()
