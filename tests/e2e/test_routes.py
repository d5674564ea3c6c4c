"""End-to-end tests of per-team routes (issue #8): config.json "routes" map a team's own JSON
request and response shape onto the text API.

The models are the text fixtures of test_text_api.py (tests/fixtures/text). Every answer that
comes through a route is compared with what /v1 predict answers for the same texts, and with
the reference scores in expected.json, so a route that reached the wrong version, mixed up
fields or reordered texts fails.

Covered: a one-text route and a list route (with a fixed version and an object around the
list), a bare-list route on a multi-label model, field names as declared, the errors (400
naming the route's field, 405, the server staying ready), a path claimed by two models (the
later one's routes refused, that model still serving), routes of a model without a pipeline
refused, the route counters and the model's own counters in /metrics, routes appearing and
disappearing with config.json while the server runs, and a route to a version that is not in
memory waiting for its load.
"""
import json
import time

import pytest

from conftest import FIXTURES as ENGINE_FIXTURES, Server, metric_value
from test_text_api import TEXT_FIXTURES, TOL, copy_version, expected

TEXTS = [t["text"] for t in expected("bert", 1)["texts"]]

BERT_ROUTES = [
    {"path": "/category_predict", "input": "text",
     "output": {"label": "category", "score": "confidence"}},
    {"path": "/category_predict_nlp", "input": "texts", "batch": True, "version": 1,
     "output": {"top_k": "candidates", "results": "predictions"}},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, inferd_available):
    root = tmp_path_factory.mktemp("routes")
    repo = root / "models"
    copy_version(TEXT_FIXTURES / "bert" / "1", repo / "bert" / "1")
    copy_version(TEXT_FIXTURES / "bert" / "2", repo / "bert" / "2")
    (repo / "bert" / "config.json").write_text(json.dumps(
        {"version_policy": {"all": True}, "routes": BERT_ROUTES}))
    copy_version(TEXT_FIXTURES / "chars" / "1", repo / "chars" / "1")
    (repo / "chars" / "config.json").write_text(json.dumps({"routes": [
        {"path": "/tags/predict", "input": "q", "batch": True,
         "output": {"label": "tag", "score": None, "top_k": "tags"}}]}))
    # A later model (by name) claims bert's path: that route is refused, its other one serves.
    copy_version(TEXT_FIXTURES / "chars" / "1", repo / "zclash" / "1")
    (repo / "zclash" / "config.json").write_text(json.dumps({"routes": [
        {"path": "/category_predict", "input": "text"},
        {"path": "/zclash/own", "input": "text"}]}))
    # A tensor-only model: no pipeline, so no route.
    (repo / "tensors" / "1").mkdir(parents=True)
    (repo / "tensors" / "1" / "model.onnx").symlink_to(
        ENGINE_FIXTURES / "peer_bert_op14" / "model.onnx")
    (repo / "tensors" / "config.json").write_text(json.dumps(
        {"routes": [{"path": "/tensors/predict", "input": "text"}]}))
    srv = Server(repo, root / "inferd.log", "--max-text-items", "64", threads=2)
    with srv.running("bert", "chars", "zclash", "tensors"):
        yield srv


def v1(srv, model, version, texts):
    path = f"/v1/models/{model}/versions/{version}:predict"
    r = srv.post(path, json={"instances": texts})
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def assert_ready(srv):
    assert srv.get("/ready").status_code == 200
    assert srv.get("/v2/health/ready").status_code == 200


def test_one_text_route_answers_in_the_declared_fields(server):
    want = v1(server, "bert", 2, TEXTS)
    ref = expected("bert", 2)["texts"]
    for text, w, x in zip(TEXTS, want, ref):
        r = server.post("/category_predict", json={"text": text})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"category", "confidence"}, body
        # The default version (2): the same as /v1 predict, and as the reference.
        assert body["category"] == w["label"] == x["label"], (text, body, w)
        assert abs(body["confidence"] - w["score"]) <= 1e-6, (text, body, w)
        assert abs(body["confidence"] - x["score"]) <= TOL, (text, body, x)
        assert r.headers["Inferd-Model"] == "bert"
        assert r.headers["Inferd-Model-Version"] == "2"
        assert r.headers["Content-Type"] == "application/json"


def test_list_route_with_a_fixed_version(server):
    want = v1(server, "bert", 1, TEXTS)
    r = server.post("/category_predict_nlp", json={"texts": TEXTS})
    assert r.status_code == 200, r.text
    assert r.headers["Inferd-Model-Version"] == "1"
    body = r.json()
    assert list(body) == ["predictions"], body
    preds = body["predictions"]
    assert len(preds) == len(TEXTS)
    ref = expected("bert", 1)["texts"]
    for p, w, x in zip(preds, want, ref):
        assert set(p) == {"label", "score", "candidates"}, p
        assert p["label"] == w["label"] == x["label"], (p, w)
        assert abs(p["score"] - w["score"]) <= 1e-6, (p, w)
        # Version 1 has top_k 2: the candidates are /v1's top_k, best first.
        assert [c["label"] for c in p["candidates"]] == [t["label"] for t in w["top_k"]]
        for c, t in zip(p["candidates"], w["top_k"]):
            assert set(c) == {"label", "score"}
            assert abs(c["score"] - t["score"]) <= 1e-6
    # One text in a list is still a list.
    r = server.post("/category_predict_nlp", json={"texts": [TEXTS[2]]})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 1
    assert r.json()["predictions"][0]["label"] == want[2]["label"]


def test_bare_list_route_on_a_multi_label_model(server):
    texts = [t["text"] for t in expected("chars", 1)["texts"]][:8]
    want = v1(server, "chars", 1, texts)
    r = server.post("/tags/predict", json={"q": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list) and len(body) == len(texts), body
    for p, w in zip(body, want):
        # score: null leaves the score out; the tags are the labels over the threshold, with
        # their scores under the plain name since the route has no score field.
        assert set(p) == {"tag", "tags"}, p
        assert p["tag"] == w["label"]
        assert [t["tag"] for t in p["tags"]] == w["labels"], (p, w)
        for t, s in zip(p["tags"], w["scores"]):
            assert abs(t["score"] - s) <= 1e-6


@pytest.mark.parametrize("path,body,field", [
    ("/category_predict", {}, "text: missing"),
    ("/category_predict", {"text": ["a"]}, "text: must be a string, got an array"),
    ("/category_predict", {"text": 5}, "text: must be a string, got an integer"),
    ("/category_predict", {"text": "a", "lang": "en"}, "request: unknown key 'lang'"),
    ("/category_predict", {"instances": ["a"]}, "request: unknown key 'instances'"),
    ("/category_predict", [], "request body: must be a JSON object"),
    ("/category_predict_nlp", {"texts": "a"}, "texts: must be an array of strings"),
    ("/category_predict_nlp", {"texts": []}, "texts: must hold at least one text"),
    ("/category_predict_nlp", {"texts": ["a", None]}, "texts[1]: must be a string, got null"),
    ("/tags/predict", {"texts": ["a"]}, "request: unknown key 'texts' (expected q)"),
])
def test_bad_bodies_name_the_field(server, path, body, field):
    r = server.post(path, json=body)
    assert r.status_code == 400, (r.status_code, r.text)
    assert field in r.json()["error"], r.json()
    assert_ready(server)


def test_bad_bytes_and_methods(server):
    r = server.post("/category_predict", data=b'{"text": ')
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"], r.text
    r = server.post("/category_predict_nlp", data=b'{"texts": ["ok", "bad \xff byte"]}')
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("texts[1]: text item 1 is not valid UTF-8"), r.text
    r = server.post("/category_predict_nlp", json={"texts": ["x"] * 65})
    assert r.status_code == 413 and "texts: 65 texts, at most 64" in r.json()["error"], r.text
    r = server.get("/category_predict")
    assert r.status_code == 405, r.text
    # Exact paths only.
    assert server.post("/category_predict/", json={"text": "a"}).status_code == 404
    assert server.post("/Category_predict", json={"text": "a"}).status_code == 404
    assert_ready(server)


def test_a_path_claimed_twice_stays_with_the_first_model(server):
    r = server.post("/category_predict", json={"text": TEXTS[0]})
    assert r.status_code == 200 and r.headers["Inferd-Model"] == "bert", r.text
    # The later model keeps serving, through its other route and its own API.
    r = server.post("/zclash/own", json={"text": TEXTS[0]})
    assert r.status_code == 200 and r.headers["Inferd-Model"] == "zclash", r.text
    assert set(r.json()) == {"label", "score"}
    assert server.post("/v1/models/zclash:predict", json={"text": "a"}).status_code == 200
    msg = ("route /category_predict refused: model 'bert' already serves this path")
    assert f"model zclash: {msg}" in server.log()
    row = next(x for x in server.index() if x["name"] == "zclash")
    assert row["state"] == "READY" and msg in row["reason"], row


def test_routes_of_a_model_without_a_pipeline_are_refused(server):
    r = server.post("/tensors/predict", json={"text": "a"})
    assert r.status_code == 404, r.text
    msg = ("route /tensors/predict refused: model 'tensors' version 1 has no pipeline.json")
    assert msg in server.log()
    row = next(x for x in server.index() if x["name"] == "tensors")
    assert row["state"] == "READY" and msg in row["reason"], row


def test_route_requests_are_counted(server):
    before = server.metrics()

    def value(text, name, **labels):
        try:
            return metric_value(text, name, **labels)
        except KeyError:
            return 0.0

    ok = dict(route="/category_predict", model="bert", outcome="success")
    bad = dict(route="/category_predict", model="bert", outcome="failure")
    for _ in range(3):
        assert server.post("/category_predict", json={"text": "x"}).status_code == 200
    assert server.post("/category_predict", json={"txt": "x"}).status_code == 400
    after = server.metrics()
    assert value(after, "inferd_route_requests_total", **ok) - \
        value(before, "inferd_route_requests_total", **ok) == 3
    assert value(after, "inferd_route_requests_total", **bad) - \
        value(before, "inferd_route_requests_total", **bad) == 1
    # They are the model version's requests too.
    for name, d in (("inferd_text_request_success_total", 3),
                    ("inferd_text_request_failure_total", 1)):
        assert value(after, name, model="bert", version="2") - \
            value(before, name, model="bert", version="2") == d, name
    # The refused routes have no counters.
    assert 'route="/tensors/predict"' not in after
    assert 'route="/category_predict",model="zclash"' not in after


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_routes_follow_config_json_and_wait_for_loads(tmp_path, inferd_available):
    repo = tmp_path / "models"
    copy_version(TEXT_FIXTURES / "bert" / "2", repo / "bert" / "2")
    copy_version(TEXT_FIXTURES / "chars" / "1", repo / "chars" / "1")
    # One version in memory at a time: the other one loads when it is asked for.
    with Server(repo, tmp_path / "inferd.log", "--poll-interval", "0.1", "--max-loaded", "1",
                threads=1).running() as srv:
        assert srv.post("/category_predict", json={"text": "a"}).status_code == 404
        # A route appears with its config.json...
        cfg = {"routes": [{"path": "/category_predict", "input": "text"}]}
        (repo / "bert" / "config.json").write_text(json.dumps(cfg))
        wait_for(lambda: srv.post("/category_predict", json={"text": "a"}).status_code != 404,
                 what="the route to appear")
        # ...and a request through it waits for a version that is not in memory.
        assert srv.post("/v1/models/chars:predict", json={"text": "a"}).status_code == 200
        wait_for(lambda: next(x for x in srv.index() if x["name"] == "bert")["state"]
                 != "READY", what="bert to be evicted")
        want = expected("bert", 2)["texts"][0]
        r = srv.post("/category_predict", json={"text": want["text"]})
        assert r.status_code == 200, r.text
        assert r.json()["label"] == want["label"]
        assert abs(r.json()["score"] - want["score"]) <= TOL
        assert next(x for x in srv.index() if x["name"] == "bert")["state"] == "READY"
        # A routes entry config.json refuses keeps the previous config (and route), with the
        # key named in the index.
        (repo / "bert" / "config.json").write_text(json.dumps(
            {"routes": [{"path": "/v2/category", "input": "text"}]}))
        wait_for(lambda: "routes[0].path" in next(
            x for x in srv.index() if x["name"] == "bert")["reason"], what="the refusal")
        assert "is under the built-in path /v2" in next(
            x for x in srv.index() if x["name"] == "bert")["reason"]
        assert srv.post("/category_predict", json={"text": "a"}).status_code == 200
        # Renamed: the old path goes, the new one comes.
        cfg = {"routes": [{"path": "/category/v3", "input": "text"}]}
        (repo / "bert" / "config.json").write_text(json.dumps(cfg))
        wait_for(lambda: srv.post("/category_predict", json={"text": "a"}).status_code == 404,
                 what="the old route to go")
        assert srv.post("/category/v3", json={"text": "a"}).status_code == 200
        # A model folder that goes away takes its routes with it.
        import shutil
        shutil.rmtree(repo / "bert")
        wait_for(lambda: srv.post("/category/v3", json={"text": "a"}).status_code == 404,
                 what="the route of a removed model to go")
        assert "model bert: route /category/v3 removed" in srv.log()
