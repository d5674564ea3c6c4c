"""The peers' models (../shared/peers/make_models.py: tiny, small, base exactly as that script
exports them) give the reference logits stored in <size>.check.json (PyTorch eager), at 1 and
2 threads. Skipped when the peer models have not been made (`make bench-engine` makes them):
`make test` must not need python3-torch."""
import json
import os
import subprocess

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "bench", ".peers", "models")
BIN = os.environ.get("INFERD_BIN", os.path.join(ROOT, "build", "inferd"))


def save(path, arr):
    np.save(path, arr)
    return path


@pytest.mark.parametrize("size", ["tiny", "small", "base"])
def test_peer_model_matches_pytorch(size, tmp_path):
    onnx = os.path.join(MODELS, size + ".onnx")
    check = os.path.join(MODELS, size + ".check.json")
    if not (os.path.exists(onnx) and os.path.exists(check)):
        pytest.skip(f"peer model {size} not made (run make bench-engine once)")
    cases = json.load(open(check))["cases"]
    for case in cases:
        ids = save(tmp_path / "ids.npy", np.array(case["input_ids"], dtype=np.int64))
        mask = save(tmp_path / "mask.npy", np.array(case["attention_mask"], dtype=np.int64))
        want = np.array(case["logits"], dtype=np.float32)
        for threads in (1, 2):
            out = tmp_path / f"out{threads}"
            p = subprocess.run([BIN, "exec", onnx, "--input", f"input_ids={ids}", "--input",
                                f"attention_mask={mask}", "--output-dir", str(out),
                                "--threads", str(threads)], capture_output=True, text=True,
                               timeout=300)
            assert p.returncode == 0, p.stderr
            got = np.load(out / "logits.npy")
            assert got.shape == want.shape
            diff = float(np.abs(got - want).max())
            assert diff <= 1e-4, (f"{size} batch {case['batch']} seq {case['seq']} "
                                  f"threads {threads}: max |diff| {diff}")
