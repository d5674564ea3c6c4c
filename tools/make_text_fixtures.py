#!/usr/bin/python3
"""Regenerate the text API's fixtures in tests/fixtures/text/: tiny text classifiers shipped as
version folders (model.onnx + pipeline.json + vocabulary + labels), and the predictions an
independent reference computes for a set of texts.

  bert/1/   2-layer micro BERT, WordPiece vocabulary A, token_type_ids input, 3 labels,
            softmax with top_k 2, max_length 32
  bert/2/   another micro BERT: a different WordPiece vocabulary B (other tokens, other ids,
            subword pieces), no token_type_ids, 4 labels, softmax with top_k 3, max_length 24
  chars/1/  character model with the peers' tokenizer rule (FNV-1a of each code point's UTF-8
            bytes, id = 1000 + h % 20128, [CLS] = 101), hashing ids into a small embedding with
            ONNX Mod; masked mean pooling; 4 labels, multi-label (sigmoid, threshold 0.5)
  expected.json  for every model version and text: the reference token ids, whether the text
            was cut at max_length, the raw logits, the scores after softmax/sigmoid, the best
            label, the top-k (or the labels above the threshold)

Where the expected values come from, independently of inferd:
  * token ids: tools/ref_tokenizer.py (stdlib-only BERT BasicTokenizer + WordPiece, and the
    peers' char rule), never inferd's tokenizer;
  * scores: PyTorch eager on each text alone (batch 1, no padding), exported with
    torch.onnx.export; then ONNX Runtime (tools/ort_run.js, onnxruntime-node) runs every text
    of a model as one padded batch, and the script stops unless it agrees with PyTorch within
    1e-5 (the measured disagreement is recorded), so padding is known to be invisible to the
    models and the ONNX files are what PyTorch computed;
  * postprocessing: softmax / sigmoid / top-k in numpy (float64), here.
The script also refuses weights that would make the checks fragile: no two of a text's
scores closer than 1e-3, and no sigmoid score within 2e-3 of the threshold (it tries the
next seed until none is).

Usage (needs python3-torch, python3-onnx and onnxruntime-node):
  NODE_PATH=bench/.peers/node_modules /usr/bin/python3 tools/make_text_fixtures.py [--out DIR]
The output is deterministic (fixed seeds, one thread) and the folder is rewritten.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from make_engine_fixtures import BertPooled, masked_mean, randomise  # noqa: E402
from ref_tokenizer import bert_encode, char_ids  # noqa: E402

OPSET = 14
AGREE = 1e-5  # max |torch - ORT| on the scores and logits

TEXTS = [
    ("english", "The quick brown fox jumps over the lazy dog."),
    ("question", "What time does the market open tomorrow?"),
    ("sports", "The team won the final match 3-1 last night!"),
    ("chinese", "中文文本分类很有趣。"),
    ("mixed", "BERT模型 handles 中英文 mixing, ok?"),
    ("emoji", "I love it 😀🎉!"),
    ("accents", "Café déjà vu, naïve résumé. ÉCOLE"),
    ("empty", ""),
    ("spaces", "   \t\n "),
    ("numbers", "In 2024 we sold 3,500 units at $19.99"),
    ("unknown_words", "zyxwv qwerty flibbertigibbet"),
    ("control_chars", "tab\there\x00nul\u200bzero width"),
    ("overlong", " ".join(["the quick brown fox"] * 60)),
    ("long_chinese", "中文" * 80),
]

VOCAB_A = """[PAD] [UNK] [CLS] [SEP] [MASK] , . ! ? ' - ( ) $ 。 : the quick brown fox jumps
over lazy dog what time does market open tomorrow team won final match last night 3 1 中 文 本
分 类 很 有 趣 模 型 英 混 bert handles mix ##ing ok i love it cafe deja vu naive resume ecole
in 20 ##24 we sold 500 units at 19 99 tab here nul zero width"""

# A different vocabulary: other ids for shared words, subword pieces, emoji, fewer words.
VOCAB_B = """[PAD] [UNK] [CLS] [SEP] ! ? . , 。 中 文 类 趣 模 型 😀 ##🎉 qu ##ick bro ##wn fox
the ##e th jump ##s over dog lazy what time ##s market open to ##morrow team win won final
night love it i ok mix ##ing bert handle caf ##e resume in we sold unit ##s 2024 3 1 19 99 500
zero width tab here"""

BERT_A = dict(name="bert", version=1, vocab=VOCAB_A, labels=["business", "sports", "technology"],
              max_length=32, top_k=2, types="input", hidden=32, heads=2, ffn=64, layers=2,
              seed=101)
BERT_B = dict(name="bert", version=2, vocab=VOCAB_B,
              labels=["negative", "neutral", "positive", "mixed"], max_length=24, top_k=3,
              types="row0", hidden=32, heads=4, ffn=48, layers=2, seed=202)
CHARS = dict(name="chars", version=1, labels=["question", "greeting", "cjk", "emoji"],
             max_length=64, threshold=0.5, buckets=251, dim=16, seed=303)


class CharModel(nn.Module):
    """Peers' char ids -> Embedding(ids mod buckets) -> masked mean -> MLP -> logits."""

    def __init__(self, buckets: int, dim: int, labels: int):
        super().__init__()
        self.buckets = buckets
        self.emb = nn.Embedding(buckets, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 24), nn.Linear(24, labels)

    def forward(self, input_ids, attention_mask):
        h = self.emb(torch.remainder(input_ids, self.buckets))  # exports ONNX Mod
        return self.fc2(torch.tanh(self.fc1(masked_mean(h, attention_mask))))


def vocab_tokens(text):
    out = []
    for t in text.split():
        if t not in out:
            out.append(t)
    return out


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ranked(scores):
    """Indices best first; ties by index (inferd's order)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def ort_run(node, model, feeds, out_dir):
    cmd = [node, os.path.join(HERE, "ort_run.js"), model]
    for name, path in feeds.items():
        cmd += ["--input", f"{name}={path}"]
    cmd += ["--output-dir", out_dir, "--threads", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"ort_run.js failed on {model}:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def export(model, names, sample, path):
    dyn = {n: {0: "batch", 1: "seq"} for n in names}
    dyn["logits"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(torch.from_numpy(sample[n]) for n in names), path,
                          input_names=names, output_names=["logits"], dynamic_axes=dyn,
                          opset_version=OPSET, do_constant_folding=True)
    onnx.checker.check_model(path)


def encode(spec, text):
    """Reference ids (untruncated and truncated) for one text."""
    if spec["name"] == "chars":
        full = char_ids(text, max_len=10 ** 9)
        return full, full[:spec["max_length"]]
    vocab = {t: i for i, t in enumerate(vocab_tokens(spec["vocab"]))}
    full = bert_encode(text, vocab, 10 ** 9)
    return full, bert_encode(text, vocab, spec["max_length"])


def build(spec, seed):
    torch.manual_seed(seed)
    if spec["name"] == "chars":
        model = CharModel(spec["buckets"], spec["dim"], len(spec["labels"]))
        names = ["input_ids", "attention_mask"]
    else:
        n_vocab = len(vocab_tokens(spec["vocab"]))
        model = BertPooled(labels=len(spec["labels"]), vocab=n_vocab, hidden=spec["hidden"],
                           heads=spec["heads"], ffn=spec["ffn"], layers=spec["layers"],
                           types=spec["types"], max_pos=spec["max_length"])
        names = ["input_ids", "attention_mask"] + (
            ["token_type_ids"] if spec["types"] == "input" else [])
    randomise(model)
    # Spread the logits as a trained classifier's are: labels then differ from text to text,
    # and sigmoid scores fall on both sides of the threshold, clear of it.
    with torch.no_grad():
        (model.fc2 if spec["name"] == "chars" else model.classifier).weight.mul_(4.0)
    model.eval()
    return model, names


def feeds_for(names, rows, length):
    ids = np.zeros((len(rows), length), np.int64)
    mask = np.zeros((len(rows), length), np.int64)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = row
        mask[r, :len(row)] = 1
    f = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {n: f[n] for n in names}


def robust(spec, logits):
    """Whether every text's ranking and threshold decisions are far from ties: scores are
    compared within 1e-4, and engines agree with PyTorch to about 1e-6."""
    for row in logits:
        if "threshold" in spec:
            s = sigmoid(row.astype(np.float64))
            if np.min(np.abs(s - spec["threshold"])) < 2e-3:
                return False
        else:
            s = softmax(row.astype(np.float64))
        top = np.sort(s)[::-1]
        if np.min(top[:-1] - top[1:]) < 1e-3:
            return False
    return True


def pipeline_json(spec):
    if spec["name"] == "chars":
        return {"tokenizer": {"type": "char", "vocab": None,
                              "hash": {"kind": "fnv1a", "offset": 1000, "buckets": 20128}},
                "special_tokens": {"cls": 101},
                "max_length": spec["max_length"],
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
                "output": "logits",
                "postprocess": {"function": "sigmoid", "threshold": spec["threshold"],
                                "labels": "labels.txt"}}
    inputs = {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    if spec["types"] == "input":
        inputs["token_type_ids"] = "token_type_ids"
    return {"tokenizer": {"type": "wordpiece", "vocab": "vocab.txt", "lowercase": True},
            "max_length": spec["max_length"],
            "inputs": inputs,
            "output": "logits",
            "postprocess": {"function": "softmax", "top_k": spec["top_k"],
                            "labels": "labels.txt"}}


def make_version(spec, out, node, tmp):
    vdir = os.path.join(out, spec["name"], str(spec["version"]))
    os.makedirs(vdir)
    encoded = [(name, text) + encode(spec, text) for name, text in TEXTS]
    # Weights: the first seed from spec["seed"] whose outputs keep every check away from ties.
    for seed in range(spec["seed"], spec["seed"] + 100):
        model, names = build(spec, seed)
        with torch.no_grad():
            logits = [model(*[torch.from_numpy(v) for v in
                              feeds_for(names, [ids], len(ids)).values()])[0].numpy()
                      for _, _, _, ids in encoded]
        if robust(spec, logits):
            break
    else:
        raise SystemExit(f"{spec['name']}/{spec['version']}: no robust seed")
    path = os.path.join(vdir, "model.onnx")
    longest = max(len(ids) for _, _, _, ids in encoded)
    batch = feeds_for(names, [ids for _, _, _, ids in encoded], longest)
    export(model, names, batch, path)

    # ONNX Runtime on all texts as one padded batch.
    files = {}
    for n, arr in batch.items():
        files[n] = os.path.join(tmp, f"{spec['name']}{spec['version']}_{n}.npy")
        np.save(files[n], arr)
    odir = os.path.join(tmp, f"{spec['name']}{spec['version']}_out")
    info = ort_run(node, path, files, odir)
    ort = np.load(os.path.join(odir, "logits.npy"))
    diff = float(np.max(np.abs(ort - np.stack(logits))))
    if diff > AGREE:
        raise SystemExit(f"{spec['name']}/{spec['version']}: ORT and torch differ by {diff}")

    labels = spec["labels"]
    with open(os.path.join(vdir, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    if spec["name"] != "chars":
        with open(os.path.join(vdir, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(vocab_tokens(spec["vocab"])) + "\n")
    with open(os.path.join(vdir, "pipeline.json"), "w", encoding="utf-8") as f:
        json.dump(pipeline_json(spec), f, indent=1)
        f.write("\n")

    texts = []
    for (name, text, full, ids), row in zip(encoded, logits):
        row = row.astype(np.float64)
        multi = "threshold" in spec
        scores = sigmoid(row) if multi else softmax(row)
        order = ranked(list(scores))
        entry = {"name": name, "text": text, "ids": ids, "truncated": len(full) > len(ids),
                 "logits": [float(x) for x in row], "scores": [float(x) for x in scores],
                 "label": labels[order[0]], "score": float(scores[order[0]])}
        if multi:
            keep = [i for i in order if scores[i] >= spec["threshold"]]
            entry["labels"] = [labels[i] for i in keep]
            entry["label_scores"] = [float(scores[i]) for i in keep]
        else:
            entry["top_k"] = [[labels[i], float(scores[i])] for i in order[:spec["top_k"]]]
        texts.append(entry)
    return {"model": spec["name"], "version": spec["version"], "labels": labels,
            "max_length": spec["max_length"],
            "function": "sigmoid" if "threshold" in spec else "softmax",
            "top_k": spec.get("top_k"), "threshold": spec.get("threshold"),
            "inputs": names, "seed": seed, "max_abs_torch_vs_ort": diff,
            "ort": info.get("ort"), "texts": texts}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "text"))
    args = ap.parse_args()
    if not os.environ.get("NODE_PATH"):
        os.environ["NODE_PATH"] = os.path.join(REPO, "bench", ".peers", "node_modules")
    node = shutil.which("node")
    if not node:
        raise SystemExit("node is needed to run ONNX Runtime (tools/ort_run.js)")
    torch.set_num_threads(1)
    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    versions = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in (BERT_A, BERT_B, CHARS):
            versions.append(make_version(spec, out, node, tmp))
            v = versions[-1]
            print(f"{v['model']}/{v['version']}: seed {v['seed']}, torch vs ORT "
                  f"{v['max_abs_torch_vs_ort']:.2e}", file=sys.stderr)
    doc = {"generator": "tools/make_text_fixtures.py",
           "references": {"torch": torch.__version__, "onnx": onnx.__version__,
                          "onnxruntime": versions[0]["ort"]},
           "versions": versions}
    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
