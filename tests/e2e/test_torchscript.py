"""End-to-end tests of TorchScript models (issue #7) through a real `inferd serve`.

- A text model whose network is a TorchScript file: tests/fixtures/torch/bert/1 is the text
  fixture bert/1 (same weights, same pipeline) saved by torch.jit.trace, so every /v1 label and
  score is checked against tests/fixtures/text/expected.json (PyTorch eager, independent of
  inferd), and its tensors against the ONNX export of the same weights served beside it.
- The peers' tiny model as .pt and as .onnx in one server: the same logits (max abs diff
  <= 1e-4) and the reference logits of tiny.check.json. Skipped until the peers' models exist
  (`make bench-engine` makes them), like test_peer_models.py.
- Broken TorchScript versions (truncated, garbage, a state_dict, missing or wrong
  declarations) are UNAVAILABLE with their reason while the server stays ready and serves the
  good ones; a plugin that cannot be loaded makes TorchScript versions UNAVAILABLE and leaves
  ONNX ones alone.
- A memory budget that holds only some of several TorchScript models: they load on demand and
  are evicted, every answer stays right, and the memory in use never exceeds the budget.
- 21 TorchScript models under concurrent load: every answer right, and the process never holds
  more threads than the documented bound (docs/api.md, "Thread bound").

Skipped when the build has no TorchScript support (no libtorch-dev when it was built).
"""
import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, Server, inferd_bin, metric_value

TORCH_FIXTURES = ROOT / "tests" / "fixtures" / "torch"
TEXT_FIXTURES = ROOT / "tests" / "fixtures" / "text"
EXPECTED = json.loads((TEXT_FIXTURES / "expected.json").read_text(encoding="utf-8"))
PEERS = ROOT / "bench" / ".peers" / "models"
TOL = 1e-4


def plugin_path() -> Path:
    return Path(inferd_bin()).parent / "libinferd_torch.so"


@pytest.fixture(scope="module")
def torch_build(inferd_available):
    if not plugin_path().exists():
        pytest.skip(f"{plugin_path()} not built (no libtorch-dev when inferd was built)")
    return inferd_available


def copy_version(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)


def bert_config(**extra) -> dict:
    cfg = json.loads((TORCH_FIXTURES / "bert" / "config.json").read_text())
    cfg.update(extra)
    return cfg


def infer_tensors(srv, model, ids, mask, types=None):
    """KServe v2 JSON infer with int64 [batch, seq] inputs; returns (status, logits or body)."""
    ids = np.asarray(ids, np.int64)
    inputs = [{"name": "input_ids", "datatype": "INT64", "shape": list(ids.shape),
               "data": ids.ravel().tolist()},
              {"name": "attention_mask", "datatype": "INT64", "shape": list(ids.shape),
               "data": np.asarray(mask, np.int64).ravel().tolist()}]
    if types is not None:
        inputs.append({"name": "token_type_ids", "datatype": "INT64", "shape": list(ids.shape),
                       "data": np.asarray(types, np.int64).ravel().tolist()})
    r = srv.post(f"/v2/models/{model}/infer", json={"inputs": inputs}, timeout=60)
    if r.status_code != 200:
        return r.status_code, r.text
    out = r.json()["outputs"][0]
    return 200, np.array(out["data"], np.float32).reshape(out["shape"])


# ---- a text model on TorchScript ----

@pytest.fixture(scope="module")
def text_server(tmp_path_factory, torch_build):
    root = tmp_path_factory.mktemp("torch_text")
    repo = root / "models"
    copy_version(TORCH_FIXTURES / "bert" / "1", repo / "bert_pt" / "1")
    (repo / "bert_pt" / "config.json").write_text(json.dumps(
        bert_config(dynamic_batching={"max_queue_delay_us": 2000})))
    # Platform detected from model.pt: config.json only declares the tensors.
    copy_version(TORCH_FIXTURES / "bert" / "1", repo / "bert_detected" / "1")
    cfg = bert_config()
    del cfg["platform"]
    (repo / "bert_detected" / "config.json").write_text(json.dumps(cfg))
    copy_version(TEXT_FIXTURES / "bert" / "1", repo / "bert_onnx" / "1")
    with Server(repo, root / "inferd.log", threads=2).running() as srv:
        yield srv


def test_text_pipeline_on_torchscript_matches_reference(text_server):
    want = next(v for v in EXPECTED["versions"] if v["model"] == "bert" and v["version"] == 1)
    for model in ("bert_pt", "bert_detected"):
        meta = text_server.get(f"/v2/models/{model}").json()
        assert meta["platform"] == "torchscript", meta
        assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask",
                                                       "token_type_ids"]
        assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}]
        texts = [t["text"] for t in want["texts"]]
        r = text_server.post(f"/v1/models/{model}:predict", json={"instances": texts})
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert len(preds) == len(texts)
        for pred, w in zip(preds, want["texts"]):
            assert pred["label"] == w["label"], (model, w["name"], pred)
            assert abs(pred["score"] - w["score"]) <= TOL, (model, w["name"], pred, w["score"])
            assert pred.get("truncated", False) == w["truncated"], (model, w["name"])
            assert [t["label"] for t in pred["top_k"]] == [l for l, _ in w["top_k"]]
            np.testing.assert_allclose([t["score"] for t in pred["top_k"]],
                                       [s for _, s in w["top_k"]], atol=TOL)


def test_torchscript_and_onnx_of_the_same_weights_agree(text_server):
    check = json.loads((TORCH_FIXTURES / "check.json").read_text())
    for case in check["cases"]:
        got = {}
        for model in ("bert_pt", "bert_onnx"):
            code, got[model] = infer_tensors(text_server, model, case["input_ids"],
                                             case["attention_mask"], case["token_type_ids"])
            assert code == 200, got[model]
        want = np.array(case["logits"], np.float32)
        assert got["bert_pt"].shape == want.shape
        assert float(np.abs(got["bert_pt"] - got["bert_onnx"]).max()) <= TOL
        assert float(np.abs(got["bert_pt"] - want).max()) <= TOL


def test_concurrent_texts_are_batched_and_right(text_server):
    want = next(v for v in EXPECTED["versions"] if v["model"] == "bert" and v["version"] == 1)
    cases = [t for t in want["texts"] if t["text"].strip()]

    def one(i):
        w = cases[i % len(cases)]
        r = text_server.post("/v1/models/bert_pt:predict", json={"text": w["text"]})
        assert r.status_code == 200, r.text
        p = r.json()["predictions"][0]
        return p["label"] == w["label"] and abs(p["score"] - w["score"]) <= TOL

    with ThreadPoolExecutor(8) as ex:
        assert all(ex.map(one, range(96)))
    m = text_server.metrics()
    rows = metric_value(m, "inferd_batch_size_sum", model="bert_pt", version="1")
    batches = metric_value(m, "inferd_batch_size_count", model="bert_pt", version="1")
    assert rows >= 96 and batches < rows, (rows, batches)  # some batches held several texts


def test_memory_of_a_torchscript_version_is_reported(text_server):
    # The micro BERT's weights are about 110 KB (28k floats); the ONNX copy holds them too.
    m = text_server.metrics()
    pt = metric_value(m, "inferd_model_memory_bytes", model="bert_pt", version="1")
    assert 100_000 <= pt <= 1_000_000, pt


# ---- the peers' tiny model as .pt and .onnx ----

def test_peer_tiny_pt_matches_its_onnx(tmp_path, torch_build):
    files = [PEERS / f for f in ("tiny.pt", "tiny.onnx", "tiny.check.json", "tiny.json")]
    if not all(f.exists() for f in files):
        pytest.skip("peer model tiny not made (run make bench-engine once)")
    info = json.loads((PEERS / "tiny.json").read_text())
    repo = tmp_path / "models"
    (repo / "tiny_pt" / "1").mkdir(parents=True)
    (repo / "tiny_pt" / "1" / "model.pt").symlink_to(PEERS / "tiny.pt")
    (repo / "tiny_pt" / "config.json").write_text(json.dumps({
        "inputs": [{"name": n, "datatype": "INT64", "dims": [-1, -1]} for n in info["inputs"]],
        "outputs": [{"name": info["output"], "datatype": "FP32",
                     "dims": [-1, info["labels"]]}]}))
    (repo / "tiny_onnx" / "1").mkdir(parents=True)
    (repo / "tiny_onnx" / "1" / "model.onnx").symlink_to(PEERS / "tiny.onnx")
    with Server(repo, tmp_path / "inferd.log", threads=2).running() as srv:
        cases = json.loads((PEERS / "tiny.check.json").read_text())["cases"]
        assert cases
        for case in cases:
            _, pt = infer_tensors(srv, "tiny_pt", case["input_ids"], case["attention_mask"])
            _, ox = infer_tensors(srv, "tiny_onnx", case["input_ids"], case["attention_mask"])
            want = np.array(case["logits"], np.float32)
            assert isinstance(pt, np.ndarray) and isinstance(ox, np.ndarray), (pt, ox)
            assert pt.shape == want.shape == ox.shape
            d = float(np.abs(pt - ox).max())
            assert d <= TOL, f"batch {case['batch']} seq {case['seq']}: .pt vs .onnx {d}"
            assert float(np.abs(pt - want).max()) <= TOL


# ---- broken models ----

def test_broken_torchscript_versions_are_refused_and_the_server_serves_on(tmp_path, torch_build):
    good = TORCH_FIXTURES / "bert" / "1"
    pt = (good / "model.pt").read_bytes()
    repo = tmp_path / "models"
    broken = {
        1: ("truncated", pt[:len(pt) // 2], "not a TorchScript file libtorch can load"),
        2: ("garbage", os.urandom(4096), "not a TorchScript file libtorch can load"),
        3: ("empty", b"", "not a TorchScript file libtorch can load"),
        4: ("state_dict", (TORCH_FIXTURES / "state_dict.pt").read_bytes(),
            "not a TorchScript file libtorch can load"),
    }
    for v, (_, data, _) in broken.items():
        copy_version(good, repo / "broken" / str(v))
        (repo / "broken" / str(v) / "model.pt").write_bytes(data)
    (repo / "broken" / "config.json").write_text(json.dumps(
        bert_config(version_policy={"all": True})))
    # Declarations missing, and in the wrong order.
    copy_version(good, repo / "undeclared" / "1")
    (repo / "undeclared" / "config.json").write_text(json.dumps({"platform": "torchscript"}))
    copy_version(good, repo / "swapped" / "1")
    cfg = bert_config()
    cfg["inputs"][0], cfg["inputs"][1] = cfg["inputs"][1], cfg["inputs"][0]
    (repo / "swapped" / "config.json").write_text(json.dumps(cfg))
    copy_version(good, repo / "wrongdims" / "1")
    cfg = bert_config()
    cfg["outputs"][0]["dims"] = [-1, 5]
    (repo / "wrongdims" / "config.json").write_text(json.dumps(cfg))
    copy_version(good, repo / "baddtype" / "1")
    cfg = bert_config()
    cfg["inputs"][2]["datatype"] = "LONG"
    (repo / "baddtype" / "config.json").write_text(json.dumps(cfg))
    copy_version(good, repo / "good" / "1")
    (repo / "good" / "config.json").write_text(json.dumps(bert_config()))

    with Server(repo, tmp_path / "inferd.log", threads=2).running() as srv:
        rows = {(r["name"], r["version"]): r for r in srv.index()}
        for v, (what, _, reason) in broken.items():
            row = rows[("broken", str(v))]
            assert row["state"] == "UNAVAILABLE", (what, row)
            assert reason in row["reason"], (what, row)
        assert "config.json must declare the model's inputs" in rows[("undeclared", "1")]["reason"]
        assert ("config.json inputs[0] is 'attention_mask' but forward's argument 0 is "
                "'input_ids'") in rows[("swapped", "1")]["reason"]
        assert ("warm-up run: output 0 ('logits') is FP32 [2, 3] but config.json declares FP32 "
                "[-1, 5]") in rows[("wrongdims", "1")]["reason"]
        baddtype = [r for r in rows.values() if r["name"] == "baddtype"]
        assert baddtype and all(r["state"] == "UNAVAILABLE" for r in baddtype), baddtype
        assert "inputs[2].datatype: unknown datatype 'LONG'" in baddtype[0]["reason"], baddtype
        assert rows[("good", "1")]["state"] == "READY"
        # Each refusal is logged with its reason.
        log = srv.log()
        for v in broken:
            assert (f"model broken version {v} failed to load: not a TorchScript file libtorch "
                    "can load") in log, log
        assert "model swapped version 1 failed to load: config.json inputs[0]" in log
        r = srv.post("/v1/models/broken:predict", json={"text": "hello"})
        assert r.status_code == 503, r.text
        r = srv.post("/v1/models/good:predict", json={"text": "The quick brown fox"})
        assert r.status_code == 200, r.text
        assert srv.get("/v2/health/ready").status_code == 200
        assert srv.proc.poll() is None


@pytest.mark.parametrize("plugin", ["not_a_library", "missing"])
def test_unloadable_plugin_leaves_onnx_models_serving(tmp_path, inferd_available, plugin):
    """A plugin that is not a library, and no plugin at all (what a build without libtorch-dev
    has): TorchScript versions are UNAVAILABLE with the reason, ONNX ones serve. Runs on any
    build, with or without libtorch."""
    repo = tmp_path / "models"
    copy_version(TORCH_FIXTURES / "bert" / "1", repo / "bert_pt" / "1")
    (repo / "bert_pt" / "config.json").write_text(json.dumps(bert_config()))
    copy_version(TEXT_FIXTURES / "bert" / "1", repo / "bert_onnx" / "1")
    path = tmp_path / "libinferd_torch.so"
    if plugin == "not_a_library":
        path.write_text("not an ELF file\n")
        want = f"cannot load {path}"
    else:
        want = f"TorchScript support is not installed: no plugin at {path}"
    if not plugin_path().exists():  # built without libtorch-dev: no plugin is ever looked for
        want = ("this build of inferd has no TorchScript support (install libtorch-dev and "
                "rebuild)")
    env_before = os.environ.get("INFERD_TORCH_PLUGIN")
    os.environ["INFERD_TORCH_PLUGIN"] = str(path)
    try:
        srv = Server(repo, tmp_path / "inferd.log", threads=2).start()
    finally:
        if env_before is None:
            del os.environ["INFERD_TORCH_PLUGIN"]
        else:
            os.environ["INFERD_TORCH_PLUGIN"] = env_before
    try:
        srv.wait_ready()
        rows = {r["name"]: r for r in srv.index()}
        assert rows["bert_pt"]["state"] == "UNAVAILABLE"
        assert want in rows["bert_pt"]["reason"], rows["bert_pt"]
        assert f"model bert_pt version 1 failed to load: {want}" in srv.log()
        assert rows["bert_onnx"]["state"] == "READY"
        r = srv.post("/v1/models/bert_onnx:predict", json={"text": "The quick brown fox"})
        assert r.status_code == 200, r.text
        r = srv.post("/v1/models/bert_pt:predict", json={"text": "The quick brown fox"})
        assert r.status_code == 503 and want in r.text, r.text
        assert srv.get("/v2/health/ready").status_code == 200
    finally:
        assert srv.stop() == 0, srv.log()


# ---- residency: a memory budget that holds only some TorchScript models ----

def test_memory_budget_evicts_and_reloads_torchscript_models(tmp_path, torch_build):
    want = next(v for v in EXPECTED["versions"] if v["model"] == "bert" and v["version"] == 1)
    cases = [t for t in want["texts"] if t["text"].strip()]
    repo = tmp_path / "models"
    n_models = 6
    for i in range(n_models):
        copy_version(TORCH_FIXTURES / "bert" / "1", repo / f"m{i}" / "1")
        (repo / f"m{i}" / "config.json").write_text(json.dumps(
            bert_config(dynamic_batching={"max_queue_delay_us": 500})))
    # One model's resident bytes once it has served (weights, descriptions, pipeline).
    with Server(repo, tmp_path / "calibrate.log", "--memory-budget", "1G",
                threads=2).running() as srv:
        for w in cases[:4]:
            assert srv.post("/v1/models/m0:predict", json={"text": w["text"]}).status_code == 200
        one = {r["name"]: r for r in srv.index()}["m0"]["resident_bytes"]
    assert 100_000 <= one <= 1_000_000, one
    # 15/16 of the budget is for loaded versions: three models fit, four do not. (A first load
    # reserves an estimate from the file sizes, ~430 KB here, which also fits.)
    budget = int(one * 3.3)

    srv = Server(repo, tmp_path / "inferd.log", "--memory-budget", str(budget), threads=2)
    used = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                used.append(metric_value(srv.metrics(), "inferd_memory_used_bytes"))
            except Exception:  # noqa: BLE001  (the server may be stopping)
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    with srv.running():
        try:
            rows = {r["name"]: r for r in srv.index()}
            assert all(r["state"] == "UNLOADED" for r in rows.values()), rows  # on demand
            sampler.start()

            def client(k):
                bad = []
                for j in range(24):
                    i = (j + k) % n_models
                    w = cases[(j * 3 + k) % len(cases)]
                    r = srv.post(f"/v1/models/m{i}:predict", json={"text": w["text"]}, timeout=60)
                    if r.status_code != 200:
                        bad.append((i, r.status_code, r.text[:200]))
                        continue
                    p = r.json()["predictions"][0]
                    if p["label"] != w["label"] or abs(p["score"] - w["score"]) > TOL:
                        bad.append((i, w["name"], p))
                return bad

            with ThreadPoolExecutor(3) as ex:
                bad = [b for bs in ex.map(client, range(3)) for b in bs]
            assert bad == [], bad[:5]
            stop.set()
            sampler.join()
            m = srv.metrics()
            assert metric_value(m, "inferd_memory_budget_bytes") == budget
            evictions = metric_value(m, "inferd_evictions_total")
            loads = metric_value(m, "inferd_loads_total")
            assert evictions >= 3, evictions
            assert loads >= n_models + 3, loads
            assert 1 <= metric_value(m, "inferd_loaded_versions") <= 3
            # TorchScript has no load cache: its loads are neither hits nor misses.
            assert metric_value(m, "inferd_load_cache_misses_total") == 0
            assert used and max(used) <= budget, (max(used), budget)
            rows = {r["name"]: r for r in srv.index()}
            assert sum(r.get("resident_bytes", 0) for r in rows.values()) <= budget
            log = srv.log()
            assert "model m0 version 1 ready (platform torchscript" in log
        finally:
            stop.set()


# ---- 21 models under load: the thread bound ----

def thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_21_torchscript_models_under_load_stay_within_the_thread_bound(tmp_path, torch_build):
    """docs/api.md, "Thread bound": 1 + 1 + H + W + W x (T - 1) + L x T (loaders, while they
    load and 2 s after) + (T - 1) (OpenBLAS's pool, once a TorchScript model is loaded). With
    T = 2, W = 2, H = 2, L = 1: 11 while the 21 models load, 9 once the loader has gone."""
    want = next(v for v in EXPECTED["versions"] if v["model"] == "bert" and v["version"] == 1)
    cases = [t for t in want["texts"] if t["text"].strip()]
    repo = tmp_path / "models"
    for i in range(21):
        copy_version(TORCH_FIXTURES / "bert" / "1", repo / f"m{i:02d}" / "1")
        (repo / f"m{i:02d}" / "config.json").write_text(json.dumps(
            bert_config(dynamic_batching={"max_queue_delay_us": 1000})))
    threads, workers, http, loaders = 2, 2, 2, 1
    serving = 1 + 1 + http + workers + workers * (threads - 1) + (threads - 1)
    loading = serving + loaders * threads
    env_before = os.environ.pop("OPENBLAS_NUM_THREADS", None)  # inferd sets it from --threads
    try:
        srv = Server(repo, tmp_path / "inferd.log", "--workers", str(workers), "--http-threads",
                     str(http), "--loader-threads", str(loaders), threads=threads).start()
    finally:
        if env_before is not None:
            os.environ["OPENBLAS_NUM_THREADS"] = env_before
    samples = []  # (phase, threads)
    phase = ["loading"]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((phase[0], thread_count(srv.pid)))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        srv.wait_ready(timeout=120)
        assert all(r["state"] == "READY" for r in srv.index()), srv.index()
        assert "TorchScript backend: libtorch" in srv.log()
        time.sleep(3)  # the loader thread leaves 2 s after its last load
        phase[0] = "serving"

        def one(i):
            w = cases[i % len(cases)]
            r = srv.post(f"/v1/models/m{i % 21:02d}:predict", json={"text": w["text"]},
                         timeout=60)
            assert r.status_code == 200, r.text
            p = r.json()["predictions"][0]
            return p["label"] == w["label"] and abs(p["score"] - w["score"]) <= TOL

        with ThreadPoolExecutor(16) as ex:
            results = list(ex.map(one, range(21 * 30)))
        assert all(results)
        m = srv.metrics()
        rows = sum(metric_value(m, "inferd_batch_size_sum", model=f"m{i:02d}", version="1")
                   for i in range(21))
        assert rows >= 21 * 30
    finally:
        stop.set()
        sampler.join()
        assert srv.stop() == 0, srv.log()
    most = {p: max((n for q, n in samples if q == p), default=0) for p in ("loading", "serving")}
    print(f"threads: up to {most['loading']} while loading (bound {loading}), "
          f"{most['serving']} while serving (bound {serving})")
    assert most["serving"] > 0 and len(samples) > 100
    assert most["loading"] <= loading, (most, loading)
    assert most["serving"] <= serving, (most, serving)
