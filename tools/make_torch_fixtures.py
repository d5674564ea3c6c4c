#!/usr/bin/python3
"""Regenerate the TorchScript backend's fixtures in tests/fixtures/torch/.

  bert/1/        the text fixture tests/fixtures/text/bert/1 as a TorchScript model: the same
                 micro BERT (same weights: rebuilt from the seed recorded in
                 tests/fixtures/text/expected.json), traced with torch.jit.trace and saved as
                 model.pt, with that version's pipeline.json, vocabulary and labels, and a
                 config.json declaring the three inputs and the output. The script stops unless
                 its eager logits equal expected.json's, so the text API's expected predictions
                 hold for it too, and the ONNX file beside the original is the same model.
  check.json     inputs and PyTorch eager logits for bert/1: one text alone, and three texts of
                 different lengths as one right-padded batch (the mask hides the padding).
  multi.pt       torch.jit.script of a module returning a tuple (float32 scores [batch, 3],
                 int64 best label [batch]): more than one output, an integer output.
  raises.pt      scripted; raises ValueError when an id is negative (a model that fails at run
                 time, on some inputs, not at load).
  dict_out.pt    scripted; returns Dict[str, Tensor], which inferd does not take.
  int_arg.pt     scripted; forward(x: Tensor, k: int): an argument that is not a tensor.
  state_dict.pt  torch.save of a state_dict: a PyTorch file that is not TorchScript (what a
                 team ships by mistake).

Usage (needs python3-torch): /usr/bin/python3 tools/make_torch_fixtures.py [--out DIR]
Deterministic (fixed seeds, one thread); the folder is rewritten. About 5 s.
"""
import argparse
import json
import os
import shutil
import sys
from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import make_text_fixtures as text_fx  # noqa: E402

TEXT = os.path.join(REPO, "tests", "fixtures", "text")


class Multi(nn.Module):
    """Mean of masked embeddings -> 3 scores, and the index of the best one."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        m = attention_mask.unsqueeze(-1).to(torch.float32)
        h = (self.emb(input_ids) * m).sum(1) / m.sum(1).clamp(min=1.0)
        scores = torch.softmax(self.fc(h), dim=-1)
        return scores, scores.argmax(dim=-1)


class Raises(nn.Module):
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if bool((input_ids < 0).any()):
            raise ValueError("negative ids are not supported")
        return input_ids.to(torch.float32).sum(1, keepdim=True)


class DictOut(nn.Module):
    def forward(self, input_ids: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"logits": input_ids.to(torch.float32)}


class IntArg(nn.Module):
    def forward(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return x * k


def bert(out):
    exp = json.load(open(os.path.join(TEXT, "expected.json"), encoding="utf-8"))
    ver = next(v for v in exp["versions"] if v["model"] == "bert" and v["version"] == 1)
    model, names = text_fx.build(text_fx.BERT_A, ver["seed"])
    worst = 0.0
    with torch.no_grad():
        for t in ver["texts"]:
            ids = torch.tensor([t["ids"]])
            got = model(ids, torch.ones_like(ids), torch.zeros_like(ids))[0].numpy()
            worst = max(worst, float(np.abs(got - np.array(t["logits"])).max()))
    if worst > 1e-5:  # BLAS kernels differ between machines by ~2e-6
        raise SystemExit(f"rebuilt bert/1 differs from expected.json by {worst}")
    src = os.path.join(TEXT, "bert", "1")
    vdir = os.path.join(out, "bert", "1")
    os.makedirs(vdir)
    for f in ("pipeline.json", "vocab.txt", "labels.txt"):
        shutil.copy(os.path.join(src, f), os.path.join(vdir, f))

    # Trace on a padded batch; the graph keeps batch and sequence length dynamic.
    texts = [t for t in ver["texts"] if t["name"] in ("english", "question", "chinese")]
    longest = max(len(t["ids"]) for t in texts)
    ids = np.zeros((len(texts), longest), np.int64)
    mask = np.zeros_like(ids)
    for r, t in enumerate(texts):
        ids[r, :len(t["ids"])] = t["ids"]
        mask[r, :len(t["ids"])] = 1
    types = np.zeros_like(ids)
    with torch.no_grad():
        traced = torch.jit.trace(model, tuple(torch.from_numpy(a) for a in (ids, mask, types)))
    traced.save(os.path.join(vdir, "model.pt"))
    config = {"platform": "torchscript", "max_batch_size": 8,
              "inputs": [{"name": n, "datatype": "INT64", "dims": [-1, -1]} for n in names],
              "outputs": [{"name": "logits", "datatype": "FP32",
                           "dims": [-1, len(ver["labels"])]}]}
    with open(os.path.join(vdir, "..", "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
        f.write("\n")

    cases = []
    for rows in ([texts[0]], texts):
        n = max(len(t["ids"]) for t in rows)
        a = np.zeros((len(rows), n), np.int64)
        m = np.zeros_like(a)
        for r, t in enumerate(rows):
            a[r, :len(t["ids"])] = t["ids"]
            m[r, :len(t["ids"])] = 1
        with torch.no_grad():
            logits = model(*(torch.from_numpy(x) for x in (a, m, np.zeros_like(a)))).numpy()
            back = torch.jit.load(os.path.join(vdir, "model.pt"))(
                *(torch.from_numpy(x) for x in (a, m, np.zeros_like(a)))).numpy()
        if float(np.abs(back - logits).max()) > 1e-6:
            raise SystemExit("the saved TorchScript model disagrees with eager PyTorch")
        cases.append({"batch": len(rows), "seq": n, "input_ids": a.tolist(),
                      "attention_mask": m.tolist(), "token_type_ids": np.zeros_like(a).tolist(),
                      "logits": logits.astype(float).tolist()})
    return {"model": "bert/1/model.pt", "seed": ver["seed"], "cases": cases}


def main():
    # TorchScript writes a module's constants in set order, which follows Python's string
    # hashing: fix the hash seed so the files are byte-for-byte reproducible.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "torch"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    check = bert(out)
    torch.manual_seed(7)
    torch.jit.script(Multi().eval()).save(os.path.join(out, "multi.pt"))
    torch.jit.script(Raises().eval()).save(os.path.join(out, "raises.pt"))
    torch.jit.script(DictOut().eval()).save(os.path.join(out, "dict_out.pt"))
    torch.jit.script(IntArg().eval()).save(os.path.join(out, "int_arg.pt"))
    torch.save(Multi().state_dict(), os.path.join(out, "state_dict.pt"))
    check["generator"] = "tools/make_torch_fixtures.py"
    check["torch"] = torch.__version__
    with open(os.path.join(out, "check.json"), "w", encoding="utf-8") as f:
        json.dump(check, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
