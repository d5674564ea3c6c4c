"""Hostile and broken input against a real `inferd serve` (issue #6).

Every class of malformed infer request gets a 4xx with a JSON error (or, for abuse of the
connection itself, a closed connection), and the server is still ready afterwards; model and
version names in URLs never reach the file system; symlinks out of the repository are refused;
the limits on body, JSON, header, inputs and connections hold; slow-loris clients are cut off
while health stays fast; one request with bad data cannot fail the requests batched with it;
100,000 bad requests leave RSS flat.

Tests marked `asan` also run against the ASan+UBSan build in `make test` (make e2e-asan).
"""
import json
import re
import shutil
import socket
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import Server, fixture_model, make_repo
from hostile import (closed_by_server, get_raw, hammer, post_raw, raw, read_response,
                     ready_latency_ms, request_bytes, vm_rss_kib)

MAX_BODY = 2 << 20
MAX_HEADER = 8192
MAX_CONNECTIONS = 32
HTTP_TIMEOUT_S = 3
BODY_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory, inferd_available):
    root = tmp_path_factory.mktemp("hostile")
    repo = make_repo(root / "models", {
        "text": {"case": "peer_bert_op14"},
        "batched": {"case": "peer_bert_op14",
                    "config": {"dynamic_batching": {"max_queue_delay_us": 150000}}},
        "mlp": {"case": "mlp_features_op11"},
    })
    srv = Server(repo, root / "inferd.log", "--max-body", str(MAX_BODY),
                 "--max-header", str(MAX_HEADER), "--max-connections", str(MAX_CONNECTIONS),
                 "--http-timeout", str(HTTP_TIMEOUT_S), "--body-timeout", str(BODY_TIMEOUT_S),
                 threads=2)
    with srv.running("text"):
        yield srv


def assert_ready(srv):
    r = get_raw(srv.port, "/v2/health/ready")
    assert r is not None and r.status == 200, r
    assert srv.proc.poll() is None


def assert_json_error(r, lo=400, hi=499):
    assert r is not None, "connection closed without a response"
    assert lo <= r.status <= hi, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    err = r.json()["error"]
    assert isinstance(err, str) and err, r
    return err


IDS = {"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [101, 5, 102]}
MASK = {"name": "attention_mask", "shape": [1, 3], "datatype": "INT64", "data": [1, 1, 1]}


def body_with(ids=None, mask=None, **top):
    b = {"inputs": [IDS if ids is None else ids, MASK if mask is None else mask]}
    b.update(top)
    return json.dumps(b).encode()


def ids_with(**kw):
    """input_ids with fields replaced; data=None drops the data (for binary inputs)."""
    d = dict(IDS, **kw)
    if d.get("data", 0) is None:
        del d["data"]
    return d


def deep(n, leaf=b"1"):
    return b"[" * n + leaf + b"]" * n


# (name, body bytes, extra headers, error fragment or None). Each to /v2/models/text/infer.
MALFORMED = [
    # bad JSON
    ("empty body", b"", {}, "invalid JSON"),
    ("truncated", body_with()[:-7], {}, "invalid JSON"),
    ("trailing garbage", body_with() + b" x", {}, "invalid JSON"),
    ("top-level array", b"[1, 2]", {}, "must be a JSON object"),
    ("top-level string", b'"inputs"', {}, None),
    ("top-level null", b"null", {}, None),
    ("NaN literal", b'{"inputs":[{"name":"input_ids","shape":[1,1],"datatype":"INT64",'
                    b'"data":[NaN]}]}', {}, "invalid JSON"),
    ("Infinity literal", body_with(ids=ids_with(shape=[1, 1])).replace(b"[101, 5, 102]",
                                                                        b"[Infinity]"), {},
     "invalid JSON"),
    ("duplicate key", b'{"inputs":[],"inputs":[]}', {}, "invalid JSON"),
    ("byte order mark", b"\xef\xbb\xbf" + body_with(), {}, "invalid JSON"),
    ("NUL byte", body_with()[:10] + b"\x00" + body_with()[10:], {}, "invalid JSON"),
    # deep nesting
    ("nested data 100000 deep", body_with(ids=ids_with(shape=[1, 1], data=[0])).replace(
        b"[0]", deep(100000)), {}, "invalid JSON"),
    ("nested objects 100000 deep", b'{"id":' + b'{"a":' * 100000 + b"1" + b"}" * 100001, {},
     "invalid JSON"),
    ("nested parameters", body_with(parameters={"timeout": [[[[[[1]]]]]]}), {},
     "parameters.timeout"),
    # huge numbers
    ("number beyond a double", body_with(ids=ids_with(data=[1, 2, 0])).replace(
        b"[1, 2, 0]", b"[1, 2, 1e999]"), {}, "invalid JSON"),
    ("integer beyond 64 bits", body_with().replace(b"101", b"123456789012345678901234567890"),
     {}, "invalid JSON"),
    ("INT64 as a float", body_with(ids=ids_with(data=[1, 2, 3.5])), {},
     "expected an integer, got a number"),
    ("timeout beyond 64 bits", body_with().replace(b'{"inputs"', b'{"parameters":{"timeout":'
                                                                b'99999999999999999999999},'
                                                                b'"inputs"'), {},
     "invalid JSON"),
    ("negative timeout", body_with(parameters={"timeout": -1}), {}, "parameters.timeout"),
    # wrong datatype
    ("FP32 for INT64", body_with(ids=ids_with(datatype="FP32", data=[1.0, 2.0, 3.0])), {},
     "is INT64, got FP32"),
    ("unknown datatype", body_with(ids=ids_with(datatype="INT128")), {},
     "unknown datatype 'INT128'"),
    ("datatype not a string", body_with(ids=ids_with(datatype=7)), {}, "datatype"),
    ("BYTES for INT64", body_with(ids=ids_with(datatype="BYTES", data=["a", "b", "c"])), {},
     "is INT64, got BYTES"),
    ("strings in INT64 data", body_with(ids=ids_with(data=["1", "2", "3"])), {},
     "expected an integer, got a string"),
    ("booleans in INT64 data", body_with(ids=ids_with(data=[True, False, True])), {},
     "expected an integer"),
    ("objects in data", body_with(ids=ids_with(data=[{}, {}, {}])), {}, "expected an integer"),
    # shape and size mismatches
    ("too few elements", body_with(ids=ids_with(data=[1, 2])), {}, "needs 3 elements, got 2"),
    ("too many elements", body_with(ids=ids_with(data=[1, 2, 3, 4])), {},
     "needs 3 elements, got 4"),
    ("rank 1", body_with(ids=ids_with(shape=[3])), {}, "has 2 dims, got 1"),
    ("rank 9", body_with(ids=ids_with(shape=[1] * 9)), {}, "has 2 dims, got 9"),
    ("shape not an array", body_with(ids=ids_with(shape="1,3")), {}, "shape"),
    ("shape of floats", body_with(ids=ids_with(shape=[1.0, 3.0])), {}, "must be an integer"),
    ("batches differ", body_with(mask=dict(MASK, shape=[2, 3], data=[1] * 6)), {},
     "differs from input"),
    ("batch over max_batch_size", body_with(ids=ids_with(shape=[9, 1], data=[1] * 9),
                                            mask=dict(MASK, shape=[9, 1], data=[1] * 9)), {},
     "exceeds max_batch_size 8"),
    # negative, zero and overflowing dims
    ("negative dim", body_with(ids=ids_with(shape=[1, -3])), {}, "must be at least 1"),
    ("zero dim", body_with(ids=ids_with(shape=[1, 0], data=[])), {}, "must be at least 1"),
    ("dim 2^62", body_with(ids=ids_with(shape=[1, 1 << 62])), {}, "elements"),
    ("dim 2^63-1", body_with(ids=ids_with(shape=[1, (1 << 63) - 1])), {}, "elements"),
    ("elements overflow size_t", body_with(ids=ids_with(shape=[8, 1 << 61], data=[1]),
                                           mask=dict(MASK, shape=[8, 1 << 61], data=[1])), {},
     "too many elements"),
    ("bytes overflow size_t", body_with(
        ids=ids_with(shape=[4, 1 << 60], parameters={"binary_data_size": 8}, data=None)), {},
     None),
    # missing, unknown, repeated inputs and outputs; too many inputs
    ("no inputs key", b'{"id":"x"}', {}, "inputs: missing"),
    ("missing input", json.dumps({"inputs": [IDS]}).encode(), {},
     "missing input 'attention_mask'"),
    ("unknown input", body_with(mask=dict(MASK, name="token_type_ids")), {},
     "unknown input 'token_type_ids'"),
    ("input twice", json.dumps({"inputs": [IDS, IDS]}).encode(), {}, "given twice"),
    ("17 inputs", json.dumps({"inputs": [dict(IDS, name=f"x{i}") for i in range(17)]}).encode(),
     {}, "inputs: 17 given"),
    ("input without a name", json.dumps({"inputs": [{k: v for k, v in IDS.items()
                                                     if k != "name"}, MASK]}).encode(), {},
     "name: missing"),
    ("unknown output", body_with(outputs=[{"name": "secret"}]), {}, "unknown output 'secret'"),
    ("too many outputs", body_with(outputs=[{"name": "logits"}] * 5), {}, "outputs: 5 requested"),
    ("unknown top-level key", body_with(inptus=[]), {}, "unknown key 'inptus'"),
    ("unknown input key", body_with(ids=ids_with(contents=[1])), {}, "unknown key 'contents'"),
    ("id not a string", body_with(id=12), {}, "id: must be a string"),
    # invalid UTF-8 and odd Unicode
    ("invalid UTF-8 in a name", body_with().replace(b"input_ids", b"input_\xff\xfe"), {},
     "UTF-8"),
    ("overlong UTF-8", body_with(id="x").replace(b'"x"', b'"\xc0\xaf"'), {}, "UTF-8"),
    ("UTF-8 surrogate", body_with(id="x").replace(b'"x"', b'"\xed\xa0\x80"'), {},
     "UTF-8"),
    ("lone surrogate escape", body_with(id="x").replace(b'"x"', b'"\\ud800"'), {},
     "UTF-8"),
    ("NUL escape in a name", body_with(ids=ids_with(name="input_ids\u0000x")), {}, None),
    # binary tensor extension
    ("binary size but no header", body_with(ids=ids_with(parameters={"binary_data_size": 24},
                                                         data=None)), {},
     "no Inference-Header-Content-Length"),
    ("header length beyond the body", body_with(),
     {"Inference-Header-Content-Length": str(10 ** 6)}, "exceeds the body"),
    ("header length 2^64", body_with(),
     {"Inference-Header-Content-Length": str(1 << 64)}, "Inference-Header-Content-Length"),
    ("negative header length", body_with(), {"Inference-Header-Content-Length": "-5"},
     "non-negative integer"),
    ("header length not a number", body_with(), {"Inference-Header-Content-Length": "12abc"},
     "non-negative integer"),
    ("header length zero", body_with(), {"Inference-Header-Content-Length": "0"},
     "invalid JSON"),
    ("header length inside the JSON", body_with(),
     {"Inference-Header-Content-Length": "20"}, "invalid JSON"),
]

# Binary bodies: JSON header + payload, with the real header length.
def binary_case(header, payload, fragment):
    head = json.dumps(header).encode()
    return head + payload, {"Inference-Header-Content-Length": str(len(head))}, fragment


_bin = {"name": "input_ids", "shape": [1, 3], "datatype": "INT64",
        "parameters": {"binary_data_size": 24}}
_binm = dict(MASK)
BINARY = [
    ("binary size beyond the body", *binary_case({"inputs": [_bin, _binm]}, b"\0" * 8,
                                                 "declare 24 bytes, the body carries 8")),
    ("binary size not the shape's", *binary_case(
        {"inputs": [dict(_bin, parameters={"binary_data_size": 16}), _binm]}, b"\0" * 16,
        "16 bytes, but shape [1,3] of INT64 needs 24")),
    ("binary size negative", *binary_case(
        {"inputs": [dict(_bin, parameters={"binary_data_size": -24}), _binm]}, b"\0" * 24,
        "binary_data_size")),
    ("binary size 2^63-1", *binary_case(
        {"inputs": [dict(_bin, parameters={"binary_data_size": (1 << 63) - 1}), _binm]},
        b"\0" * 24, "binary_data_size")),
    ("binary size a string", *binary_case(
        {"inputs": [dict(_bin, parameters={"binary_data_size": "24"}), _binm]}, b"\0" * 24,
        "binary_data_size")),
    ("binary and JSON data", *binary_case(
        {"inputs": [dict(_bin, data=[1, 2, 3]), _binm]}, b"\0" * 24, "has both data")),
    ("binary bytes left over", *binary_case({"inputs": [_bin, _binm]}, b"\0" * 40,
                                            "declare 24 bytes, the body carries 40")),
    ("BYTES framing for an INT64 input", *binary_case(
        {"inputs": [dict(_bin, datatype="BYTES", parameters={"binary_data_size": 9}), _binm]},
        struct.pack("<I", 1000) + b"hello", "is INT64, got BYTES")),
]


@pytest.mark.asan
@pytest.mark.parametrize("name,body,headers,fragment", MALFORMED + BINARY,
                         ids=[c[0] for c in MALFORMED + BINARY])
def test_malformed_request_is_a_4xx_json_error(server, name, body, headers, fragment):
    r = post_raw(server.port, "/v2/models/text/infer", body, headers)
    err = assert_json_error(r)
    if fragment:
        assert fragment in err, err
    assert_ready(server)


@pytest.mark.asan
def test_out_of_range_float_and_non_finite_binary(server):
    server.require_ready("mlp")
    feats = {"name": "features", "shape": [1, 20], "datatype": "FP32", "data": [0.5] * 19 + [1e39]}
    err = assert_json_error(post_raw(server.port, "/v2/models/mlp/infer",
                                     json.dumps({"inputs": [feats]}).encode()))
    assert "out of range for FP32" in err, err
    # NaN and inf can only come as binary data; the model computes with them and answers (the
    # JSON response writes them as NaN/Infinity, as Triton and Python's json do).
    x = np.full((1, 20), np.nan, dtype=np.float32)
    x[0, 1] = np.inf
    head = json.dumps({"inputs": [dict(feats, data=None, parameters={
        "binary_data_size": x.nbytes})]}).replace(', "data": null', "").encode()
    r = post_raw(server.port, "/v2/models/mlp/infer", head + x.tobytes(),
                 {"Inference-Header-Content-Length": str(len(head))})
    assert r is not None and r.status == 200, r
    json.loads(r.body)  # Python's json accepts NaN/Infinity tokens
    assert_ready(server)


@pytest.mark.asan
def test_bad_requests_on_one_keep_alive_connection(server):
    """Errors do not poison a keep-alive connection: each gets its answer, then a good one."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        for name, body, headers, _ in MALFORMED[:20] + BINARY:
            s.sendall(request_bytes("POST", "/v2/models/text/infer", body, headers, close=False))
            assert_json_error(read_response(s))
        s.sendall(request_bytes("POST", "/v2/models/text/infer", body_with(), close=False))
        r = read_response(s)
        assert r is not None and r.status == 200, (r, server.log())
        assert r.json()["outputs"][0]["shape"] == [1, 5]


# ---- names: validated, looked up, never opened ----

NAME_PATHS = [
    "/v2/models/../infer", "/v2/models/%2e%2e/infer", "/v2/models/%2E%2E/ready",
    "/v2/models/..%2F..%2Fetc%2Fpasswd/ready", "/v2/models/%2Fetc%2Fpasswd/ready",
    "/v2/models//etc/passwd/ready", "/v2/models/text%2F..%2F..%2Fmlp/ready",
    "/v2/models/%00/ready", "/v2/models/text%00.onnx/ready", "/v2/models/~root/ready",
    "/v2/models/%ff%fe/ready", "/v2/models/text/versions/..%2F1/ready",
    "/v2/models/text/versions/-1/ready", "/v2/models/text/versions/0/ready",
    "/v2/models/text/versions/01/ready", "/v2/models/text/versions/1.0/ready",
    "/v2/models/text/versions/99999999999999999999/ready",
    "/v2/models/text/versions/%31%2F..%2F2/infer", "/v2/models/.hidden/ready",
    "/v2/models/" + "a" * 300 + "/ready", "/../../etc/passwd", "/v2/../v2/health/ready/..",
    "/v2/repository/models/..%2F..%2Ftmp/load", "/v2/repository/models/text/load",
]


@pytest.mark.asan
@pytest.mark.parametrize("path", NAME_PATHS)
def test_hostile_names_are_refused(server, path):
    method = "POST" if path.endswith(("/infer", "/load")) else "GET"
    r = raw(server.port, request_bytes(method, path, body_with() if method == "POST" else b""))
    if path == "/v2/../v2/health/ready/..":
        assert r is not None and r.status in (200, 404), r  # either normalised or unknown
    else:
        err = assert_json_error(r)
        # Repository control is off: load/unload are refused whatever the name.
        if path == "/v2/repository/models/text/load":
            assert "repository control is disabled" in err, err
    assert_ready(server)


def test_names_never_open_files(server, tmp_path):
    """Under strace, a burst of hostile names opens no file at all: names are only looked up
    among the folders found at start-up."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    trace = tmp_path / "strace.txt"
    st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=%file", "-o", str(trace),
                           "-p", str(server.pid)], stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)  # attached to every thread
        if st.poll() is not None:
            pytest.skip(f"strace cannot attach: {st.stderr.read().decode()[:200]}")
        for path in NAME_PATHS:
            method = "POST" if path.endswith(("/infer", "/load")) else "GET"
            raw(server.port, request_bytes(method, path,
                                           body_with() if method == "POST" else b""))
        time.sleep(0.2)
    finally:
        st.terminate()
        st.wait(10)
    calls = [line for line in trace.read_text().splitlines()
             if re.match(r"^\d+\s+\w+\(", line)]
    assert calls == [], calls[:10]
    assert_ready(server)


# ---- symlinks out of the repository ----

def test_symlinks_leaving_the_repository_are_refused(tmp_path, inferd_available):
    outside = tmp_path / "outside"
    (outside / "model" / "1").mkdir(parents=True)
    shutil.copy(fixture_model("mlp_features_op11"), outside / "model" / "1" / "model.onnx")
    (outside / "version").mkdir()
    shutil.copy(fixture_model("mlp_features_op11"), outside / "version" / "model.onnx")
    repo = make_repo(tmp_path / "models", {
        "store": {"case": "mlp_features_op11", "versions": [3]},
        "mixed": {"case": "mlp_features_op11", "versions": [1]},
    })
    (repo / "escaped").symlink_to(outside / "model")  # a model folder leading outside
    (repo / "mixed" / "2").symlink_to(outside / "version")  # a version folder leading outside
    (repo / "linked").symlink_to("store")  # a model folder linked inside: served
    with Server(repo, tmp_path / "inferd.log").running() as srv:
        rows = {(r["name"], r["version"]): r for r in srv.index()}
        assert rows[("escaped", "")]["state"] == "UNAVAILABLE", rows
        assert "outside the repository" in rows[("escaped", "")]["reason"]
        assert ("mixed", "2") not in rows, rows  # left out: version 1 is the latest
        assert rows[("mixed", "1")]["state"] == "READY"
        assert rows[("linked", "3")]["state"] == "READY"
        assert "version 2 refused" in srv.log() and "outside the repository" in srv.log()
        feats = {"name": "features", "shape": [1, 20], "datatype": "FP32", "data": [0.1] * 20}
        r = srv.post("/v2/models/escaped/infer", json={"inputs": [feats]})
        assert r.status_code == 503 and "outside the repository" in r.json()["error"], r.text
        r = srv.post("/v2/models/mixed/infer", json={"inputs": [feats]})
        assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
        assert srv.post("/v2/models/linked/infer", json={"inputs": [feats]}).status_code == 200


# ---- limits ----

@pytest.mark.asan
def test_body_limit(server):
    r = raw(server.port, request_bytes("POST", "/v2/models/text/infer", b"",
                                       {"Content-Length": str(MAX_BODY + 1)}))
    assert "--max-body" in assert_json_error(r, 413, 413)
    # Content-Length of 2^64 and more: refused (or the connection closed), never wrapped.
    for cl in (str(1 << 64), "99999999999999999999999", "-1", "12abc"):
        r = raw(server.port, request_bytes("POST", "/v2/models/text/infer", b"",
                                           {"Content-Length": cl}), timeout=5)
        assert r is None or 400 <= r.status < 500, (cl, r)
    assert_ready(server)


def test_json_part_limit(tmp_path, inferd_available):
    """The JSON part of a request is capped at 8 MiB (it costs ~20x its size while parsed);
    binary data is not."""
    repo = make_repo(tmp_path / "models", {"mlp": {"case": "mlp_features_op11"}})
    with Server(repo, tmp_path / "inferd.log", "--max-body", "32M").running() as srv:
        rss0 = vm_rss_kib(srv.pid)
        n = 5_000_000  # ~10 MB of "1,"
        body = (b'{"inputs":[{"name":"features","shape":[1,20],"datatype":"FP32","data":[' +
                b"1," * (n - 1) + b"1]}]}")
        t0 = time.monotonic()
        err = assert_json_error(post_raw(srv.port, "/v2/models/mlp/infer", body, timeout=60),
                                413, 413)
        assert "JSON part" in err and "binary" in err, err
        assert time.monotonic() - t0 < 20
        assert vm_rss_kib(srv.pid) - rss0 < 64 * 1024  # never parsed
        # 10 MB of binary data after a small header is not a JSON problem: the size is.
        head = json.dumps({"inputs": [{"name": "features", "shape": [1, 20],
                                       "datatype": "FP32",
                                       "parameters": {"binary_data_size": 80}}]}).encode()
        r = post_raw(srv.port, "/v2/models/mlp/infer", head + b"\0" * (10 << 20),
                     {"Inference-Header-Content-Length": str(len(head))}, timeout=60)
        err = assert_json_error(r)
        assert "declare 80 bytes" in err, err
        assert_ready(srv)


@pytest.mark.asan
@pytest.mark.parametrize("kind", ["one big header", "many headers", "long request line"])
def test_header_limit(server, kind):
    if kind == "one big header":
        data = request_bytes("GET", "/v2/health/live", headers={"X-Big": "a" * (4 * MAX_HEADER)})
    elif kind == "many headers":
        data = request_bytes("GET", "/v2/health/live",
                             headers={f"X-H{i}": "v" * 20 for i in range(2000)})
    else:
        data = request_bytes("GET", "/v2/models/" + "a" * (4 * MAX_HEADER) + "/ready")
    r = raw(server.port, data, timeout=10)
    assert r is None or r.status in (400, 413, 414, 431), r
    assert_ready(server)


def test_connection_limit_and_slow_loris(server):
    """Slow-loris connections that never finish their headers or bodies are closed after the
    idle or body timeout; while they sit there, health on a new connection stays fast as
    long as connections are left (--max-connections), and every slot comes back."""
    socks = []
    try:
        n = MAX_CONNECTIONS - 4
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            if i % 3 == 0:
                s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            elif i % 3 == 1:
                s.sendall(b"POST /v2/models/text/infer HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 1000\r\n\r\n{\"inputs\": [")
            else:
                s.sendall(b"POST /v2/models/text/infer HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"inp")
            socks.append(s)
        lat = [ready_latency_ms(server.port) for _ in range(20)]
        assert max(lat) < 500, lat
        t0 = time.monotonic()
        for s in socks:
            assert closed_by_server(s, HTTP_TIMEOUT_S + BODY_TIMEOUT_S + 3)
        assert time.monotonic() - t0 < HTTP_TIMEOUT_S + BODY_TIMEOUT_S + 3
    finally:
        for s in socks:
            s.close()
    assert_ready(server)


def test_connections_per_ip_limit(tmp_path, inferd_available):
    """--max-connections-per-ip N: one address holds at most N connections (slow-loris ones
    included); the next is closed at once without an answer, and a slot freed is usable again.
    Off by default: the shared server above lets 28 connections come from 127.0.0.1."""
    repo = make_repo(tmp_path / "models", {"mlp": {"case": "mlp_features_op11"}})
    srv = Server(repo, tmp_path / "inferd.log", "--max-connections-per-ip", "3")
    with srv.running():
        srv.session.close()  # its keep-alive connection would hold one of the three
        time.sleep(0.2)
        socks = []
        try:
            for _ in range(3):  # three slow-loris connections from 127.0.0.1
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                socks.append(s)
            time.sleep(0.3)  # accepted by the server
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                try:
                    s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
                except (ConnectionResetError, BrokenPipeError):
                    pass
                assert read_response(s, 5) is None, \
                    "a fourth connection from one address was served"
            socks.pop().close()
            r, t0 = None, time.monotonic()
            while r is None and time.monotonic() - t0 < 5:
                time.sleep(0.1)
                r = raw(srv.port, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n", timeout=2)
            assert r is not None and r.status == 200, (r, srv.log())
        finally:
            for s in socks:
                s.close()


def test_trickled_body_is_cut_off_at_the_body_timeout(server):
    """A body sent a byte at a time is never idle, but is cut off at --body-timeout."""
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /v2/models/text/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000"
                  b"\r\n\r\n")
        t0 = time.monotonic()
        closed = False
        while not closed and time.monotonic() - t0 < BODY_TIMEOUT_S + 4:
            try:
                s.sendall(b" ")
            except OSError:
                break
            closed = closed_by_server(s, 0.2)
        took = time.monotonic() - t0
        assert took < BODY_TIMEOUT_S + 3, took
    assert_ready(server)


# ---- one bad request in a batch ----

@pytest.mark.asan
def test_bad_token_ids_fail_only_their_own_request(server):
    """A token id outside the vocabulary fails the model's Gather; the requests batched with it
    still get their answers."""
    server.require_ready("batched")
    good = body_with()
    bad = body_with(ids=ids_with(data=[101, 10 ** 9, 102]))
    long_seq = body_with(ids=ids_with(shape=[1, 600], data=[5] * 600),
                         mask=dict(MASK, shape=[1, 600], data=[1] * 600))
    bodies = [good, bad, good, long_seq, good, good]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        rs = list(pool.map(lambda b: post_raw(server.port, "/v2/models/batched/infer", b,
                                              timeout=30), bodies))
    for b, r in zip(bodies, rs):
        if b is good:
            assert r is not None and r.status == 200, (r, server.log())
        else:
            assert_json_error(r)
    assert "out of range" in rs[1].json()["error"], rs[1]
    assert_ready(server)


# ---- 100,000 bad requests: RSS flat ----

BAD_BODIES = [
    b'{"inputs": [',
    body_with(ids=ids_with(datatype="FP32", data=[1.0, 2.0, 3.0])),
    body_with(ids=ids_with(shape=[1, 1 << 62])),
    body_with(ids=ids_with(data=[1, 2])),
    json.dumps({"inputs": [IDS]}).encode(),
    body_with().replace(b"input_ids", b"input_\xff"),
    deep(5000),
    body_with(ids=ids_with(parameters={"binary_data_size": 24}, data=None)),
]


@pytest.mark.slow
def test_100k_bad_requests_leave_rss_flat(server):
    # Warm up: every error path once at volume, so allocator pools and thread arenas exist.
    hammer(server.port, "/v2/models/text/infer", BAD_BODIES, 8000)
    before = vm_rss_kib(server.pid)
    t0 = time.monotonic()
    counts = hammer(server.port, "/v2/models/text/infer", BAD_BODIES, 100_000)
    took = time.monotonic() - t0
    after = vm_rss_kib(server.pid)
    assert sum(v for k, v in counts.items() if k != "closed") == 100_000, counts
    assert all(isinstance(k, int) and 400 <= k < 500 for k in counts), counts
    growth = (after - before) / before
    print(f"100000 bad requests in {took:.1f} s ({100000 / took:.0f}/s): VmRSS {before} -> "
          f"{after} KiB ({growth * 100:+.2f}%)")
    assert abs(growth) <= 0.05, (before, after, counts)
    assert_ready(server)


# ---- safe defaults ----

def test_listens_on_loopback_only_by_default(tmp_path, inferd_available):
    repo = make_repo(tmp_path / "models", {})
    with Server(repo, tmp_path / "inferd.log").running() as srv:
        port_hex = f"{srv.port:04X}"
        listening = []
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{srv.pid}/net/{table}").read_text().splitlines()[1:]:
                f = line.split()
                local, state = f[1], f[3]
                if state == "0A" and local.endswith(":" + port_hex):
                    listening.append(local.split(":")[0])
        assert listening == ["0100007F"], listening  # 127.0.0.1, nothing else
        r = srv.post("/v2/repository/models/x/load")
        # Repository control is off unless --allow-repository-control.
        assert r.status_code == 403 and "repository control is disabled" in r.json()["error"]


# ---- text models: BYTES framing end to end (the KServe text signature), /v1 predict ----

TEXT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "text"


@pytest.fixture(scope="module")
def text_server(tmp_path_factory, inferd_available):
    if not (TEXT_FIXTURES / "chars" / "1" / "pipeline.json").exists():
        pytest.skip("no text fixtures (tests/fixtures/text)")
    root = tmp_path_factory.mktemp("hostile-text")
    shutil.copytree(TEXT_FIXTURES / "chars" / "1", root / "models" / "chars" / "1")
    srv = Server(root / "models", root / "inferd.log", "--max-body", str(MAX_BODY),
                 "--max-text-items", "16", "--max-text-bytes", "1024", threads=2)
    with srv.running("chars"):
        yield srv


def elems(*items):
    return b"".join(struct.pack("<I", len(t)) + t for t in items)


def text_binary(payload, shape, size=None, extra=b""):
    head = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": shape,
                                   "parameters": {"binary_data_size": len(payload)
                                                  if size is None else size}}]}).encode()
    return head + payload + extra, {"Inference-Header-Content-Length": str(len(head))}


TEXT_BINARY = [
    ("element length beyond the body", *text_binary(elems(b"ok") + struct.pack("<I", 10 ** 6)
                                                    + b"short", [2]), "claims"),
    ("element length 2^32-1", *text_binary(struct.pack("<I", 0xFFFFFFFF) + b"x", [1]), "claims"),
    ("length prefix cut short", *text_binary(elems(b"ok") + b"\x05\x00", [2]),
     "ends inside an element length"),
    ("more elements than the shape", *text_binary(elems(b"a", b"b", b"c"), [2]),
     "holds 3 elements, the shape needs 2"),
    ("fewer elements than the shape", *text_binary(elems(b"a"), [2]),
     "holds 1 elements, the shape needs 2"),
    ("shape of 2^40 texts", *text_binary(elems(b"a"), [1 << 40]), None),
    ("size beyond the body", *text_binary(elems(b"a"), [1], size=1000), "declare 1000 bytes"),
    ("size short of the payload", *text_binary(elems(b"abc"), [1], size=4, extra=b"abc"),
     None),
    ("invalid UTF-8 in binary", *text_binary(elems(b"ok", b"\xff\xfe"), [2]),
     "not valid UTF-8"),
    ("text over --max-text-bytes", *text_binary(elems(b"x" * 2000), [1]), "at most 1024"),
]

TEXT_JSON = [
    ("/v1 nested 100000 deep", b'{"instances": ' + deep(100000, b'"a"') + b"}",
     "JSON values"),
    ("/v1 a million numbers", b'{"instances": [' + b"1," * 1000000 + b'1]}', "JSON values"),
    ("/v1 text not a string", json.dumps({"text": ["a"]}).encode(), None),
    ("/v1 lone surrogate", b'{"text": "\\udc00"}', None),
    ("/v1 17 instances", json.dumps({"instances": ["a"] * 17}).encode(), "at most 16"),
    ("/v1 text over --max-text-bytes", json.dumps({"text": "y" * 1025}).encode(),
     "at most 1024"),
    ("/v1 timeout not an integer", json.dumps({"text": "a", "parameters": {"timeout": "1s"}})
     .encode(), None),
]


@pytest.mark.asan
@pytest.mark.parametrize("name,body,headers,fragment", TEXT_BINARY,
                         ids=[c[0] for c in TEXT_BINARY])
def test_bytes_framing_is_a_4xx_json_error(text_server, name, body, headers, fragment):
    r = post_raw(text_server.port, "/v2/models/chars/infer", body, headers)
    err = assert_json_error(r)
    if fragment:
        assert fragment in err, err
    assert_ready(text_server)


@pytest.mark.asan
@pytest.mark.parametrize("name,body,fragment", TEXT_JSON, ids=[c[0] for c in TEXT_JSON])
def test_malformed_text_request_is_a_4xx_json_error(text_server, name, body, fragment):
    r = post_raw(text_server.port, "/v1/models/chars:predict", body)
    err = assert_json_error(r)
    if fragment:
        assert fragment in err, err
    assert_ready(text_server)


@pytest.mark.asan
def test_text_requests_still_served_after_the_hostile_ones(text_server):
    body, headers = text_binary(elems("héllo wörld 😀".encode(), b"", b"\x01\x02 control"), [3])
    r = post_raw(text_server.port, "/v2/models/chars/infer", body, headers)
    assert r is not None and r.status == 200, r
    assert r.json()["outputs"][0]["shape"] == [3]
    # A NUL is a character like any other in a text (valid JSON, valid UTF-8).
    r = post_raw(text_server.port, "/v1/models/chars:predict",
                 b'{"instances": ["' + b"a" * 1024 + b'", "\\u4e2d\\u6587", "a\\u0000b"]}')
    assert r is not None and r.status == 200, r
    assert len(r.json()["predictions"]) == 3
