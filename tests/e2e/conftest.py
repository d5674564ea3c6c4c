"""Shared helpers for the end-to-end tests: build a model repository from the engine fixtures,
start `inferd serve` on a free loopback port, wait until it is ready, talk to it, stop it.

The server is started with --http-port 0 and its port read from the "listening on" log line,
so parallel runs never race for a port. Its stderr goes to a file that tests can read.
"""
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "engine"
START_TIMEOUT_S = 20
READY_TIMEOUT_S = 60


def inferd_bin() -> str:
    return os.environ.get("INFERD_BIN") or str(ROOT / "build" / "inferd")


def fixture_model(case: str) -> Path:
    """The ONNX file of an engine fixture case (tests/fixtures/engine/<case>/model.onnx)."""
    return FIXTURES / case / "model.onnx"


def make_repo(root: Path, models: dict) -> Path:
    """Writes a model repository under root.

    models maps a model name to a dict with
      "case":     engine fixture whose model.onnx each version links to (optional)
      "file":     raw bytes to write as model.onnx instead (optional)
      "versions": version numbers (default [1])
      "config":   dict written as config.json, or a str written as is (optional)
    """
    root.mkdir(parents=True, exist_ok=True)
    for name, spec in models.items():
        mdir = root / name
        mdir.mkdir(exist_ok=True)
        for v in spec.get("versions", [1]):
            vdir = mdir / str(v)
            vdir.mkdir(exist_ok=True)
            if "case" in spec:
                (vdir / "model.onnx").symlink_to(fixture_model(spec["case"]))
            elif "file" in spec:
                (vdir / "model.onnx").write_bytes(spec["file"])
        cfg = spec.get("config")
        if cfg is not None:
            text = cfg if isinstance(cfg, str) else json.dumps(cfg)
            (mdir / "config.json").write_text(text)
    return root


class Server:
    """One `inferd serve` process on loopback."""

    def __init__(self, repo: Path, log_path: Path, *args: str, threads: int = 2, prefix=()):
        self.prefix = list(prefix)  # a command the server runs under (e.g. setpriv)
        self.repo = repo
        self.log_path = log_path
        self.threads = threads
        self.args = ["--threads", str(threads), *args]
        self.proc = None
        self.port = None
        self.session = requests.Session()

    def start(self) -> "Server":
        self.log_file = open(self.log_path, "wb")
        cmd = [*self.prefix, inferd_bin(), "serve", "--repo", str(self.repo), "--http-port", "0",
               *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log_file)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            m = re.search(r"listening on http://(?:\[[^]]+\]|[^:/]+):(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"inferd exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        self.proc.kill()
        raise RuntimeError(f"inferd did not start listening:\n{self.log()}")

    @contextlib.contextmanager
    def running(self, *ready_models: str):
        """Starts the server and waits until it (and each of ready_models) is ready; yields
        it. On leaving, the server must stop cleanly: exit code 0 (under ASan, also no leak)."""
        self.start()
        try:
            self.wait_ready()
            for m in ready_models:
                self.require_ready(m)
            yield self
        finally:
            code = self.stop()
            assert code == 0, self.log()[-3000:]

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.get("/v2/health/ready").status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"inferd was not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        return self.session.get(self.url(path), **kw)

    def post(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        return self.session.post(self.url(path), **kw)

    def index(self) -> list:
        return self.post("/v2/repository/index").json()

    def require_ready(self, model: str, version: str = None) -> None:
        """Skips the calling test when the model did not load (e.g. the engine lacks an op)."""
        rows = [r for r in self.index() if r["name"] == model
                and (version is None or r["version"] == version)]
        if not rows or all(r["state"] != "READY" for r in rows):
            reasons = "; ".join(r.get("reason", "") for r in rows) or "not in the repository"
            pytest.skip(f"model {model} did not load, so inference cannot be tested: {reasons}")

    def metrics(self) -> str:
        r = self.get("/metrics")
        assert r.status_code == 200, r.text
        return r.text

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.log_file.close()


def metric_value(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text, or raises KeyError."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = (m.group(2) or "{}")[1:-1]
        if all(f'{k}="{v}"' in got.split(",") for k, v in labels.items()) or (not want and not got):
            return float(m.group(3))
    raise KeyError(f"{name}{{{want}}} not in metrics")


def pytest_configure(config):
    config.addinivalue_line("markers", "asan: also run against the ASan+UBSan build (make "
                                       "e2e-asan)")
    config.addinivalue_line("markers", "slow: takes tens of seconds")


@pytest.fixture(scope="session")
def inferd_available():
    if not Path(inferd_bin()).exists():
        pytest.skip(f"{inferd_bin()} is not built (run make)")
    return inferd_bin()
