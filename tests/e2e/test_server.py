"""End-to-end tests of `inferd serve` (issue #3): health, metadata, the repository index, infer
with JSON and binary tensors, output selection, every error class (each answered with a JSON
error naming the field, the server staying ready after each), batching under concurrent
clients with its metrics, padding across lengths, admission control, the thread bound and
priorities read from /proc, and the drain on SIGTERM.

The models are the engine's correctness fixtures (tests/fixtures/engine), so results can be
compared with what ONNX Runtime computed for the same inputs.
"""
import json
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, Server, inferd_bin, make_repo, metric_value

MAX_BODY = 1 << 20
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())


def case(name):
    return next(c for c in MANIFEST["cases"] if c["name"] == name)


@pytest.fixture(scope="module")
def server(tmp_path_factory, inferd_available):
    root = tmp_path_factory.mktemp("server")
    repo = make_repo(root / "models", {
        "text": {"case": "peer_bert_op14"},
        "batched": {"case": "peer_bert_op14",
                    "config": {"dynamic_batching": {"max_queue_delay_us": 20000}}},
        "token": {"case": "bert_token_op15",
                  "config": {"max_batch_size": 4,
                             "dynamic_batching": {"max_queue_delay_us": 100000,
                                                  "pad_dims": True}}},
        "h96": {"case": "bert_h96_op14",
                "config": {"max_batch_size": 4,
                           "dynamic_batching": {"max_queue_delay_us": 100000,
                                                "pad_dims": True}}},
        "mlp": {"case": "mlp_features_op11"},
        "cnn": {"case": "textcnn_maxpool_op11"},
        "multi": {"case": "peer_bert_op14", "versions": [1, 2, 3],
                  "config": {"version_policy": {"specific": [1, 3]}}},
        "limited": {"case": "peer_bert_op14",
                    "config": {"dynamic_batching": {"max_queue_delay_us": 400000,
                                                    "max_queue_size": 1}}},
        "slow": {"case": "peer_bert_op14",
                 "config": {"dynamic_batching": {"max_queue_delay_us": 400000}}},
        "broken": {"file": b"this is not an ONNX file"},
        "badconfig": {"case": "peer_bert_op14", "config": {"max_batch_size": 4, "colour": "red"}},
    })
    srv = Server(repo, root / "inferd.log", "--workers", "2", "--http-threads", "2",
                 "--max-body", str(MAX_BODY), threads=2)
    with srv.running():
        yield srv


def text_request(ids, mask=None, **extra):
    ids = np.asarray(ids, dtype=np.int64)
    mask = np.ones_like(ids) if mask is None else np.asarray(mask, dtype=np.int64)
    body = {"inputs": [
        {"name": "input_ids", "shape": list(ids.shape), "datatype": "INT64",
         "data": ids.flatten().tolist()},
        {"name": "attention_mask", "shape": list(mask.shape), "datatype": "INT64",
         "data": mask.tolist()},  # nested on purpose: both forms are accepted
    ]}
    body.update(extra)
    return body


def output(resp_json, name):
    out = next(o for o in resp_json["outputs"] if o["name"] == name)
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def binary_body(header: dict, blobs):
    head = json.dumps(header).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head)),
                                    "Content-Type": "application/octet-stream"}


def split_binary(resp):
    n = int(resp.headers["Inference-Header-Content-Length"])
    head = json.loads(resp.content[:n])
    blobs, off = {}, n
    for o in head["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        if size is not None:
            blobs[o["name"]] = resp.content[off:off + size]
            off += size
    assert off == len(resp.content)
    return head, blobs


def assert_ready(srv):
    r = srv.get("/v2/health/ready")
    assert r.status_code == 200, (r.status_code, r.text)


# ---- health, metadata, index ----

def test_health(server):
    r = server.get("/v2/health/live")
    assert (r.status_code, r.json()) == (200, {"live": True})
    r = server.get("/v2/health/ready")
    assert (r.status_code, r.json()) == (200, {"ready": True})


def test_server_metadata(server):
    r = server.get("/v2")
    assert r.status_code == 200
    meta = r.json()
    assert meta["name"] == "inferd"
    assert re.match(r"^\d+\.\d+\.\d+$", meta["version"])
    assert "binary_tensor_data" in meta["extensions"]


def test_repository_index_reports_failures_with_reasons(server):
    rows = {(r["name"], r["version"]): r for r in server.index()}
    assert rows[("broken", "1")]["state"] == "UNAVAILABLE"
    assert rows[("broken", "1")]["reason"] != ""
    # A bad config.json is reported for the model as a whole, naming the key.
    assert rows[("badconfig", "")]["state"] == "UNAVAILABLE"
    assert "unknown key 'colour'" in rows[("badconfig", "")]["reason"]
    # version_policy.specific: 1 and 3, not 2.
    assert ("multi", "2") not in rows
    for r in rows.values():
        # Triton's four keys, and the bytes each version holds in memory (#5).
        assert set(r) == {"name", "version", "state", "reason"} | (
            {"resident_bytes"} if r["version"] else set())
        assert r["state"] in ("READY", "LOADING", "UNAVAILABLE")
        assert (r["reason"] == "") == (r["state"] == "READY")
    # The failures are logged with their reasons too.
    assert "model broken version 1 failed to load" in server.log()
    assert "unknown key 'colour'" in server.log()


def test_a_broken_model_does_not_stop_the_others(server):
    server.require_ready("text")
    rows = {(r["name"], r["version"]): r["state"] for r in server.index()}
    assert rows[("text", "1")] == "READY" and rows[("broken", "1")] == "UNAVAILABLE"
    assert "model text version 1 ready" in server.log()


def test_model_metadata_from_the_graph(server):
    server.require_ready("text")
    r = server.get("/v2/models/text")
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["name"] == "text"
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [
        {"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 5]}]
    server.require_ready("multi")
    assert server.get("/v2/models/multi").json()["versions"] == ["1", "3"]
    r = server.get("/v2/models/multi/versions/1")
    assert r.status_code == 200 and r.json()["versions"] == ["1"]


def test_model_ready(server):
    server.require_ready("text")
    r = server.get("/v2/models/text/ready")
    assert r.status_code == 200 and r.json()["ready"] is True
    assert server.get("/v2/models/multi/versions/3/ready").status_code == 200
    r = server.get("/v2/models/broken/ready")
    assert r.status_code == 400 and r.json()["ready"] is False and r.json()["error"]
    r = server.get("/v2/models/nope/ready")
    assert r.status_code == 404 and "unknown model 'nope'" in r.json()["error"]
    r = server.get("/v2/models/multi/versions/2/ready")
    assert r.status_code == 404 and "unknown version 2" in r.json()["error"]


# ---- infer ----

@pytest.mark.parametrize("run", ["b1_s7", "b3_s33", "b5_s7", "b1_s33_padded"])
def test_infer_json_matches_onnx_runtime(server, run):
    server.require_ready("text")
    c = case("peer_bert_op14")
    spec = next(r for r in c["runs"] if r["name"] == run)
    ids = np.load(FIXTURES / spec["inputs"]["input_ids"])
    mask = np.load(FIXTURES / spec["inputs"]["attention_mask"])
    want = np.load(FIXTURES / spec["outputs"]["logits"])
    r = server.post("/v2/models/text/infer", json=text_request(ids, mask, id=f"req-{run}"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == f"req-{run}"
    assert body["model_name"] == "text" and body["model_version"] == "1"
    got = output(body, "logits")
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= max(c["tolerance"], 1e-4) * 10


def test_infer_binary_both_ways(server):
    server.require_ready("text")
    ids = np.array([[101, 7, 8, 9, 102]], dtype=np.int64)
    mask = np.ones_like(ids)
    want = output(server.post("/v2/models/text/infer", json=text_request(ids)).json(), "logits")
    header = {"id": "bin-1", "parameters": {"binary_data_output": True}, "inputs": [
        {"name": "input_ids", "shape": [1, 5], "datatype": "INT64",
         "parameters": {"binary_data_size": ids.nbytes}},
        {"name": "attention_mask", "shape": [1, 5], "datatype": "INT64",
         "parameters": {"binary_data_size": mask.nbytes}}]}
    body, headers = binary_body(header, [ids.tobytes(), mask.tobytes()])
    r = server.post("/v2/models/text/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    head, blobs = split_binary(r)
    assert head["id"] == "bin-1"
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 4 * 5
    got = np.frombuffer(blobs["logits"], dtype=np.float32).reshape(1, 5)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_statistics_extension_counts_requests_batches_and_times(server):
    """Triton's statistics extension: per version, requests by outcome with their time, rows,
    batches, queue and compute time, and when the last batch ran."""
    server.require_ready("mlp")
    assert "statistics" in server.get("/v2").json()["extensions"]

    def stats():
        r = server.get("/v2/models/mlp/versions/1/stats")
        assert r.status_code == 200, r.text
        (s,) = r.json()["model_stats"]
        assert s["name"] == "mlp" and s["version"] == "1"
        return s

    before = stats()
    t0 = time.time() * 1000
    feats = np.linspace(-1, 1, 60, dtype=np.float32).reshape(3, 20)
    inputs = [{"name": "features", "shape": [3, 20], "datatype": "FP32",
               "data": feats.flatten().tolist()}]
    for _ in range(2):
        assert server.post("/v2/models/mlp/infer", json={"inputs": inputs}).status_code == 200
    bad = [{"name": "features", "shape": [1, 20], "datatype": "FP32", "data": [1.0]}]
    assert server.post("/v2/models/mlp/infer", json={"inputs": bad}).status_code == 400
    after = stats()
    st, st0 = after["inference_stats"], before["inference_stats"]
    assert st["success"]["count"] - st0["success"]["count"] == 2
    assert st["success"]["ns"] > st0["success"]["ns"]
    assert st["fail"]["count"] - st0["fail"]["count"] == 1
    assert st["queue"]["count"] - st0["queue"]["count"] == 2
    assert st["compute_infer"]["count"] - st0["compute_infer"]["count"] == 2
    assert st["compute_infer"]["ns"] > st0["compute_infer"]["ns"]
    assert after["inference_count"] - before["inference_count"] == 6  # rows
    assert after["execution_count"] - before["execution_count"] == 2
    assert t0 - 1000 <= after["last_inference"] <= time.time() * 1000 + 1000
    # Every model, one model's versions, and the errors.
    all_names = {s["name"] for s in server.get("/v2/models/stats").json()["model_stats"]}
    assert {"mlp", "text", "multi"} <= all_names
    versions = [s["version"] for s in server.get("/v2/models/multi/stats").json()["model_stats"]]
    assert sorted(versions) == ["1", "3"], versions  # version_policy serves 1 and 3
    for path, words in (("/v2/models/nope/stats", "nope"),
                        ("/v2/models/mlp/versions/9/stats", "version 9"),
                        ("/v2/models/multi/versions/2/stats", "version 2")):
        r = server.get(path)
        assert r.status_code == 404 and words in r.json()["error"], r.text
    assert server.post("/v2/models/mlp/stats").status_code == 405


def test_outputs_selection(server):
    server.require_ready("mlp")
    feats = np.linspace(-1, 1, 40, dtype=np.float32).reshape(2, 20)
    inputs = [{"name": "features", "shape": [2, 20], "datatype": "FP32",
               "data": feats.flatten().tolist()}]
    r = server.post("/v2/models/mlp/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["logits", "scores"]
    full = {o["name"]: o for o in r.json()["outputs"]}
    # Only scores, as JSON.
    r = server.post("/v2/models/mlp/infer",
                    json={"inputs": inputs, "outputs": [{"name": "scores"}]})
    assert [o["name"] for o in r.json()["outputs"]] == ["scores"]
    assert r.json()["outputs"][0]["data"] == full["scores"]["data"]
    # scores as JSON, logits as binary, in the order asked.
    r = server.post("/v2/models/mlp/infer", json={"inputs": inputs, "outputs": [
        {"name": "scores"}, {"name": "logits", "parameters": {"binary_data": True}}]})
    assert r.status_code == 200
    head, blobs = split_binary(r)
    assert [o["name"] for o in head["outputs"]] == ["scores", "logits"]
    assert "data" in head["outputs"][0] and "data" not in head["outputs"][1]
    np.testing.assert_allclose(np.frombuffer(blobs["logits"], dtype=np.float32),
                               np.asarray(full["logits"]["data"], dtype=np.float32))


def test_versions_are_routed(server):
    server.require_ready("multi")
    body = text_request([[101, 5, 102]])
    for path in ("/v2/models/multi/infer", "/v2/models/multi/versions/1/infer",
                 "/v2/models/multi/versions/3/infer"):
        r = server.post(path, json=body)
        assert r.status_code == 200, (path, r.text)
    assert server.post("/v2/models/multi/infer", json=body).json()["model_version"] == "3"
    assert server.post("/v2/models/multi/versions/1/infer",
                       json=body).json()["model_version"] == "1"


# ---- errors: each a JSON error naming the field, the server still ready after it ----

GOOD_IDS = {"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [101, 5, 102]}
GOOD_MASK = {"name": "attention_mask", "shape": [1, 3], "datatype": "INT64", "data": [1, 1, 1]}

ERROR_CASES = [
    ("unknown model", "/v2/models/nope/infer", {"inputs": [GOOD_IDS, GOOD_MASK]}, 404,
     "unknown model 'nope'"),
    ("unknown version", "/v2/models/text/versions/9/infer", {"inputs": [GOOD_IDS, GOOD_MASK]},
     404, "unknown version 9"),
    ("bad version", "/v2/models/text/versions/x1/infer", {"inputs": []}, 404,
     "unknown version 'x1'"),
    ("malformed JSON", "/v2/models/text/infer", b'{"inputs": [', 400, "invalid JSON"),
    ("wrong datatype", "/v2/models/text/infer",
     {"inputs": [dict(GOOD_IDS, datatype="FP32", data=[1.0, 2.0, 3.0]), GOOD_MASK]}, 400,
     "inputs[0].datatype: input 'input_ids' is INT64, got FP32"),
    ("wrong rank", "/v2/models/text/infer",
     {"inputs": [dict(GOOD_IDS, shape=[3]), GOOD_MASK]}, 400,
     "inputs[0].shape: input 'input_ids' has 2 dims, got 1"),
    ("fixed dim", "/v2/models/cnn/infer",
     {"inputs": [{"name": "input_ids", "shape": [1, 3], "datatype": "INT64",
                  "data": [1, 2, 3]}]}, 400, "inputs[0].shape[1]: input 'input_ids' needs 32"),
    ("element count", "/v2/models/text/infer",
     {"inputs": [dict(GOOD_IDS, data=[1, 2]), GOOD_MASK]}, 400,
     "inputs[0].data: shape [1,3] needs 3 elements, got 2"),
    ("batch too large", "/v2/models/text/infer",
     {"inputs": [dict(GOOD_IDS, shape=[9, 1], data=[1] * 9),
                 dict(GOOD_MASK, shape=[9, 1], data=[1] * 9)]}, 400,
     "inputs[0].shape[0]: batch of 9 exceeds max_batch_size 8"),
    ("missing input", "/v2/models/text/infer", {"inputs": [GOOD_IDS]}, 400,
     "inputs: missing input 'attention_mask'"),
    ("unknown input", "/v2/models/text/infer",
     {"inputs": [GOOD_IDS, GOOD_MASK, dict(GOOD_IDS, name="token_type_ids")]}, 400,
     "inputs: 3 given"),
    ("unknown input name", "/v2/models/text/infer",
     {"inputs": [GOOD_IDS, dict(GOOD_MASK, name="mask")]}, 400,
     "inputs[1].name: unknown input 'mask'"),
    ("unknown output", "/v2/models/text/infer",
     {"inputs": [GOOD_IDS, GOOD_MASK], "outputs": [{"name": "probs"}]}, 400,
     "outputs[0].name: unknown output 'probs'"),
    ("bad timeout", "/v2/models/text/infer",
     {"inputs": [GOOD_IDS, GOOD_MASK], "parameters": {"timeout": "soon"}}, 400,
     "parameters.timeout"),
    ("model failed to load", "/v2/models/broken/infer", {"inputs": [GOOD_IDS, GOOD_MASK]}, 503,
     "unavailable"),
    ("unknown path", "/v2/modelz", b"", 404, "unknown path '/v2/modelz'"),
]


@pytest.mark.parametrize("name,path,body,status,fragment", ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_errors_name_the_field(server, name, path, body, status, fragment):
    if path.startswith("/v2/models/text") or path.startswith("/v2/models/cnn"):
        server.require_ready(path.split("/")[3])
    if isinstance(body, bytes):
        r = server.post(path, data=body)
    else:
        r = server.post(path, json=body)
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    assert fragment in r.json()["error"], r.json()["error"]
    assert_ready(server)


def test_binary_size_mismatch(server):
    server.require_ready("text")
    ids = np.array([[101, 5, 102]], dtype=np.int64)
    header = {"inputs": [
        {"name": "input_ids", "shape": [1, 3], "datatype": "INT64",
         "parameters": {"binary_data_size": 16}}, GOOD_MASK]}
    body, headers = binary_body(header, [ids.tobytes()[:16]])
    r = server.post("/v2/models/text/infer", data=body, headers=headers)
    assert r.status_code == 400
    assert "inputs[0].parameters.binary_data_size: 16 bytes" in r.json()["error"]
    body, headers = binary_body(dict(header, inputs=[
        dict(header["inputs"][0], parameters={"binary_data_size": 24}), GOOD_MASK]),
        [ids.tobytes()[:20]])
    r = server.post("/v2/models/text/infer", data=body, headers=headers)
    assert r.status_code == 400 and "binary data: the inputs declare 24 bytes" in r.json()["error"]
    assert_ready(server)


def test_wrong_method(server):
    r = server.session.get(server.url("/v2/models/text/infer"), timeout=10)
    assert r.status_code == 405 and "use POST" in r.json()["error"]
    r = server.post("/v2/health/ready")
    assert r.status_code == 405
    assert_ready(server)


def raw_request(port, data: bytes, timeout=10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


def test_body_over_max_body_is_413(server):
    # Announced too large: refused before the body is sent.
    resp = raw_request(server.port, (
        f"POST /v2/models/text/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n").encode())
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert "--max-body" in json.loads(body)["error"]
    # Chunked, so only counted while reading: read, dropped, then refused.
    chunk = b"x" * (MAX_BODY + 100)
    resp = raw_request(server.port, (
        b"POST /v2/models/text/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(chunk):x}\r\n".encode() + chunk +
        b"\r\n0\r\n\r\n"))
    assert resp.startswith(b"HTTP/1.1 413"), resp[:100]
    assert_ready(server)


def test_headers_too_large_do_not_hurt(server):
    resp = raw_request(server.port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " +
                       b"a" * 100000 + b"\r\nConnection: close\r\n\r\n")
    assert re.match(rb"HTTP/1.1 4(13|31)", resp) or resp == b"", resp[:100]
    assert_ready(server)


# ---- batching under concurrent clients, and its metrics ----

def test_concurrent_clients_are_batched(server):
    server.require_ready("batched")
    rng = np.random.default_rng(3)
    reqs = [rng.integers(1, 999, size=(1, 6), dtype=np.int64) for _ in range(48)]
    # Each input alone (no other requests in flight) is the reference.
    alone = [output(server.post("/v2/models/text/infer", json=text_request(ids)).json(),
                    "logits") for ids in reqs[:4]]
    before = server.metrics()

    def one(ids):
        r = server.session.post(server.url("/v2/models/batched/infer"),
                                json=text_request(ids), timeout=30)
        return r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(one, reqs))
    assert all(s == 200 for s, _ in results), [b for s, b in results if s != 200][:3]
    for k in range(4):  # batched with others, sliced back: the same numbers
        np.testing.assert_allclose(output(results[k][1], "logits"), alone[k], atol=1e-4)
    after = server.metrics()
    labels = {"model": "batched", "version": "1"}
    ok = metric_value(after, "inferd_request_success_total", **labels) - \
        metric_value(before, "inferd_request_success_total", **labels)
    assert ok == 48
    batches = metric_value(after, "inferd_batch_size_count", **labels)
    rows = metric_value(after, "inferd_batch_size_sum", **labels)
    singles = metric_value(after, "inferd_batch_size_bucket", le="1", **labels)
    assert rows == 48
    assert batches < 48 and singles < batches, (batches, singles)  # some batches held > 1
    assert metric_value(after, "inferd_pending_requests", **labels) == 0
    assert metric_value(after, "inferd_execution_count_total", **labels) == batches
    for fam in ("request", "queue", "compute"):
        assert metric_value(after, f"inferd_{fam}_duration_seconds_count", **labels) >= 48
        assert metric_value(after, f"inferd_{fam}_duration_us_total", **labels) > 0
    assert metric_value(after, "process_cpu_seconds_total") > 0
    assert metric_value(after, "process_resident_memory_bytes") > 0
    assert metric_value(after, "process_threads") > 0


def padded_batches_answer_as_alone(server, model, lengths, seed, check):
    """Sends token sequences of these lengths to `model` (pad_dims batching) one at a time,
    then all at once; check(n, alone, together) compares each answer JSON with the one it got
    alone. The requests must reach the server within the batch delay to share a batch; on a
    loaded machine a client thread can be late, so a round where none shared is tried again.
    Every round's answers must match, and some round must have shared a padded batch."""
    server.require_ready(model)
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, 500, size=(1, n), dtype=np.int64) for n in lengths]

    def infer(ids):
        r = server.session.post(server.url(f"/v2/models/{model}/infer"), json=text_request(ids),
                                timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    alone = [infer(ids) for ids in seqs]  # one at a time: each its own batch
    labels = {"model": model, "version": "1"}
    batches_per_round = []
    for _ in range(5):
        before = server.metrics()
        with ThreadPoolExecutor(max_workers=len(seqs)) as pool:
            together = list(pool.map(infer, seqs))
        after = server.metrics()
        batches_per_round.append(metric_value(after, "inferd_batch_size_count", **labels) -
                                 metric_value(before, "inferd_batch_size_count", **labels))
        for n, a, t in zip(lengths, alone, together):
            check(n, a, t)
        if batches_per_round[-1] < len(seqs):
            break
    assert min(batches_per_round) < len(seqs), batches_per_round  # some shared a batch


def test_padding_batches_different_lengths(server):
    def check(n, alone, together):
        for name in ("logits", "last_hidden_state"):
            got, want = output(together, name), output(alone, name)
            assert got.shape[:2] == (1, n)  # cut back to the request's own length
            np.testing.assert_allclose(got, want, atol=1e-4)

    padded_batches_answer_as_alone(server, "token", [5, 9, 7], 5, check)


def test_padded_batch_on_valid_tokens_answers_each_request_as_alone(server):
    """Requests of different lengths batched and padded by the server run, for a model whose
    layers allow it (bert_h96_op14), on their valid tokens alone (test_engine_fixtures checks
    the mode is taken); each answer must be the one it gets alone."""
    def check(n, alone, together):
        np.testing.assert_allclose(output(together, "logits"), output(alone, "logits"),
                                   atol=1e-4)

    # Any two of these lengths sharing a batch pad it by more than 8%.
    padded_batches_answer_as_alone(server, "h96", [17, 30, 60], 9, check)


# ---- admission control ----

def test_queue_full_is_refused_at_once(server):
    server.require_ready("limited")
    first = {}

    def send_first():
        first["r"] = server.session.post(server.url("/v2/models/limited/infer"),
                                         json=text_request([[101, 5, 102]]), timeout=30)

    t = threading.Thread(target=send_first)
    t.start()
    labels = {"model": "limited", "version": "1"}
    deadline = time.monotonic() + 5
    while metric_value(server.metrics(), "inferd_pending_requests", **labels) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    t0 = time.monotonic()
    r = server.post("/v2/models/limited/infer", json=text_request([[101, 6, 102]]))
    assert r.status_code == 429, r.text
    assert "queue full" in r.json()["error"]
    assert time.monotonic() - t0 < 0.3  # not after the 400 ms batch delay
    t.join()
    assert first["r"].status_code == 200
    assert_ready(server)


def test_request_timeout_answers_503_before_the_client_gives_up(server):
    server.require_ready("slow")
    first = {}

    def send_first():
        first["r"] = server.session.post(server.url("/v2/models/slow/infer"),
                                         json=text_request([[101, 5, 102]]), timeout=30)

    t = threading.Thread(target=send_first)
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    r = server.post("/v2/models/slow/infer",
                    json=text_request([[101, 5, 102]], parameters={"timeout": 50000}))
    took = time.monotonic() - t0
    assert r.status_code == 503, r.text
    assert "timed out" in r.json()["error"]
    assert took < 0.35, took  # answered at its own deadline, not the batch's
    t.join()
    assert first["r"].status_code == 200
    labels = {"model": "slow", "version": "1"}
    assert metric_value(server.metrics(), "inferd_request_failure_total", **labels) >= 1


# ---- threads: the bound on /proc/<pid>/task, and priorities ----

def tasks(pid):
    out = []
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (t / "stat").read_text()
        except FileNotFoundError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out.append((comm, int(fields[16])))  # field 19 of stat: nice
    return out


def test_thread_bound_and_priorities_under_load(server):
    server.require_ready("text")
    threads, workers, http_threads = 2, 2, 2
    # main + the residency manager + one loader (while it has loaded or unloaded in the last
    # seconds) and its OpenMP team + HTTP threads + workers + each worker's OpenMP team
    # members (see docs/api.md).
    bound = 2 + threads + http_threads + workers + workers * (threads - 1)
    stop = threading.Event()
    seen = []
    budget_ok = []
    health_s = []

    def load():
        while not stop.is_set():
            r = server.session.post(server.url("/v2/models/text/infer"),
                                    json=text_request([[101] + list(range(1, 30)) + [102]]),
                                    timeout=30)
            assert r.status_code == 200

    with ThreadPoolExecutor(max_workers=6) as pool:
        futs = [pool.submit(load) for _ in range(6)]
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            seen.append(tasks(server.pid))
            t0 = time.monotonic()
            assert server.get("/v2/health/ready").status_code == 200
            health_s.append(time.monotonic() - t0)
            m = server.metrics()
            budget_ok.append(metric_value(m, "inferd_compute_threads_in_use") <=
                             metric_value(m, "inferd_compute_threads"))
            time.sleep(0.05)
        stop.set()
        for f in futs:
            f.result()
    counts = [len(s) for s in seen]
    assert max(health_s) < 1.0, max(health_s)  # health never waits behind inference
    assert max(counts) <= bound, (max(counts), bound, sorted(seen[counts.index(max(counts))]))
    assert all(budget_ok)
    last = seen[-1]
    work = [n for c, n in last if c.startswith("inferd-work")]
    other = [n for c, n in last if not c.startswith("inferd-work") and c != "inferd-loader"]
    assert len(work) >= workers
    assert min(work) > max(other), last  # compute yields to HTTP


# ---- connection limits ----

@pytest.fixture(scope="module")
def limited_server(tmp_path_factory, inferd_available):
    root = tmp_path_factory.mktemp("limits")
    (root / "models").mkdir()
    srv = Server(root / "models", root / "inferd.log", "--max-connections", "4",
                 "--http-timeout", "1", "--body-timeout", "1", threads=1)
    with srv.running():
        srv.session.close()
        yield srv


def closed_by_server(sock, wait_s):
    """True when the server closes sock within wait_s (recv gives EOF or a reset)."""
    sock.settimeout(wait_s)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_connection_limit(limited_server):
    socks = [socket.create_connection(("127.0.0.1", limited_server.port)) for _ in range(10)]
    try:
        for s in socks:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive
        time.sleep(0.5)
        answered = set()
        for i, s in enumerate(socks):
            s.settimeout(0.01)
            try:
                if s.recv(4096).startswith(b"HTTP/1.1 200"):
                    answered.add(i)
            except socket.timeout:
                pass
        # Only --max-connections are taken in; the rest wait in the listen backlog...
        assert 1 <= len(answered) <= 4, len(answered)
        # ...and are served as idle connections time out and free their slots.
        deadline = time.monotonic() + 8
        while len(answered) < len(socks) and time.monotonic() < deadline:
            for i, s in enumerate(socks):
                if i not in answered:
                    try:
                        if s.recv(4096).startswith(b"HTTP/1.1 200"):
                            answered.add(i)
                    except socket.timeout:
                        pass
            time.sleep(0.05)
        assert len(answered) == len(socks)
    finally:
        for s in socks:
            s.close()
    assert limited_server.get("/v2/health/live").status_code == 200


def test_idle_connection_is_closed(limited_server):
    with socket.create_connection(("127.0.0.1", limited_server.port)) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost:")  # and then nothing (slow loris)
        t0 = time.monotonic()
        assert closed_by_server(s, 5)
        assert time.monotonic() - t0 < 4
    assert limited_server.get("/v2/health/live").status_code == 200


def test_slow_body_is_cut_off(limited_server):
    with socket.create_connection(("127.0.0.1", limited_server.port)) as s:
        s.sendall(b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 4 and not closed:
            try:
                s.sendall(b"x")  # a byte every 0.3 s: never idle, never done
            except OSError:
                closed = True
                break
            closed = closed_by_server(s, 0.3)
        assert closed
        assert time.monotonic() - t0 < 3.5
    assert limited_server.get("/v2/health/live").status_code == 200


# ---- shutdown ----

def test_sigterm_drains_in_flight_requests(tmp_path, inferd_available):
    repo = make_repo(tmp_path / "models", {
        "slow": {"case": "peer_bert_op14",
                 "config": {"dynamic_batching": {"max_queue_delay_us": 300000}}}})
    srv = Server(repo, tmp_path / "inferd.log", "--log-format", "json").start().wait_ready()
    srv.require_ready("slow")
    results = []

    def one(i):
        r = srv.session.post(srv.url("/v2/models/slow/infer"),
                             json=text_request([[101, i, 102]]), timeout=30)
        results.append(r.status_code)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + 5
    while metric_value(srv.metrics(), "inferd_pending_requests", model="slow", version="1") < 4:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    srv.session.close()
    srv.proc.send_signal(signal.SIGTERM)
    for t in ts:
        t.join()
    code = srv.proc.wait(20)
    srv.log_file.close()
    assert results == [200] * 4
    assert code == 0, srv.log()
    # Every line inferd writes is a JSON object (sanitizer builds may add their own text).
    lines = [json.loads(line) for line in srv.log().splitlines() if line.startswith("{")]
    msgs = [line["msg"] for line in lines]
    assert any("draining" in m for m in msgs) and msgs[-1] == "stopped"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


def test_help_lists_every_flag():
    out = subprocess.run([inferd_bin(), "serve", "--help"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 0
    for flag in ("--repo", "--host", "--http-port", "--threads", "--workers", "--http-threads",
                 "--max-body", "--max-header", "--max-connections", "--http-timeout",
                 "--body-timeout", "--drain-timeout", "--worker-nice", "--log-format",
                 "--log-level"):
        assert flag in out.stdout
    assert "default 127.0.0.1" in out.stdout and "default 8000" in out.stdout
    bad = subprocess.run([inferd_bin(), "serve", "--repo", "/x", "--threads", "zero"],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "--threads" in bad.stderr
