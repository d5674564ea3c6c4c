"""Helpers for the hostile-input tests: raw HTTP/1.1 over sockets (so requests can be malformed
in ways an HTTP library refuses to produce), keep-alive clients, and /proc readings."""
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"Response({self.status}, {self.body[:200]!r})"


def read_response(sock, timeout=10.0):
    """Reads one HTTP/1.1 response (Content-Length or chunked). Returns None when the server
    closes the connection (or resets it) before a complete response."""
    sock.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(rest) < n:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                rest += chunk
            return Response(status, headers, rest[:n])
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in rest:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return None
                    rest += chunk
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return None
                    rest += chunk
                body += rest[:size]
                rest = rest[size + 2:]
                if size == 0:
                    return Response(status, headers, body)
        # No length: read to EOF.
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return Response(status, headers, rest)
            rest += chunk
    except (ConnectionResetError, BrokenPipeError):
        return None


def raw(port, data: bytes, timeout=10.0):
    """Sends data on a new connection and reads one response (None if closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            return None
        return read_response(s, timeout)


def request_bytes(method, path, body=b"", headers=None, close=True):
    h = {"Host": "127.0.0.1"}
    if body or method == "POST":
        h["Content-Length"] = str(len(body))
    if close:
        h["Connection"] = "close"
    h.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    return head.encode("latin-1") + b"\r\n" + body


def post_raw(port, path, body: bytes, headers=None, timeout=10.0):
    return raw(port, request_bytes("POST", path, body, headers), timeout)


def get_raw(port, path, timeout=10.0):
    return raw(port, request_bytes("GET", path), timeout)


def closed_by_server(sock, wait_s):
    """True when the server closes sock within wait_s (EOF or reset)."""
    sock.settimeout(wait_s)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def vm_rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise KeyError("VmRSS")


def ready_latency_ms(port, timeout=5.0):
    """Time for GET /v2/health/ready on a fresh connection; asserts a 200."""
    t0 = time.monotonic()
    r = get_raw(port, "/v2/health/ready", timeout)
    ms = (time.monotonic() - t0) * 1000
    assert r is not None and r.status == 200, r
    return ms


def hammer(port, path, bodies, total, conns=4, headers=None):
    """Sends `total` requests over `conns` keep-alive connections (bodies in turn); returns the
    count of responses by status."""
    counts = {}
    lock = threading.Lock()
    per = total // conns

    def worker(k):
        local = {}
        reqs = [request_bytes("POST", path, b, headers, close=False) for b in bodies]
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i in range(per):
                s.sendall(reqs[(i + k) % len(reqs)])
                r = read_response(s, 30)
                if r is None:  # closed: reconnect and go on
                    s.close()
                    s = socket.create_connection(("127.0.0.1", port), timeout=30)
                    local["closed"] = local.get("closed", 0) + 1
                    continue
                local[r.status] = local.get(r.status, 0) + 1
        finally:
            s.close()
        with lock:
            for key, v in local.items():
                counts[key] = counts.get(key, 0) + v

    with ThreadPoolExecutor(max_workers=conns) as pool:
        list(pool.map(worker, range(conns)))
    return counts
