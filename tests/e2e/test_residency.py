"""End-to-end tests of residency (issue #5): a memory budget with LRU eviction, loads on
demand from the load cache, pinned versions, version switches found by polling, the repository
extension (index, load, unload), and the residency metrics.

The models are tiny ONNX classifiers written at test time by tools/make_tiny_models.py (the
onnx package only, no torch): each has a "version" output that says which version computed a
response. Two scenarios from the issue run here with bounded time:

  * 100 models, a budget that holds 8, Zipf-distributed traffic from several clients for
    RESID_SECONDS (default 20) seconds: no failed request, the memory in use (sampled from
    /metrics) never above the budget, evictions and reloads observed;
  * a busy model whose version is replaced SWAPS (default 100) times under load through
    polling (each new folder renamed into place, the old one deleted once the new one serves):
    no failed request, and every response labelled with the version that computed it.
"""
import os
import random
import shutil
import sys
import threading
import time

import pytest
import requests

from conftest import ROOT, Server, metric_value

sys.path.insert(0, str(ROOT / "tools"))
tiny = pytest.importorskip("make_tiny_models", reason="needs the onnx package (python3-onnx)")

RESID_SECONDS = float(os.environ.get("RESID_SECONDS", "20"))
SWAPS = int(os.environ.get("SWAPS", "100"))
N_MODELS = 100
CONFIG = {"max_batch_size": 4, "dynamic_batching": {"max_queue_delay_us": 500}}


def body(seq=8, rows=1, seed=0):
    ids = [(seed * 31 + j * 7) % 999 + 1 for j in range(seq * rows)]
    return {"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [rows, seq],
                        "data": ids}]}


def output(resp, name):
    return next(o for o in resp["outputs"] if o["name"] == name)["data"]


def rows_by_key(index):
    return {(r["name"], r["version"]): r for r in index}


def calibrate(tmp, repo):
    """Bytes one tiny model holds once it has served a few batches (its plans included)."""
    with Server(repo, tmp / "calibrate.log", "--memory-budget", "1G", threads=2).running() as srv:
        done = []

        def hit():
            s = requests.Session()
            for k in range(20):
                r = s.post(srv.url("/v2/models/m000/infer"), json=body(seed=k), timeout=30)
                done.append(r.status_code)

        ts = [threading.Thread(target=hit) for _ in range(4)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        assert set(done) == {200}
        return rows_by_key(srv.index())[("m000", "1")]["resident_bytes"]


@pytest.fixture(scope="module")
def zipf_setup(tmp_path_factory, inferd_available):
    tmp = tmp_path_factory.mktemp("resid")
    repo = tmp / "models"
    tiny.make_repo(repo, N_MODELS, config=CONFIG)
    one = calibrate(tmp, repo)
    assert one > 200_000, one  # the embedding table alone is 256 KB
    shutil.rmtree(repo / ".inferd-cache")  # the measured run starts cold
    # A pinned model and one that can never fit, next to the hundred.
    tiny.make_repo(repo, 1, config=dict(CONFIG, pinned=True), prefix="pinned")
    tiny.make_repo(repo, 1, config=CONFIG, prefix="huge", vocab=30000)
    budget = int(one * 8.3)
    return tmp, repo, budget, one


def zipf_weights(n, s=1.0):
    return [1.0 / (i + 1) ** s for i in range(n)]


def test_100_models_in_a_budget_for_8_under_zipf_traffic(zipf_setup):
    tmp, repo, budget, one = zipf_setup
    with Server(repo, tmp / "zipf.log", "--memory-budget", str(budget), "--workers", "2",
                "--loader-threads", "2", threads=2).running() as srv:
        rows = rows_by_key(srv.index())
        # Only the pinned model is in memory at start; the others load on demand.
        assert rows[("pinned000", "1")]["state"] == "READY"
        assert rows[("m000", "1")]["state"] == "UNLOADED"
        assert "loads on its first request" in rows[("m000", "1")]["reason"]

        names = [f"m{i:03d}" for i in range(N_MODELS)]
        weights = zipf_weights(N_MODELS)
        stop = threading.Event()
        results = {"ok": 0, "failed": []}
        lock = threading.Lock()
        used_samples = []

        def client(seed):
            rng = random.Random(seed)
            s = requests.Session()
            ok = 0
            while not stop.is_set():
                name = rng.choices(names, weights)[0]
                if rng.random() < 0.02:
                    name = "pinned000"
                r = s.post(srv.url(f"/v2/models/{name}/infer"), json=body(seed=rng.randrange(9)),
                           timeout=60)
                good = r.status_code == 200
                if good:
                    j = r.json()
                    good = j["model_name"] == name and j["model_version"] == "1" and \
                        output(j, "version") == [1.0]
                if good:
                    ok += 1
                else:
                    with lock:
                        results["failed"].append((name, r.status_code, r.text[:200]))
            with lock:
                results["ok"] += ok

        def sampler():
            s = requests.Session()
            while not stop.is_set():
                m = s.get(srv.url("/metrics"), timeout=10).text
                resident = sum(float(line.rsplit(" ", 1)[1]) for line in m.splitlines()
                               if line.startswith("inferd_model_resident_bytes{"))
                used_samples.append((metric_value(m, "inferd_memory_used_bytes"), resident))
                time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        threads.append(threading.Thread(target=sampler))
        [t.start() for t in threads]
        time.sleep(RESID_SECONDS)
        stop.set()
        [t.join() for t in threads]

        assert results["failed"] == [], results["failed"][:5]
        assert results["ok"] > 500, results
        assert len(used_samples) > 20
        worst = max(max(u, r) for u, r in used_samples)
        assert worst <= budget, (worst, budget)
        m = srv.metrics()
        assert metric_value(m, "inferd_memory_budget_bytes") == budget
        evictions = metric_value(m, "inferd_evictions_total")
        loads = metric_value(m, "inferd_loads_total")
        assert evictions > 50, evictions
        assert loads > N_MODELS, loads  # every model at most once, plus reloads
        assert metric_value(m, "inferd_load_cache_hits_total") > 20  # reloads map the cache
        assert metric_value(m, "inferd_model_load_duration_seconds_count") == loads
        # Loads from the cache take milliseconds, even on this busy machine.
        mean_ms = 1e3 * metric_value(m, "inferd_model_load_duration_seconds_sum") / loads
        assert mean_ms < 50, mean_ms
        # The budget holds about 8 (versions that served fewer shapes hold fewer plans).
        assert 5 <= metric_value(m, "inferd_loaded_versions") <= 14
        assert metric_value(m, "inferd_model_evictions_total", model="pinned000", version="1") == 0
        assert metric_value(m, "inferd_model_loads_total", model="pinned000", version="1") == 1
        # Some version of the hottest model was in memory most of the time; the tail came
        # and went.
        assert metric_value(m, "inferd_model_loads_total", model="m099", version="1") <= \
            metric_value(m, "inferd_model_loads_total", model="m050", version="1") + 50
        rows = rows_by_key(srv.index())
        assert rows[("pinned000", "1")]["state"] == "READY"
        assert sum(r["resident_bytes"] for r in rows.values() if "resident_bytes" in r) <= budget
        assert sum(r["state"] == "UNLOADED" for r in rows.values()) > 50

        # A model larger than the whole budget is refused with the reason; the server goes on.
        r = srv.post("/v2/models/huge000/infer", json=body())
        assert r.status_code == 503, r.text
        assert "memory budget" in r.json()["error"] and "never" in r.json()["error"]
        assert rows_by_key(srv.index())[("huge000", "1")]["state"] == "UNAVAILABLE"
        assert srv.post("/v2/models/m000/infer", json=body()).status_code == 200
        # Repository control is off without the flag.
        r = srv.post("/v2/repository/models/m000/unload")
        assert r.status_code == 403 and "--allow-repository-control" in r.json()["error"]


def test_cache_survives_restarts_and_a_bad_cache_is_rebuilt(zipf_setup):
    tmp, repo, budget, one = zipf_setup
    cache = repo / ".inferd-cache"
    good = cache / "m000" / "1.cache"
    assert good.exists() and good.stat().st_size > 200_000
    size = (cache / "m001" / "1.cache").stat().st_size
    # m001's cache truncated, m002's flipped in the middle, m003's from another model.
    with open(cache / "m001" / "1.cache", "r+b") as f:
        f.truncate(size // 2)
    with open(cache / "m002" / "1.cache", "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    shutil.copy(cache / "m004" / "1.cache", cache / "m003" / "1.cache")
    with Server(repo, tmp / "restart.log", "--memory-budget", str(budget),
                threads=2).running() as srv:
        m = srv.metrics()  # the pinned model loaded at start, from its cache
        hits0 = metric_value(m, "inferd_load_cache_hits_total")
        misses0 = metric_value(m, "inferd_load_cache_misses_total")
        assert hits0 == 1 and misses0 == 0
        expect = {}
        for name in ("m000", "m001", "m002", "m003"):
            r = srv.post(f"/v2/models/{name}/infer", json=body())
            assert r.status_code == 200, r.text
            expect[name] = output(r.json(), "logits")
        m = srv.metrics()
        assert metric_value(m, "inferd_load_cache_hits_total") - hits0 == 1
        assert metric_value(m, "inferd_load_cache_misses_total") - misses0 == 3
        log = srv.log()
        assert "model m000 version 1 ready" in log and "cache hit" in log
        for name in ("m001", "m002", "m003"):
            line = next(x for x in log.splitlines() if f"model {name} version 1 ready" in x)
            assert "cache miss" in line and "written" in line, line
        assert (cache / "m001" / "1.cache").stat().st_size == size  # rewritten whole
    # The rebuilt caches now load, with the same answers as from ONNX.
    with Server(repo, tmp / "restart2.log", "--memory-budget", str(budget),
                threads=2).running() as srv:
        for name, logits in expect.items():
            r = srv.post(f"/v2/models/{name}/infer", json=body())
            assert output(r.json(), "logits") == logits
        assert metric_value(srv.metrics(), "inferd_load_cache_hits_total") == 4 + 1  # + pinned


@pytest.fixture(scope="module")
def swap_server(tmp_path_factory, inferd_available):
    tmp = tmp_path_factory.mktemp("swap")
    repo = tmp / "models"
    tiny.make_repo(repo, 1, config=dict(CONFIG, dynamic_batching={"max_queue_delay_us": 1000}),
                   prefix="busy")
    tiny.make_repo(repo, 1, config=CONFIG, prefix="other")
    srv = Server(repo, tmp / "swap.log", "--poll-interval", "0.05",
                 "--allow-repository-control", threads=2)
    with srv.running():
        yield srv, repo


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_version_swaps_under_load(swap_server):
    srv, repo = swap_server
    mdir = repo / "busy000"
    stop = threading.Event()
    lock = threading.Lock()
    seen = {"ok": 0, "failed": [], "mislabelled": [], "backwards": 0, "versions": set()}

    def client(seed):
        s = requests.Session()
        last = 0
        ok = 0
        versions = set()
        while not stop.is_set():
            r = s.post(srv.url("/v2/models/busy000/infer"), json=body(seed=seed), timeout=60)
            if r.status_code != 200:
                with lock:
                    seen["failed"].append((r.status_code, r.text[:200]))
                continue
            j = r.json()
            v = int(j["model_version"])
            if output(j, "version") != [float(v)]:
                with lock:
                    seen["mislabelled"].append((v, output(j, "version")))
            if v < last:
                with lock:
                    seen["backwards"] += 1
            last = v
            versions.add(v)
            ok += 1
        with lock:
            seen["ok"] += ok
            seen["versions"] |= versions

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    t0 = time.monotonic()
    try:
        for k in range(2, SWAPS + 2):
            tiny.write_version(str(mdir), k, tiny.seed_of(0, k))

            def switched():
                rows = rows_by_key(srv.index())
                new, old = rows.get(("busy000", str(k))), rows.get(("busy000", str(k - 1)))
                return new and new["state"] == "READY" and old is None

            wait_until(switched, 15, f"version {k} to replace {k - 1}")
            # The old folder goes only now: the server no longer lists it.
            shutil.rmtree(mdir / str(k - 1))
    finally:
        stop.set()
        [t.join() for t in threads]
    took = time.monotonic() - t0
    assert seen["failed"] == [], seen["failed"][:5]
    assert seen["mislabelled"] == [], seen["mislabelled"][:5]
    assert seen["backwards"] == 0
    assert seen["ok"] > SWAPS
    # Most versions answered at least one request while they were the default.
    assert len(seen["versions"]) > SWAPS // 2, sorted(seen["versions"])
    m = srv.metrics()
    assert metric_value(m, "inferd_version_switches_total") >= SWAPS
    assert metric_value(m, "inferd_loaded_versions") == 2  # busy000 and other000
    log = srv.log()
    assert f"model busy000: version {SWAPS + 1} is now the default (was {SWAPS})" in log
    # Old versions' caches are deleted with their folders.
    wait_until(lambda: len(list((repo / ".inferd-cache" / "busy000").iterdir())) <= 2, 5,
               "old caches to be deleted")
    print(f"{SWAPS} swaps in {took:.1f} s, {seen['ok']} requests")


def test_a_broken_new_version_leaves_the_old_one_serving(swap_server):
    srv, repo = swap_server
    mdir = repo / "other000"
    tmp = mdir / ".tmp-broken"
    tmp.mkdir()
    (tmp / "model.onnx").write_bytes(b"this is not an ONNX file")
    os.rename(tmp, mdir / "2")

    def failed():
        r = rows_by_key(srv.index()).get(("other000", "2"))
        return r if r and r["state"] == "UNAVAILABLE" else None

    row = wait_until(failed, 10, "version 2 to fail")
    assert row["reason"] != ""
    r = srv.post("/v2/models/other000/infer", json=body())
    assert r.status_code == 200 and r.json()["model_version"] == "1"
    assert rows_by_key(srv.index())[("other000", "1")]["state"] == "READY"
    # Fixed: it is switched to.
    shutil.rmtree(mdir / "2")
    tiny.write_version(str(mdir), 2, tiny.seed_of(0, 2))
    wait_until(lambda: srv.post("/v2/models/other000/infer",
                                json=body()).json()["model_version"] == "2", 10, "version 2")


def test_repository_load_and_unload(swap_server):
    srv, repo = swap_server
    r = srv.post("/v2/repository/models/other000/unload")
    assert r.status_code == 200, r.text
    wait_until(lambda: rows_by_key(srv.index())[("other000", "2")]["state"] == "UNLOADED", 5,
               "unloaded")
    row = rows_by_key(srv.index())[("other000", "2")]
    assert row["reason"] == "unloaded by request" and row["resident_bytes"] == 0
    r = srv.post("/v2/models/other000/infer", json=body())
    assert r.status_code == 503 and "unloaded by request" in r.json()["error"]
    assert srv.get("/v2/models/other000/ready").status_code == 400
    ready = {x["name"] for x in srv.post("/v2/repository/index", json={"ready": True}).json()}
    assert "other000" not in ready and "busy000" in ready
    # Load brings it back (and would pick up new versions on disk).
    r = srv.post("/v2/repository/models/other000/load")
    assert r.status_code == 200, r.text
    r = srv.post("/v2/models/other000/infer", json=body())
    assert r.status_code == 200 and r.json()["model_version"] == "2"
    # A model folder that appears is loaded on request.
    tiny.make_repo(repo, 1, config=CONFIG, prefix="fresh")
    r = srv.post("/v2/repository/models/fresh000/load", json={})
    assert r.status_code == 200, r.text
    assert srv.post("/v2/models/fresh000/infer", json=body()).status_code == 200
    # Errors.
    assert srv.post("/v2/repository/models/nothere/load").status_code == 404
    assert srv.post("/v2/repository/models/nothere/unload").status_code == 404
    r = srv.post("/v2/repository/models/other000/load",
                 json={"parameters": {"config": "{}"}})
    assert r.status_code == 400 and "config" in r.json()["error"]
    assert srv.get("/v2/repository/models/other000/load").status_code == 405
    r = srv.post("/v2/repository/index", data=b'{"ready": "yes"}')
    assert r.status_code == 400
