"""Broken models next to good ones (issue #6): truncated, corrupt, empty and unsupported ONNX
files, model.onnx that is a folder, a FIFO or a dangling symlink, unreadable version folders,
pipeline files that are missing. Each broken version is UNAVAILABLE with a clear reason in
the index and the log, requests aimed at it get 503 with that reason, the good version of the
same model keeps serving, and no request to a good model fails while the broken ones are
tried.
"""
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, Server, fixture_model, make_repo

sys.path.insert(0, str(ROOT / "tools"))
import make_fuzz_onnx as onnx_writer  # noqa: E402  (a stdlib-only ONNX writer)

GOOD = fixture_model("peer_bert_op14").read_bytes()
REQUEST = {"inputs": [
    {"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [101, 5, 102]},
    {"name": "attention_mask", "shape": [1, 3], "datatype": "INT64", "data": [1, 1, 1]}]}


def unknown_op_model() -> bytes:
    g = onnx_writer.Graph(1)
    x = g.input("input_ids", onnx_writer.INT64, ["batch", "seq"])
    y = g.op("FrobnicateTokens", [x])
    g.nodes.append(onnx_writer.f_bytes(1, y) + onnx_writer.f_bytes(2, "logits") +
                   onnx_writer.f_bytes(4, "Identity"))
    g.output("logits", onnx_writer.FLOAT, ["batch", 2])
    return g.model(14)


def dangling_input_model() -> bytes:
    g = onnx_writer.Graph(2)
    g.input("input_ids", onnx_writer.INT64, ["batch", "seq"])
    y = g.op("Relu", ["no_such_value"])
    g.nodes.append(onnx_writer.f_bytes(1, y) + onnx_writer.f_bytes(2, "logits") +
                   onnx_writer.f_bytes(4, "Identity"))
    g.output("logits", onnx_writer.FLOAT, ["batch", 2])
    return g.model(14)


# version -> (how to make it broken, words the reason must contain)
BROKEN = {
    2: ("truncated", ["not a valid ONNX file"]),
    3: ("garbage", ["not a valid ONNX file"]),
    4: ("empty", ["empty"]),
    5: ("unknown op", ["FrobnicateTokens"]),
    6: ("dangling input", ["no_such_value"]),
    7: ("folder named model.onnx", ["no model file"]),
    8: ("fifo named model.onnx", ["no model file"]),
    9: ("dangling symlink", ["no model file"]),
    10: ("no model file", ["no model file"]),
}


def break_version(vdir: Path, how: str):
    vdir.mkdir(parents=True, exist_ok=True)
    f = vdir / "model.onnx"
    if how == "truncated":
        f.write_bytes(GOOD[:len(GOOD) // 2])
    elif how == "garbage":
        f.write_bytes(os.urandom(4096))
    elif how == "empty":
        f.write_bytes(b"")
    elif how == "unknown op":
        f.write_bytes(unknown_op_model())
    elif how == "dangling input":
        f.write_bytes(dangling_input_model())
    elif how == "folder named model.onnx":
        f.mkdir()
    elif how == "fifo named model.onnx":
        os.mkfifo(f)  # opening it would block the loader forever
    elif how == "dangling symlink":
        f.symlink_to(vdir / "gone.onnx")
    elif how == "no model file":
        (vdir / "README").write_text("no model here")


@pytest.fixture(scope="module")
def server(tmp_path_factory, inferd_available):
    root = tmp_path_factory.mktemp("broken")
    repo = make_repo(root / "models", {
        # Loaded first (names are loaded in order), then hammered while the rest load.
        "aa_steady": {"case": "peer_bert_op14"},
        "multi": {"case": "peer_bert_op14", "versions": [1],
                  "config": {"version_policy": {"all": True}}},
    })
    for v, (how, _) in BROKEN.items():
        break_version(repo / "multi" / str(v), how)
    # Many broken versions of another model, so loading takes a while.
    zz = repo / "zz_many_broken"
    for v in range(1, 41):
        break_version(zz / str(v), "truncated" if v % 2 else "unknown op")
    (zz / "config.json").write_text(json.dumps({"version_policy": {"all": True}}))

    srv = Server(repo, root / "inferd.log", threads=2).start()
    # Hammer the steady model from the moment it is ready until every version was tried.
    results = []
    stop = threading.Event()

    def hammer():
        import requests
        s = requests.Session()
        url = srv.url("/v2/models/aa_steady/infer")
        while not stop.is_set():
            try:
                r = s.post(url, json=REQUEST, timeout=10)
            except requests.ConnectionError:
                time.sleep(0.005)
                continue
            if r.status_code == 503 and "loading" in r.text.lower():
                continue  # not ready yet: not a failure of a ready model
            results.append(r.status_code)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        srv.wait_ready()
        time.sleep(0.2)
        stop.set()
        t.join()
        srv.hammer_results = results
        yield srv
    finally:
        stop.set()
        t.join()
        code = srv.stop()
        assert code == 0, srv.log()[-3000:]


def test_no_request_to_a_good_model_fails_while_broken_ones_load(server):
    server.require_ready("aa_steady")
    got = server.hammer_results
    assert len(got) > 0
    assert set(got) == {200}, {s: got.count(s) for s in set(got)}


def test_each_broken_version_has_a_clear_reason(server):
    rows = {(r["name"], r["version"]): r for r in server.index()}
    log = server.log()
    for v, (how, words) in BROKEN.items():
        row = rows[("multi", str(v))]
        assert row["state"] == "UNAVAILABLE", (how, row)
        for w in words:
            assert w.lower() in row["reason"].lower(), (how, row["reason"])
        assert f"model multi version {v} failed to load" in log, how
    assert rows[("multi", "1")]["state"] == "READY"
    many = [r for (name, _), r in rows.items() if name == "zz_many_broken"]
    assert len(many) == 40 and all(r["state"] == "UNAVAILABLE" and r["reason"] for r in many)


def test_the_good_version_keeps_serving(server):
    r = server.post("/v2/models/multi/infer", json=REQUEST)
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == "1"  # the newest READY version, not the broken 10
    meta = server.get("/v2/models/multi").json()
    assert meta["versions"] == ["1"]


@pytest.mark.parametrize("version", sorted(BROKEN))
def test_requests_aimed_at_a_broken_version_get_503_with_the_reason(server, version):
    r = server.post(f"/v2/models/multi/versions/{version}/infer", json=REQUEST)
    assert r.status_code == 503, r.text
    for w in BROKEN[version][1]:
        assert w.lower() in r.json()["error"].lower(), r.text
    r = server.get(f"/v2/models/multi/versions/{version}/ready")
    assert r.status_code == 400 and r.json()["ready"] is False


def test_unreadable_version_folder(tmp_path, inferd_available):
    """A version folder the server may not read: UNAVAILABLE with a reason, the other version
    serves. Root reads any folder whatever its mode, so as root the server runs as nobody
    (setpriv), from a repository outside pytest's private temporary folder."""
    prefix, base = (), tmp_path
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("runs as root without setpriv to drop privileges")
        prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--")
        base = Path(tempfile.mkdtemp(prefix="inferd-unreadable-"))
        base.chmod(0o755)
    repo = make_repo(base / "models", {"m": {"case": "peer_bert_op14", "versions": [1, 2],
                                             "config": {"version_policy": {"all": True}}}})
    (repo / "m" / "2").chmod(0)
    try:
        with Server(repo, tmp_path / "inferd.log", "--cache-dir", "off",
                    prefix=prefix).running() as srv:
            rows = {(r["name"], r["version"]): r for r in srv.index()}
            assert rows[("m", "1")]["state"] == "READY"
            assert rows[("m", "2")]["state"] == "UNAVAILABLE", rows
            assert "Permission denied" in rows[("m", "2")]["reason"], rows[("m", "2")]
            r = srv.post("/v2/models/m/versions/1/infer", json=REQUEST)
            assert r.status_code == 200, r.text
    finally:
        (repo / "m" / "2").chmod(0o755)
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def test_missing_tokenizer_files(tmp_path, inferd_available):
    """A version whose pipeline.json names files that are missing is UNAVAILABLE with the
    reason, and the version before it serves. Runs once the server reads pipeline.json."""
    repo = make_repo(tmp_path / "models", {
        "clf": {"case": "peer_bert_op14", "versions": [1, 2, 3],
                "config": {"version_policy": {"all": True}}}})
    good = {"tokenizer": {"type": "char", "vocab": None,
                          "hash": {"kind": "fnv1a", "offset": 10, "buckets": 900}},
            "max_length": 16, "inputs": {"input_ids": "input_ids",
                                         "attention_mask": "attention_mask"},
            "output": "logits"}
    (repo / "clf" / "1" / "pipeline.json").write_text(json.dumps(good))
    missing_vocab = dict(good, tokenizer={"type": "wordpiece", "vocab": "vocab.txt"})
    (repo / "clf" / "2" / "pipeline.json").write_text(json.dumps(missing_vocab))
    missing_labels = dict(good, postprocess={"labels": "labels.txt"})
    (repo / "clf" / "3" / "pipeline.json").write_text(json.dumps(missing_labels))
    with Server(repo, tmp_path / "inferd.log").running() as srv:
        rows = {(r["name"], r["version"]): r for r in srv.index()}
        if rows[("clf", "2")]["state"] == "READY":
            pytest.skip("this build does not read pipeline.json yet (text API, issue #4)")
        assert rows[("clf", "1")]["state"] == "READY", rows
        assert rows[("clf", "2")]["state"] == "UNAVAILABLE"
        assert "vocab" in rows[("clf", "2")]["reason"], rows[("clf", "2")]
        assert rows[("clf", "3")]["state"] == "UNAVAILABLE"
        assert "labels" in rows[("clf", "3")]["reason"], rows[("clf", "3")]
        r = srv.post("/v2/models/clf/infer", json=REQUEST)
        assert r.status_code == 200 and r.json()["model_version"] == "1", r.text


class Hammer:
    """Posts REQUEST to model clf in a loop on a thread of its own while the block runs,
    collecting (status, model_version); starts 0.3 s before the block's body."""

    def __init__(self, srv):
        self.srv, self.results, self.stop = srv, [], threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.stop.is_set():
            r = self.srv.post("/v2/models/clf/infer", json=REQUEST, timeout=30)
            self.results.append((r.status_code, r.json().get("model_version")))

    def __enter__(self):
        self.thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=60)


def add_version(repo: Path, number: int, fill) -> None:
    """Version `number` of clf, made beside and filled by fill(folder), then renamed in: the
    poll never sees a half-written folder."""
    staging = repo / "clf" / ".staging"
    staging.mkdir()
    fill(staging)
    staging.rename(repo / "clf" / str(number))


def wait_for_version(srv, number: int, done) -> dict:
    """Polls the index until done(row of clf/number) or 30 s; returns the index by key."""
    deadline, rows = time.time() + 30, {}
    while time.time() < deadline:
        rows = {(r["name"], r["version"]): r for r in srv.index()}
        row = rows.get(("clf", str(number)))
        if row and done(row):
            break
        time.sleep(0.1)
    return rows


@pytest.mark.parametrize("how", ["truncated", "unknown op"])
def test_broken_new_version_while_the_previous_one_serves(tmp_path, inferd_available, how):
    """A broken version that appears while the model serves (found by polling) is UNAVAILABLE
    with the reason; the previous version answered every request meanwhile and stays the
    default."""
    repo = make_repo(tmp_path / "models", {"clf": {"case": "peer_bert_op14", "versions": [1]}})
    with Server(repo, tmp_path / "inferd.log", "--poll-interval", "0.2").running() as srv:
        with Hammer(srv) as h:
            add_version(repo, 2, lambda d: break_version(d, how))
            rows = wait_for_version(srv, 2,
                                    lambda r: r["state"] == "UNAVAILABLE" and r.get("reason"))
            time.sleep(0.5)  # keep hammering after the failed load
        results = h.results
        reason = rows.get(("clf", "2"), {}).get("reason", "")
        assert reason, f"version 2 never reported UNAVAILABLE: {srv.index()}"
        for word in dict(BROKEN.values())[how]:
            assert word in reason, reason
        assert len(results) > 10 and all(r == (200, "1") for r in results), \
            [r for r in results if r != (200, "1")][:5]
        assert rows[("clf", "1")]["state"] == "READY"
        r = srv.post("/v2/models/clf/infer", json=REQUEST)
        assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
        assert reason in srv.log(), "the reason is logged"


def test_full_disk_while_writing_the_cache(tmp_path, inferd_available):
    """The cache folder is a full file system (a tmpfs of one page): every version's cache
    write fails with ENOSPC. Versions still load from their ONNX files and serve, the log says
    the cache was not written and why, nothing partial is left in the folder, and the version
    that serves answers every request while a new one loads beside it."""
    cache = tmp_path / "cache"
    cache.mkdir()
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=4k tmpfs {cache} 2>/dev/null"):
        pytest.skip("needs root and mount to make a small file system")
    repo = make_repo(tmp_path / "models", {"clf": {"case": "peer_bert_op14", "versions": [1]}})
    try:
        with Server(repo, tmp_path / "inferd.log", "--poll-interval", "0.2", "--cache-dir",
                    str(cache)).running() as srv:
            with Hammer(srv) as h:
                add_version(repo, 2, lambda d: (d / "model.onnx").symlink_to(
                    fixture_model("peer_bert_op14")))
                rows = wait_for_version(srv, 2, lambda r: r["state"] == "READY")
                time.sleep(0.3)
            results = h.results
            assert rows[("clf", "2")]["state"] == "READY", rows
            assert len(results) > 10 and all(s == 200 for s, _ in results), \
                [r for r in results if r[0] != 200][:5]
            r = srv.post("/v2/models/clf/infer", json=REQUEST)
            assert r.status_code == 200 and r.json()["model_version"] == "2", r.text
            log = srv.log()
            assert "not written" in log and "No space left on device" in log, log
            left = [p.name for p in cache.rglob("*") if ".tmp." in p.name]
            assert not left, f"partial cache files left behind: {left}"
    finally:
        os.system(f"umount {cache}")


def test_serving_version_deleted(tmp_path, inferd_available):
    """The folder of the version that serves is deleted under load: the previous version is
    loaded and takes over, the deleted one drains and goes (its mapped file stays valid until
    then), the log says so, and no request to the model fails meanwhile."""
    repo = make_repo(tmp_path / "models", {"clf": {"case": "peer_bert_op14", "versions": [1, 2]}})
    with Server(repo, tmp_path / "inferd.log", "--poll-interval", "0.2").running() as srv:
        rows = wait_for_version(srv, 2, lambda r: r["state"] == "READY")
        assert rows[("clf", "2")]["state"] == "READY", rows
        with Hammer(srv) as h:
            shutil.rmtree(repo / "clf" / "2")
            rows = wait_for_version(srv, 1, lambda r: r["state"] == "READY")
            deadline = time.time() + 10
            while ("clf", "2") in rows and time.time() < deadline:
                time.sleep(0.1)
                rows = {(r["name"], r["version"]): r for r in srv.index()}
            time.sleep(0.3)
        assert rows[("clf", "1")]["state"] == "READY", rows
        assert ("clf", "2") not in rows, rows
        statuses = {s for s, _ in h.results}
        assert len(h.results) > 10 and statuses == {200}, \
            [r for r in h.results if r[0] != 200][:5]
        assert {v for _, v in h.results} <= {"1", "2"}
        assert h.results[-1][1] == "1", h.results[-5:]
        r = srv.post("/v2/models/clf/infer", json=REQUEST)
        assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
        r = srv.post("/v2/models/clf/versions/2/infer", json=REQUEST)
        assert r.status_code == 404 and "error" in r.json(), r.text
        assert "model clf version 2: its folder is gone" in srv.log(), srv.log()
