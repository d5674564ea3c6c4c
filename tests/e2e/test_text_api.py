"""End-to-end tests of the text API (issue #4): text in, label out, with the preprocessing that
ships inside each model version.

The models are tests/fixtures/text (made by tools/make_text_fixtures.py): two micro BERT
versions with different WordPiece vocabularies and label sets, and a char model with the peers'
hash rule that is multi-label. expected.json holds, for a set of texts (English, Chinese,
mixed, emoji, empty, over-long...), the token ids of the reference tokenizer
(tools/ref_tokenizer.py) and the scores PyTorch computes on them (checked against ONNX Runtime
when the fixtures were made), so every label and score here is compared with an independent
reference, never with inferd itself.

Covered: /v1 predict (one text, a batch), the KServe text signature (metadata, JSON and binary
tensors, output selection), the raw tensor signature on the same version, invalid UTF-8 and
the other errors (each naming the field or the item, the server staying ready), limits, two
versions side by side, versions whose pipeline does not fit their model, a 50-text request
under concurrent load, texts of one request batched with other requests, the metrics, and
RSS across many valid and invalid text requests.
"""
import json
import shutil
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES as ENGINE_FIXTURES, ROOT, Server, metric_value
from hostile import hammer, vm_rss_kib

TEXT_FIXTURES = ROOT / "tests" / "fixtures" / "text"
EXPECTED = json.loads((TEXT_FIXTURES / "expected.json").read_text(encoding="utf-8"))
TOL = 1e-4
MAX_ITEMS = 64


def expected(model, version):
    return next(v for v in EXPECTED["versions"]
                if v["model"] == model and v["version"] == version)


def copy_version(src: Path, dst: Path, **replace) -> None:
    """Copies a fixture version folder; replace maps a file name to a source file instead."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copy(replace.get(f.name, f), dst / f.name)


@pytest.fixture(scope="module")
def server(tmp_path_factory, inferd_available):
    root = tmp_path_factory.mktemp("text")
    repo = root / "models"
    bert1, bert2, chars1 = (TEXT_FIXTURES / "bert" / "1", TEXT_FIXTURES / "bert" / "2",
                            TEXT_FIXTURES / "chars" / "1")
    # Two versions, each with its own vocabulary and labels; the default is version 2.
    copy_version(bert1, repo / "bert" / "1")
    copy_version(bert2, repo / "bert" / "2")
    (repo / "bert" / "config.json").write_text(json.dumps(
        {"version_policy": {"all": True}, "dynamic_batching": {"max_queue_delay_us": 2000}}))
    copy_version(chars1, repo / "chars" / "1")
    # Versions whose pipeline does not fit the model: 2 feeds no token_type_ids, 3 has four
    # labels for three classes. Version 1 is fine and must serve.
    copy_version(bert1, repo / "misfit" / "1")
    copy_version(bert1, repo / "misfit" / "2", **{"pipeline.json": bert2 / "pipeline.json",
                                                  "vocab.txt": bert2 / "vocab.txt"})
    copy_version(bert1, repo / "misfit" / "3", **{"labels.txt": bert2 / "labels.txt"})
    (repo / "misfit" / "config.json").write_text(json.dumps({"version_policy": {"all": True}}))
    # For the batching test: one length bucket, batches of 8, a long delay so that only full
    # batches leave.
    copy_version(bert1, repo / "mixbatch" / "1")
    (repo / "mixbatch" / "config.json").write_text(json.dumps(
        {"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_us": 1000000,
                                                   "pad_dims": True, "length_buckets": [64]}}))
    # A tensor-only model (no pipeline.json).
    (repo / "tensors" / "1").mkdir(parents=True)
    (repo / "tensors" / "1" / "model.onnx").symlink_to(
        ENGINE_FIXTURES / "peer_bert_op14" / "model.onnx")
    srv = Server(repo, root / "inferd.log", "--workers", "2", "--http-threads", "2",
                 "--max-text-items", str(MAX_ITEMS), "--max-text-bytes", "4096",
                 threads=2)
    with srv.running():
        yield srv


def assert_ready(srv):
    r = srv.get("/v2/health/ready")
    assert r.status_code == 200, (r.status_code, r.text)


def check_prediction(pred, want, multi):
    """One /v1 prediction against the reference."""
    assert pred["label"] == want["label"], (pred, want["name"])
    assert abs(pred["score"] - want["score"]) <= TOL, (pred, want["name"], want["score"])
    assert pred.get("truncated", False) == want["truncated"], (pred, want["name"])
    if multi:
        assert pred["labels"] == want["labels"], (pred, want["name"])
        np.testing.assert_allclose(pred["scores"], want["label_scores"], atol=TOL)
        assert "top_k" not in pred
    else:
        assert [t["label"] for t in pred["top_k"]] == [l for l, _ in want["top_k"]], want["name"]
        np.testing.assert_allclose([t["score"] for t in pred["top_k"]],
                                   [s for _, s in want["top_k"]], atol=TOL)


VERSIONS = [("bert", 1), ("bert", 2), ("chars", 1)]


# ---- metadata ----

def test_metadata_lists_the_text_signature_beside_the_raw_one(server):
    meta = server.get("/v2/models/bert/versions/1").json()
    # The raw tensor signature is unchanged.
    assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask",
                                                   "token_type_ids"]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}]
    assert meta["text"] == {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "score", "datatype": "FP32", "shape": [-1]},
                    {"name": "top_labels", "datatype": "BYTES", "shape": [-1, 2]},
                    {"name": "top_scores", "datatype": "FP32", "shape": [-1, 2]}]}
    # Version 2 (the default) has top_k 3 and no token_type_ids.
    meta = server.get("/v2/models/bert").json()
    assert meta["versions"] == ["1", "2"]
    assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask"]
    assert meta["text"]["outputs"][2]["shape"] == [-1, 3]
    # Multi-label: as many top labels as there are labels.
    meta = server.get("/v2/models/chars").json()
    assert meta["text"]["outputs"][3] == {"name": "top_scores", "datatype": "FP32",
                                          "shape": [-1, 4]}
    assert "text" not in server.get("/v2/models/tensors").json()


# ---- /v1 predict against the reference ----

@pytest.mark.parametrize("model,version", VERSIONS, ids=[f"{m}{v}" for m, v in VERSIONS])
def test_v1_single_texts_match_the_reference(server, model, version):
    exp = expected(model, version)
    multi = exp["function"] == "sigmoid"
    for want in exp["texts"]:
        r = server.post(f"/v1/models/{model}/versions/{version}:predict",
                        json={"text": want["text"]})
        assert r.status_code == 200, (want["name"], r.text)
        body = r.json()
        assert body["model_name"] == model and body["model_version"] == str(version)
        assert len(body["predictions"]) == 1
        check_prediction(body["predictions"][0], want, multi)


@pytest.mark.parametrize("model,version", VERSIONS, ids=[f"{m}{v}" for m, v in VERSIONS])
def test_v1_batch_matches_the_reference_in_order(server, model, version):
    exp = expected(model, version)
    multi = exp["function"] == "sigmoid"
    texts = [t["text"] for t in exp["texts"]]
    r = server.post(f"/v1/models/{model}/versions/{version}:predict", json={"instances": texts})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == len(texts)
    for pred, want in zip(preds, exp["texts"]):
        check_prediction(pred, want, multi)


def test_raw_tensor_signature_on_the_reference_ids(server):
    """The same version still takes token tensors: the reference ids give the reference
    logits, which ties the text path's scores to the reference tokenizer's ids."""
    exp = expected("bert", 1)
    for want in exp["texts"][:6]:
        ids = want["ids"]
        inputs = [{"name": n, "shape": [1, len(ids)], "datatype": "INT64", "data": d}
                  for n, d in (("input_ids", ids), ("attention_mask", [1] * len(ids)),
                               ("token_type_ids", [0] * len(ids)))]
        r = server.post("/v2/models/bert/versions/1/infer", json={"inputs": inputs})
        assert r.status_code == 200, r.text
        logits = r.json()["outputs"][0]["data"]
        np.testing.assert_allclose(logits, want["logits"], atol=TOL)


def test_classification_extension_names_the_labels(server):
    """Triton's classification extension on the raw signature: the two best logits of each
    row as "<value>:<index>:<label>", labels from the version's labels.txt, checked against
    the reference logits and labels."""
    exp = expected("bert", 1)
    texts = exp["texts"][:3]
    L = max(len(t["ids"]) for t in texts)
    ids = [t["ids"] + [0] * (L - len(t["ids"])) for t in texts]
    mask = [[1] * len(t["ids"]) + [0] * (L - len(t["ids"])) for t in texts]
    inputs = [{"name": n, "shape": [len(texts), L], "datatype": "INT64", "data": d}
              for n, d in (("input_ids", ids), ("attention_mask", mask),
                           ("token_type_ids", [[0] * L] * len(texts)))]
    meta = server.get("/v2/models/bert/versions/1").json()
    logits_name = meta["outputs"][0]["name"]
    assert "classification" in server.get("/v2").json()["extensions"]
    r = server.post("/v2/models/bert/versions/1/infer", json={
        "inputs": inputs,
        "outputs": [{"name": logits_name, "parameters": {"classification": 2}}]})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["datatype"] == "BYTES" and out["shape"] == [len(texts), 2], out
    got = np.array(out["data"]).reshape(len(texts), 2)
    for row, want in zip(got, texts):
        best = np.argsort(-np.array(want["logits"]), kind="stable")[:2]
        for cell, k in zip(row, best):
            value, index, label = cell.split(":")
            assert int(index) == k and label == exp["labels"][k], (cell, want["name"])
            assert abs(float(value) - want["logits"][k]) <= TOL, (cell, want["name"])


def test_default_version_is_the_newest_with_its_own_pipeline(server):
    exp = expected("bert", 2)
    for want in exp["texts"][:5]:
        r = server.post("/v1/models/bert:predict", json={"text": want["text"]})
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == "2"
        check_prediction(r.json()["predictions"][0], want, False)


def test_two_versions_side_by_side(server):
    """Different vocabularies and labels, interleaved from concurrent clients: every answer
    uses its own version's tokenizer, model and labels."""
    jobs = []
    for version in (1, 2, 1, 2, 1, 2):
        for want in expected("bert", version)["texts"]:
            jobs.append((version, want))

    def one(job):
        version, want = job
        r = server.post(f"/v1/models/bert/versions/{version}:predict",
                        json={"text": want["text"]})
        return version, want, r

    labels = {v: set(expected("bert", v)["labels"]) for v in (1, 2)}
    assert not labels[1] & labels[2]
    with ThreadPoolExecutor(4) as pool:
        for version, want, r in pool.map(one, jobs):
            assert r.status_code == 200, r.text
            assert r.json()["model_version"] == str(version)
            pred = r.json()["predictions"][0]
            assert pred["label"] in labels[version]
            assert {t["label"] for t in pred["top_k"]} <= labels[version]
            check_prediction(pred, want, False)


# ---- the KServe text signature ----

def test_kserve_text_infer_json(server):
    exp = expected("bert", 1)
    texts = [t["text"] for t in exp["texts"]]
    body = {"id": "t-1", "inputs": [{"name": "text", "datatype": "BYTES",
                                     "shape": [len(texts)], "data": texts}]}
    r = server.post("/v2/models/bert/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert r.json()["id"] == "t-1" and r.json()["model_version"] == "1"
    assert [o["name"] for o in r.json()["outputs"]] == ["label", "score", "top_labels",
                                                        "top_scores"]
    assert out["label"]["datatype"] == "BYTES" and out["label"]["shape"] == [len(texts)]
    assert out["label"]["data"] == [t["label"] for t in exp["texts"]]
    np.testing.assert_allclose(out["score"]["data"], [t["score"] for t in exp["texts"]],
                               atol=TOL)
    assert out["top_labels"]["shape"] == [len(texts), 2]
    assert out["top_labels"]["data"] == [l for t in exp["texts"] for l, _ in t["top_k"]]
    np.testing.assert_allclose(out["top_scores"]["data"],
                               [s for t in exp["texts"] for _, s in t["top_k"]], atol=TOL)
    # Output selection applies to the text outputs.
    body["outputs"] = [{"name": "score"}, {"name": "label"}]
    r = server.post("/v2/models/bert/versions/1/infer", json=body)
    assert [o["name"] for o in r.json()["outputs"]] == ["score", "label"]


def bytes_tensor(texts):
    return b"".join(struct.pack("<I", len(t)) + t for t in texts)


def split_bytes(blob):
    out, off = [], 0
    while off < len(blob):
        (n,) = struct.unpack_from("<I", blob, off)
        out.append(blob[off + 4:off + 4 + n].decode())
        off += 4 + n
    return out


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


def test_kserve_text_infer_binary(server):
    exp = expected("chars", 1)
    texts = [t["text"].encode() for t in exp["texts"]]
    data = bytes_tensor(texts)
    head = json.dumps({"parameters": {"binary_data_output": True}, "inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [len(texts)],
         "parameters": {"binary_data_size": len(data)}}]}).encode()
    r = server.post("/v2/models/chars/infer", data=head + data,
                    headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/octet-stream"
    meta, blobs = split_binary(r)
    assert split_bytes(blobs["label"]) == [t["label"] for t in exp["texts"]]
    np.testing.assert_allclose(np.frombuffer(blobs["score"], dtype=np.float32),
                               [t["score"] for t in exp["texts"]], atol=TOL)
    # Multi-label: each row holds the labels at or above the threshold, padded with "".
    width = len(exp["labels"])
    top = split_bytes(blobs["top_labels"])
    scores = np.frombuffer(blobs["top_scores"], dtype=np.float32).reshape(-1, width)
    for i, want in enumerate(exp["texts"]):
        row = top[i * width:(i + 1) * width]
        k = len(want["labels"])
        assert row == want["labels"] + [""] * (width - k), want["name"]
        np.testing.assert_allclose(scores[i, :k], want["label_scores"], atol=TOL)
        assert np.all(scores[i, k:] == 0)
    # JSON for one output, binary for another.
    head = json.dumps({"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [len(texts)],
         "parameters": {"binary_data_size": len(data)}}],
        "outputs": [{"name": "label"}, {"name": "score", "parameters": {"binary_data": True}}]
    }).encode()
    r = server.post("/v2/models/chars/infer", data=head + data,
                    headers={"Inference-Header-Content-Length": str(len(head))})
    meta, blobs = split_binary(r)
    assert meta["outputs"][0]["data"] == [t["label"] for t in exp["texts"]]
    assert set(blobs) == {"score"}


# ---- errors ----

def test_invalid_utf8_is_a_400_naming_the_item(server):
    before = metric_value(server.metrics(), "inferd_text_request_failure_total",
                          model="bert", version="1")
    body = b'{"instances": ["fine", "also fine", "caf\xe9 au lait"]}'
    r = server.post("/v1/models/bert/versions/1:predict", data=body)
    assert r.status_code == 400, r.text
    assert "instances[2]: text item 2 is not valid UTF-8" in r.json()["error"]
    assert_ready(server)
    # Binary BYTES carry any bytes: the tokenizer finds the bad one.
    data = bytes_tensor([b"ok", b"ok", b"ok", b"bad \xff\xfe"])
    head = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [4],
                                   "parameters": {"binary_data_size": len(data)}}]}).encode()
    r = server.post("/v2/models/bert/versions/1/infer", data=head + data,
                    headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == ("input 'text': text item 3 is not valid UTF-8 "
                                 "(byte offset 4)")
    # KServe JSON names the element.
    r = server.post("/v2/models/bert/versions/1/infer",
                    data=b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], '
                         b'"data": ["ok", "\xc3("]}]}')
    assert r.status_code == 400 and "inputs[0].data[1]: not valid UTF-8" in r.json()["error"]
    assert_ready(server)
    after = metric_value(server.metrics(), "inferd_text_request_failure_total",
                         model="bert", version="1")
    # The last one never parsed, so it counts as a failed infer request, not a text one.
    assert after - before == 2
    # And the next request is served.
    r = server.post("/v1/models/bert/versions/1:predict", json={"text": "still here"})
    assert r.status_code == 200, r.text


TEXT_ERRORS = [
    ("unknown key", "/v1/models/bert:predict", {"txt": "a"}, 400, "unknown key 'txt'"),
    ("both forms", "/v1/models/bert:predict", {"text": "a", "instances": ["b"]}, 400,
     "not both"),
    ("not a string", "/v1/models/bert:predict", {"instances": ["a", 5]}, 400,
     "instances[1]: must be a string, got an integer"),
    ("empty batch", "/v1/models/bert:predict", {"instances": []}, 400, "at least one text"),
    ("too many texts", "/v1/models/bert:predict", {"instances": ["a"] * (MAX_ITEMS + 1)}, 413,
     f"instances: {MAX_ITEMS + 1} texts, at most {MAX_ITEMS} per request"),
    ("text too long", "/v1/models/bert:predict", {"instances": ["a", "b" * 4097]}, 413,
     "instances[1]: text item 1 has 4097 bytes, at most 4096 per text"),
    ("malformed JSON", "/v1/models/bert:predict", b'{"text": ', 400, "invalid JSON"),
    ("no pipeline", "/v1/models/tensors:predict", {"text": "a"}, 400,
     "has no text pipeline (pipeline.json)"),
    ("unknown model", "/v1/models/nope:predict", {"text": "a"}, 404, "unknown model 'nope'"),
    ("unknown version", "/v1/models/bert/versions/7:predict", {"text": "a"}, 404,
     "unknown version 7"),
    ("bad version", "/v1/models/bert/versions/x:predict", {"text": "a"}, 404,
     "unknown version 'x'"),
    ("unavailable version", "/v1/models/misfit/versions/2:predict", {"text": "a"}, 503,
     "token_type_ids"),
    ("no :predict", "/v1/models/bert", {"text": "a"}, 404, "unknown path"),
    ("kserve text too many", "/v2/models/bert/infer",
     {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [MAX_ITEMS + 1],
                  "data": ["a"] * (MAX_ITEMS + 1)}]}, 413, f"at most {MAX_ITEMS} per request"),
    ("kserve text wrong dtype", "/v2/models/bert/infer",
     {"inputs": [{"name": "text", "datatype": "INT64", "shape": [1], "data": [1]}]}, 400,
     "inputs[0].datatype: input 'text' is BYTES, got INT64"),
    ("kserve text unknown output", "/v2/models/bert/infer",
     {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
      "outputs": [{"name": "logits"}]}, 400, "unknown output 'logits'"),
]


@pytest.mark.parametrize("name,path,body,status,fragment", TEXT_ERRORS,
                         ids=[c[0] for c in TEXT_ERRORS])
def test_errors_name_the_field(server, name, path, body, status, fragment):
    if isinstance(body, bytes):
        r = server.post(path, data=body)
    else:
        r = server.post(path, json=body)
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    assert fragment in r.json()["error"], r.json()["error"]
    assert_ready(server)


def test_wrong_method(server):
    r = server.get("/v1/models/bert:predict")
    assert r.status_code == 405 and "use POST" in r.json()["error"]


def test_a_pipeline_that_does_not_fit_makes_only_its_version_unavailable(server):
    rows = {(r["name"], r["version"]): r for r in server.index()}
    assert rows[("misfit", "1")]["state"] == "READY"
    assert rows[("misfit", "2")]["state"] == "UNAVAILABLE"
    assert rows[("misfit", "2")]["reason"] == (
        'pipeline.json: model input "token_type_ids" is not fed by the pipeline (see "inputs")')
    assert rows[("misfit", "3")]["state"] == "UNAVAILABLE"
    assert rows[("misfit", "3")]["reason"] == (
        'pipeline.json: model output "logits" has 3 classes but the labels file has 4')
    log = server.log()
    assert "model misfit version 2 failed to load: pipeline.json" in log
    assert "model misfit version 3 failed to load: pipeline.json" in log
    # The version that fits serves, as the default, with its own labels and scores.
    want = expected("bert", 1)["texts"][0]
    r = server.post("/v1/models/misfit:predict", json={"text": want["text"]})
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == "1"
    check_prediction(r.json()["predictions"][0], want, False)
    r = server.post("/v1/models/misfit/versions/3:predict", json={"text": "a"})
    assert r.status_code == 503 and "labels file has 4" in r.json()["error"]
    r = server.get("/v2/models/misfit/versions/2/ready")
    assert r.status_code == 400 and "token_type_ids" in r.json()["error"]


# ---- batching ----

def test_a_batch_of_50_comes_back_in_order_under_load(server):
    exp = expected("bert", 1)
    texts = [t["text"] for t in exp["texts"]]
    big = [exp["texts"][(7 * i) % len(texts)] for i in range(50)]
    stop = threading.Event()
    errors = []

    def background(seed):
        i = seed
        while not stop.is_set():
            want = exp["texts"][i % len(texts)]
            r = server.post("/v1/models/bert/versions/1:predict",
                            json={"instances": [want["text"]] * (1 + i % 3)})
            if r.status_code != 200 or r.json()["predictions"][0]["label"] != want["label"]:
                errors.append(r.text)
            i += 1

    threads = [threading.Thread(target=background, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            r = server.post("/v1/models/bert/versions/1:predict",
                            json={"instances": [w["text"] for w in big]})
            assert r.status_code == 200, r.text
            preds = r.json()["predictions"]
            assert len(preds) == 50
            for pred, want in zip(preds, big):
                check_prediction(pred, want, False)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]


def test_texts_of_one_request_share_batches_with_other_requests(server):
    """mixbatch: batches of 8, one length bucket, and a 1 s delay, so only full batches leave.
    A 50-text request alone needs 7 batches (the last with 2 rows), and 6 single-text requests
    at least one more: 8 batches if requests never shared one. 56 rows in 7 full batches
    means some batch held texts of the big request and of single ones."""
    m = server.metrics()
    runs0 = metric_value(m, "inferd_execution_count_total", model="mixbatch", version="1")
    rows0 = metric_value(m, "inferd_inference_count_total", model="mixbatch", version="1")
    full0 = metric_value(m, "inferd_batch_size_bucket", model="mixbatch", version="1", le="8")
    le4_0 = metric_value(m, "inferd_batch_size_bucket", model="mixbatch", version="1", le="4")
    exp = expected("bert", 1)
    big = [exp["texts"][i % len(exp["texts"])] for i in range(50)]
    singles = [exp["texts"][i] for i in range(6)]

    def post(texts):
        return server.post("/v1/models/mixbatch:predict",
                           json={"instances": [t["text"] for t in texts]}, timeout=30)

    with ThreadPoolExecutor(7) as pool:
        futures = [pool.submit(post, big)] + [pool.submit(post, [s]) for s in singles]
        responses = [f.result() for f in futures]
    for r, texts in zip(responses, [big] + [[s] for s in singles]):
        assert r.status_code == 200, r.text
        for pred, want in zip(r.json()["predictions"], texts):
            check_prediction(pred, want, False)
    m = server.metrics()
    assert metric_value(m, "inferd_inference_count_total", model="mixbatch",
                        version="1") - rows0 == 56
    assert metric_value(m, "inferd_execution_count_total", model="mixbatch",
                        version="1") - runs0 == 7
    # Every one of the 7 batches was full (8 rows): none at or below 4 rows.
    assert metric_value(m, "inferd_batch_size_bucket", model="mixbatch", version="1",
                        le="8") - full0 == 7
    assert metric_value(m, "inferd_batch_size_bucket", model="mixbatch", version="1",
                        le="4") - le4_0 == 0


# ---- metrics ----

def test_text_metrics(server):
    m0 = server.metrics()
    exp = expected("bert", 2)
    texts = [t["text"] for t in exp["texts"]]
    n_trunc = sum(t["truncated"] for t in exp["texts"])
    r = server.post("/v1/models/bert/versions/2:predict", json={"instances": texts})
    assert r.status_code == 200
    m1 = server.metrics()

    def delta(name, **labels):
        return (metric_value(m1, name, model="bert", version="2", **labels)
                - metric_value(m0, name, model="bert", version="2", **labels))

    assert delta("inferd_text_request_success_total") == 1
    assert delta("inferd_request_success_total") == 1
    assert delta("inferd_text_items_total") == len(texts)
    assert delta("inferd_text_truncated_total") == n_trunc > 0
    assert delta("inferd_tokenize_duration_seconds_count") == 1
    assert delta("inferd_tokenize_duration_seconds_sum") > 0
    # Each text was a request of its own in the queue: queue times are counted per text.
    assert delta("inferd_queue_duration_seconds_count") == len(texts)
    assert delta("inferd_inference_count_total") == len(texts)
    # Tensor-only models have no text series.
    with pytest.raises(KeyError):
        metric_value(m1, "inferd_text_items_total", model="tensors", version="1")


# ---- many text requests: RSS flat ----

TEXT_BODIES = [
    json.dumps({"instances": ["The quick brown fox", "中文文本分类很有趣。", ""]}).encode(),
    json.dumps({"text": "What time does the market open tomorrow?"}).encode(),
    # Over 64K of JSON: parsed and tokenized on a worker (--offload-parse).
    json.dumps({"instances": ["the team won the final match " * 100] * 30}).encode(),
    json.dumps({"instances": ["x"] * (MAX_ITEMS + 1)}).encode(),   # 413: too many texts
    json.dumps({"text": "a" * 5000}).encode(),                     # 413: over --max-text-bytes
    b'{"text": "caf\xe9"}',                                         # 400: not UTF-8
    b'{"instances": ["ok", 7]}',                                    # 400: not a string
    b'{"instances": [',                                             # 400: not JSON
]


@pytest.mark.slow
def test_many_text_requests_leave_rss_flat(server):
    """Valid and invalid text requests by the ten thousand (tokenizing, batching, the worker
    parse of large bodies and every error path) leave the server's RSS where warm-up left it."""
    path = "/v1/models/bert/versions/1:predict"
    hammer(server.port, path, TEXT_BODIES, 4000)  # warm-up: pools, arenas, buffers grown
    before = vm_rss_kib(server.pid)
    t0 = time.monotonic()
    counts = hammer(server.port, path, TEXT_BODIES, 40_000)
    took = time.monotonic() - t0
    after = vm_rss_kib(server.pid)
    assert sum(v for k, v in counts.items() if k != "closed") == 40_000, counts
    assert set(counts) <= {200, 400, 413}, counts
    assert counts[200] == 15_000, counts  # three of every eight bodies are valid
    growth = (after - before) / before
    print(f"40000 text requests in {took:.1f} s ({40000 / took:.0f}/s): VmRSS {before} -> "
          f"{after} KiB ({growth * 100:+.2f}%)")
    assert abs(growth) <= 0.05, (before, after, counts)
    assert_ready(server)
