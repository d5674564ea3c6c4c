"""The engine against ONNX Runtime, model by model (issue #2).

For every case and run in tests/fixtures/engine/manifest.json, and with 1 and 2 threads, run
  inferd exec MODEL.onnx --input NAME=FILE.npy ... --output-dir DIR --threads N
and compare each DIR/<output>.npy with the expected output that ONNX Runtime 1.30 computed
(and PyTorch confirmed) when tools/make_engine_fixtures.py wrote the fixture: same dtype and
shape, and max |inferd - expected| <= the case's tolerance.

Needs only numpy and the inferd binary: $INFERD_BIN, or build/inferd under the repository root.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "engine"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
THREADS = (1, 2)
EXEC_TIMEOUT_S = 120

# numpy's names for the ONNX element types the fixtures use.
NUMPY_DTYPE = {"float": np.float32, "double": np.float64, "int64": np.int64, "int32": np.int32,
               "bool": np.bool_}


def inferd_bin() -> str:
    return os.environ.get("INFERD_BIN") or str(ROOT / "build" / "inferd")


def runs():
    for case in MANIFEST["cases"]:
        for run in case["runs"]:
            yield case, run


def exec_params():
    return [pytest.param(case, run, threads, id=f"{case['name']}-{run['name']}-t{threads}")
            for case, run in runs() for threads in THREADS]


def describe_worst(got: np.ndarray, want: np.ndarray) -> str:
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    at = np.unravel_index(np.argmax(diff), diff.shape)
    idx = ", ".join(str(int(i)) for i in at)
    return (f"max |inferd - expected| = {diff[at]:.3g} at [{idx}] "
            f"(inferd {got[at]!r}, expected {want[at]!r}); "
            f"{int(np.count_nonzero(diff > 0))} of {diff.size} elements differ")


@pytest.mark.parametrize("case,run,threads", exec_params())
def test_engine_matches_reference(case, run, threads, tmp_path):
    where = f"case {case['name']}, run {run['name']}, threads {threads}"
    cmd = [inferd_bin(), "exec", str(FIXTURES / case["model"])]
    for name, rel in run["inputs"].items():
        cmd += ["--input", f"{name}={FIXTURES / rel}"]
    cmd += ["--output-dir", str(tmp_path), "--threads", str(threads)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=EXEC_TIMEOUT_S)
    except FileNotFoundError:
        pytest.fail(f"{where}: no inferd binary at {cmd[0]} (build it or set INFERD_BIN)")
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where}: inferd exec did not finish in {EXEC_TIMEOUT_S} s")
    if p.returncode != 0:
        pytest.fail(f"{where}: inferd exec exited with {p.returncode}\n"
                    f"command: {' '.join(cmd)}\nstderr:\n{p.stderr[-3000:]}")

    tol = case["tolerance"]
    failures = []
    for name, rel in run["outputs"].items():
        want = np.load(FIXTURES / rel, allow_pickle=False)
        out_file = tmp_path / f"{name}.npy"
        if not out_file.is_file():
            failures.append(f"output {name}: inferd wrote no {out_file.name}")
            continue
        got = np.load(out_file, allow_pickle=False)
        if got.dtype != want.dtype or got.shape != want.shape:
            failures.append(f"output {name}: inferd gives {got.dtype}{list(got.shape)}, "
                            f"expected {want.dtype}{list(want.shape)}")
            continue
        if want.dtype.kind in "biu":
            bad = got != want
            if bad.any():
                failures.append(f"output {name}: {int(bad.sum())} of {bad.size} elements "
                                f"differ; {describe_worst(got, want)}")
            continue
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        # max() of an array holding NaN is NaN, and NaN > tol is False: test finiteness
        # first, so that a NaN or an infinity where a number was expected fails.
        if not np.all(np.isfinite(diff)) or diff.max(initial=0.0) > tol:
            failures.append(f"output {name}: {describe_worst(got, want)}, tolerance {tol:g}")
    if failures:
        pytest.fail(f"{where}:\n  " + "\n  ".join(failures))


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in MANIFEST["cases"]])
def test_fixture_is_complete(case):
    """Every file the manifest names exists, and every input matches the model's declared
    input (dtype, rank, fixed dimensions), so a bad regeneration cannot pass silently."""
    assert (FIXTURES / case["model"]).is_file(), f"{case['name']}: {case['model']} missing"
    for rel in case["external_data"]:
        assert (FIXTURES / rel).is_file(), f"{case['name']}: {rel} missing"
    declared = {v["name"]: v for v in case["inputs"]}
    outputs = {v["name"] for v in case["outputs"]}
    assert case["runs"], f"{case['name']}: no runs"
    for run in case["runs"]:
        where = f"{case['name']}/{run['name']}"
        assert set(run["inputs"]) == set(declared), f"{where}: inputs {sorted(run['inputs'])}"
        assert set(run["outputs"]) == outputs, f"{where}: outputs {sorted(run['outputs'])}"
        for name, rel in run["inputs"].items():
            arr = np.load(FIXTURES / rel, allow_pickle=False)
            spec = declared[name]
            assert arr.dtype == NUMPY_DTYPE[spec["dtype"]], f"{where}/{name}: dtype {arr.dtype}"
            assert arr.ndim == len(spec["shape"]), f"{where}/{name}: shape {arr.shape}"
            for got, want in zip(arr.shape, spec["shape"]):
                assert isinstance(want, str) or got == want, f"{where}/{name}: shape {arr.shape}"
        for rel in run["outputs"].values():
            assert (FIXTURES / rel).is_file(), f"{where}: {rel} missing"


def exec_logits(model, ids, mask, threads, where):
    """`inferd exec` on a token batch; its logits. where: a new folder for inputs and outputs."""
    where.mkdir()
    np.save(where / "ids.npy", ids)
    np.save(where / "mask.npy", mask)
    p = subprocess.run([inferd_bin(), "exec", str(model),
                        "--input", f"input_ids={where / 'ids.npy'}",
                        "--input", f"attention_mask={where / 'mask.npy'}",
                        "--output-dir", str(where / "out"), "--threads", str(threads)],
                       capture_output=True, text=True, timeout=EXEC_TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    return np.load(where / "out" / "logits.npy")


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("name", ["peer_bert_op14", "bert_h96_op14", "bert_h96_meanpool_op14"])
def test_mixed_lengths_batch_equals_each_row_alone(name, threads, tmp_path):
    """A batch of very different lengths runs as length groups (trimmed, and with 2 threads
    side by side, one thread each; peer_bert_op14) or whole on its valid tokens alone (the
    h96 models); every row's logits must equal that row run alone at its own length, which
    the reference cases above check against ONNX Runtime."""
    model = FIXTURES / name / "model.onnx"
    seq, vocab = (128, 900) if name == "peer_bert_op14" else (64, 500)  # h96: 64 positions
    lengths = [seq, 20, 20, 23, 20, 21, 20, 60]
    rng = np.random.default_rng(7)
    ids = np.zeros((len(lengths), seq), np.int64)
    mask = np.zeros((len(lengths), seq), np.int64)
    for r, n in enumerate(lengths):
        ids[r, :n] = rng.integers(1, vocab, n)
        mask[r, :n] = 1

    together = exec_logits(model, ids, mask, threads, tmp_path / "batch")
    for r, n in enumerate(lengths):
        alone = exec_logits(model, ids[r:r + 1, :n], mask[r:r + 1, :n], threads,
                            tmp_path / f"row{r}")
        assert np.abs(together[r] - alone[0]).max() <= 1e-4, (r, n, describe_worst(
            together[r:r + 1], alone))


def perf_run(model, batch, seq, threads, *extra):
    p = subprocess.run([inferd_bin(), "perf", str(model), "--batch", str(batch), "--seq",
                        str(seq), "--threads", str(threads), "--seconds", "0", *extra],
                       capture_output=True, text=True, timeout=EXEC_TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    runs = [json.loads(line) for line in p.stdout.splitlines() if '"kind":"run"' in line]
    return runs[0]


def perf_groups(model, batch, seq, threads):
    return perf_run(model, batch, seq, threads)["groups_per_run"]


@pytest.mark.parametrize("threads", THREADS)
def test_padded_batches_run_on_valid_tokens_where_layers_allow(threads):
    """A padded batch of the h96 models runs once, its dense layers on the valid tokens alone
    (layer widths on 48-column panels, on AVX-512 CPUs); the peers' layout at hidden 64 runs
    length groups instead; --padding groups turns it off; full rows need neither."""
    h96 = FIXTURES / "bert_h96_op14" / "model.onnx"
    peer = FIXTURES / "peer_bert_op14" / "model.onnx"
    mixed = ("--lengths", "random", "--min-len", "4")
    if "avx512f" in open("/proc/cpuinfo").read():
        run = perf_run(h96, 8, 64, threads, *mixed)
        assert (run["token_runs_share"], run["groups_per_run"]) == (1, 1), run
    run = perf_run(h96, 8, 64, threads, *mixed, "--padding", "groups")
    assert run["token_runs_share"] == 0 and run["groups_per_run"] > 1, run
    run = perf_run(peer, 8, 64, threads, *mixed)
    assert run["token_runs_share"] == 0 and run["groups_per_run"] > 1, run
    assert perf_run(h96, 8, 64, threads)["token_runs_share"] == 0


def test_row_groups_equal_the_whole_batch(tmp_path):
    """With 2 threads, a batch of full-length rows big enough to share runs as two row groups
    side by side, one thread each; its outputs must equal the batch run whole on one thread.
    A batch that halves unevenly (3 rows) stays whole."""
    model = FIXTURES / "peer_bert_op14" / "model.onnx"
    assert perf_groups(model, 16, 128, 2) == 2
    assert perf_groups(model, 16, 128, 1) == 1
    assert perf_groups(model, 3, 128, 2) == 1
    rng = np.random.default_rng(11)
    ids = rng.integers(1, 900, (16, 128)).astype(np.int64)
    got = {t: exec_logits(model, ids, np.ones_like(ids), t, tmp_path / f"t{t}") for t in (1, 2)}
    assert got[2].shape == (16,) + got[1].shape[1:]
    assert np.abs(got[2] - got[1]).max() <= 1e-4, describe_worst(got[2], got[1])
