"""End-to-end tests for `inferd bench` against a tiny KServe v2 server written in Python.

The fake server answers GET /v2/models/x (metadata) and POST /v2/models/x/infer, and checks
every infer request it receives (shapes, datatypes, mask values, binary sizes), so these tests
show both that the generator measures correctly and that what it sends is a valid request.
"""

import json
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFERD = ROOT / "build" / "inferd"

METADATA = {
    "name": "x",
    "versions": ["1"],
    "platform": "onnxruntime_onnx",
    "inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "features", "datatype": "FP32", "shape": [-1, 3]},
    ],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 2]}],
}
ELEM_SIZE = {"INT64": 8, "FP32": 4}


class FakeServer:
    """A ThreadingHTTPServer on a free loopback port, in a background thread."""

    def __init__(self, status=200, delay=0.0, chunked=False, serial=False):
        self.status = status
        self.delay = delay
        self.serial = threading.Lock() if serial else None
        self.chunked = chunked
        self.lock = threading.Lock()
        self.infer_count = 0
        self.text_count = 0
        self.problems = []  # invalid requests seen, as messages
        self.connections = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                # http.server writes headers and body separately; without NODELAY, Nagle holds
                # the body until the client's delayed ACK, adding 40 ms to every response.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def send_body(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if outer.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    # Two chunks, to make the client reassemble them.
                    half = len(body) // 2
                    for part in (body[:half], body[half:]):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def do_GET(self):
                with outer.lock:
                    outer.connections.add(self.client_address)
                if self.path == "/v2/models/x":
                    self.send_body(200, METADATA)
                else:
                    self.send_body(404, {"error": "no such model"})

            def do_POST(self):
                with outer.lock:
                    outer.connections.add(self.client_address)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.serial:
                    with outer.serial:
                        time.sleep(outer.delay)
                elif outer.delay:
                    time.sleep(outer.delay)
                if self.path == "/v1/models/x:predict":
                    ok = json.loads(body) == {"text": "hello"}
                    with outer.lock:
                        outer.text_count += 1
                        if not ok:
                            outer.problems.append("text body %r" % body[:80])
                    self.send_body(200, {"label": "greeting", "score": 0.9})
                    return
                if self.path != "/v2/models/x/infer":
                    self.send_body(404, {"error": "no such path"})
                    return
                problem = outer.check_infer(self.headers, body)
                with outer.lock:
                    outer.infer_count += 1
                    if problem:
                        outer.problems.append(problem)
                if outer.status != 200:
                    self.send_body(outer.status, {"error": "failing on purpose"})
                else:
                    self.send_body(
                        200,
                        {
                            "model_name": "x",
                            "outputs": [
                                {
                                    "name": "logits",
                                    "datatype": "FP32",
                                    "shape": [1, 2],
                                    "data": [0.1, 0.9],
                                }
                            ],
                        },
                    )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def check_infer(headers, body):
        """Returns None for a valid infer request, else what is wrong with it."""
        hlen = headers.get("Inference-Header-Content-Length")
        try:
            req = json.loads(body[: int(hlen)] if hlen is not None else body)
        except ValueError as e:
            return "not JSON: %s" % e
        inputs = {i["name"]: i for i in req.get("inputs", [])}
        if set(inputs) != {"input_ids", "attention_mask", "features"}:
            return "inputs %s" % sorted(inputs)
        offset = int(hlen) if hlen is not None else 0
        for meta in METADATA["inputs"]:
            i = inputs[meta["name"]]
            if i["datatype"] != meta["datatype"]:
                return "%s datatype %s" % (meta["name"], i["datatype"])
            shape = i["shape"]
            want = [1, 16] if meta["name"] != "features" else [1, 3]
            if shape != want:
                return "%s shape %s" % (meta["name"], shape)
            n = shape[0] * shape[1]
            if hlen is not None:
                size = i.get("parameters", {}).get("binary_data_size")
                if size != n * ELEM_SIZE[meta["datatype"]]:
                    return "%s binary_data_size %s" % (meta["name"], size)
                raw = body[offset : offset + size]
                offset += size
                if meta["name"] == "attention_mask" and raw != (1).to_bytes(8, "little") * n:
                    return "mask is not all ones"
            else:
                data = i.get("data")
                if not isinstance(data, list) or len(data) != n:
                    return "%s data %r" % (meta["name"], data)
                if meta["name"] == "attention_mask" and data != [1] * n:
                    return "mask is not all ones"
                if meta["name"] == "input_ids" and not all(0 <= v < 100 for v in data):
                    return "ids out of range"
        if hlen is not None and offset != len(body):
            return "binary body has %d bytes, header says %d" % (len(body), offset)
        return None

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_bench(*args, timeout=60):
    assert INFERD.exists(), "build/inferd is missing: run make first"
    return subprocess.run(
        [str(INFERD), "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def bench_json(*args):
    p = run_bench(*args, "--json")
    assert p.returncode == 0, p.stderr
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, p.stdout  # one JSON object, nothing else on stdout
    return json.loads(lines[0]), p.stderr


def assert_consistent(s):
    assert s["requests"] > 0
    assert s["duration"] > 0
    assert s["qps"] == pytest.approx(s["requests"] / s["duration"], rel=0.01)
    assert 0 < s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]


def test_closed_loop_json_summary():
    with FakeServer() as srv:
        s, err = bench_json(
            "--url", srv.url, "--model", "x", "--concurrency", "4", "--duration", "2",
            "--server-pid", str(os.getpid()),
        )
    assert srv.problems == []
    assert_consistent(s)
    assert s["mode"] == "closed" and s["concurrency"] == 4
    assert s["ok"] == s["requests"]
    assert s["errors"] == {} and s["errors_total"] == 0
    assert s["connect_errors"] == 0 and s["io_errors"] == 0 and s["timeouts"] == 0
    assert 1.9 < s["duration"] < 2.5
    # Keep-alive: the 4 connections carry every request (plus 2 for metadata and the probe).
    assert s["connections_max"] == 4
    assert len(srv.connections) <= 6
    # The server saw every measured request (and a few more: the probe, in-flight at the end).
    assert srv.infer_count >= s["requests"]
    # This test process is the server: it has the serving threads and used some CPU.
    assert s["server_threads_max"] >= 2
    assert s["server_cpu_percent"] > 0
    # Progress lines arrived once a second.
    assert err.count("qps") >= 2


def test_open_loop_rate_is_held():
    rate = 100
    with FakeServer(delay=0.005) as srv:
        s, err = bench_json(
            "--url", srv.url, "--model", "x", "--rate", str(rate), "--duration", "2",
        )
    assert srv.problems == []
    assert_consistent(s)
    assert s["mode"] == "open" and s["rate"] == rate
    assert s["errors_total"] == 0 and s["dropped"] == 0
    assert s["qps"] == pytest.approx(rate, rel=0.2)
    assert s["requests"] == pytest.approx(rate * 2, rel=0.2)
    # Every response took at least the server's 5 ms.
    assert s["p50"] >= 5.0


def test_open_loop_sees_server_queueing():
    # A server that handles one request at a time, 20 ms each (50/s), offered 100/s: requests
    # queue in the server, and open-loop latencies must grow with the queue, while a closed loop
    # on one connection only ever sees the 20 ms service time.
    with FakeServer(delay=0.02, serial=True) as srv:
        closed, _ = bench_json("--url", srv.url, "--model", "x", "--duration", "0.5")
        opened, _ = bench_json(
            "--url", srv.url, "--model", "x", "--rate", "100", "--duration", "1",
        )
    assert closed["p99"] < 100
    assert opened["dropped"] == 0 and opened["errors_total"] == 0
    assert opened["requests"] == pytest.approx(100, abs=3)  # all of them, drained at the end
    # The k-th request waits about k * 10 ms: the median near 0.5 s, the tail near 1 s.
    assert opened["p50"] > 250
    assert opened["p99"] > 600
    assert opened["qps"] < 60  # the server's capacity, not the offered rate


def test_open_loop_drops_when_connections_run_out():
    with FakeServer(delay=0.05) as srv:
        s, _ = bench_json(
            "--url", srv.url, "--model", "x", "--rate", "40", "--duration", "1",
            "--max-connections", "1",
        )
    # 40/s on one connection at 50 ms each: about half of the due requests find it busy.
    assert s["connections_max"] == 1
    assert 10 <= s["dropped"] <= 30
    assert s["requests"] + s["dropped"] == pytest.approx(40, abs=2)
    assert s["errors_total"] == s["dropped"]
    assert s["p50"] >= 50.0


def test_errors_reported_by_status():
    with FakeServer(status=500) as srv:
        s, err = bench_json(
            "--url", srv.url, "--model", "x", "--concurrency", "2", "--duration", "1",
        )
    assert s["requests"] > 0
    assert s["ok"] == 0
    assert s["errors"] == {"500": s["requests"]}
    assert s["errors_total"] == s["requests"]
    assert "first request got 500" in err


def test_binary_requests_are_valid():
    with FakeServer() as srv:
        s, _ = bench_json(
            "--url", srv.url, "--model", "x", "--binary", "--duration", "0.5",
        )
    assert srv.problems == []
    assert s["requests"] > 0 and s["errors_total"] == 0


def test_binary_request_file(tmp_path):
    import struct

    ids = struct.pack("<16q", *range(16))
    mask = struct.pack("<16q", *([1] * 16))
    feats = struct.pack("<3f", 0.5, -1.0, 2.0)
    header = json.dumps(
        {
            "inputs": [
                {"name": "input_ids", "datatype": "INT64", "shape": [1, 16],
                 "parameters": {"binary_data_size": len(ids)}},
                {"name": "attention_mask", "datatype": "INT64", "shape": [1, 16],
                 "parameters": {"binary_data_size": len(mask)}},
                {"name": "features", "datatype": "FP32", "shape": [1, 3],
                 "parameters": {"binary_data_size": len(feats)}},
            ]
        }
    ).encode()
    f = tmp_path / "req.bin"
    f.write_bytes(header + ids + mask + feats)
    with FakeServer() as srv:
        s, _ = bench_json(
            "--url", srv.url, "--model", "x", "--request", str(f),
            "--binary-header-length", str(len(header)), "--duration", "0.5",
        )
    assert srv.problems == []
    assert s["requests"] > 0 and s["errors_total"] == 0


def test_chunked_responses_and_warmup():
    with FakeServer(chunked=True) as srv:
        s, err = bench_json(
            "--url", srv.url, "--model", "x", "--duration", "1", "--warmup", "1",
        )
    assert srv.problems == []
    assert_consistent(s)
    assert s["errors_total"] == 0
    assert 0.9 < s["duration"] < 1.5  # the warmup second is not in the measured window
    assert srv.infer_count > s["requests"]  # warmup requests were sent but not counted
    assert "(warmup)" in err


def test_path_and_body_file(tmp_path):
    body = tmp_path / "body.json"
    body.write_text('{"text": "hello"}')
    with FakeServer() as srv:
        s, _ = bench_json(
            "--url", srv.url, "--path", "/v1/models/x:predict", "--body-file", str(body),
            "--duration", "0.5",
        )
    assert srv.problems == []
    assert s["requests"] > 0 and s["errors_total"] == 0
    assert srv.text_count >= s["requests"]


def test_text_summary_without_json():
    with FakeServer() as srv:
        p = run_bench("--url", srv.url, "--model", "x", "--duration", "0.5", "--quiet")
    assert p.returncode == 0, p.stderr
    for word in ("requests", "qps", "p50", "p99", "max", "errors"):
        assert word in p.stdout
    assert p.stderr == ""


@pytest.mark.parametrize(
    "url, words",
    [
        ("https://127.0.0.1:8000", "https is not supported"),
        ("http://example.com:8000", "not an IPv4 address"),
        ("127.0.0.1:8000", "only http://IPv4:port"),
        ("http://127.0.0.1:8000/v2", "--path"),
    ],
)
def test_bad_url_is_rejected(url, words):
    p = run_bench("--url", url, "--model", "x", "--duration", "1")
    assert p.returncode != 0
    assert words in p.stderr
    assert p.stdout == ""


def test_unreachable_server_fails_clearly():
    with FakeServer() as srv:
        port = srv.port
    # The server is closed now, so nothing listens on its port.
    p = run_bench("--url", "http://127.0.0.1:%d" % port, "--model", "x", "--duration", "1")
    assert p.returncode == 1
    assert "cannot connect" in p.stderr


def test_unknown_model_fails_clearly():
    with FakeServer() as srv:
        p = run_bench("--url", srv.url, "--model", "nope", "--duration", "1")
    assert p.returncode == 1
    assert "404" in p.stderr


def test_bad_arguments():
    p = run_bench("--model", "x", "--rate", "10", "--concurrency", "2")
    assert p.returncode == 2 and "not both" in p.stderr
    p = run_bench("--model", "x", "--duration", "abc")
    assert p.returncode == 2 and "--duration" in p.stderr
    p = run_bench("--model", "x", "--frobnicate")
    assert p.returncode == 2 and "--frobnicate" in p.stderr
    p = run_bench("--duration", "1")
    assert p.returncode == 2 and "--model" in p.stderr


def test_help_documents_every_flag():
    p = run_bench("--help")
    assert p.returncode == 0
    flags = [
        "--url", "--model", "--model-version", "--path", "--method", "--concurrency", "--rate",
        "--poisson", "--max-connections", "--duration", "--warmup", "--timeout", "--binary",
        "--batch", "--seq", "--vocab", "--seed", "--request", "--binary-header-length",
        "--body-file", "--content-type", "--server-pid", "--json", "--quiet", "--help",
    ]
    for f in flags:
        assert f in p.stdout, f
    # Defaults are stated.
    for d in ("default 1)", "default 256", "default 10", "default 0", "default 16", "default 100"):
        assert d in p.stdout, d
