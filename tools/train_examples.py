#!/usr/bin/python3
"""Train the example models of models/ from real text that Debian ships (issue #4).

  debian_section      English: a Debian package's description -> its archive Section
                      (49 sections). A 2-layer BERT-style encoder (hidden 128) over a
                      WordPiece vocabulary this script builds; inputs input_ids and
                      attention_mask, [CLS] pooling. Tokenized by inferd's "wordpiece".
  zh_fortune_source   Chinese: a fortunes-zh text -> the work it comes from (9 classes:
                      the Analects, Daodejing, Shijing, Tang and Song poetry, proverbs, ...).
                      A character TextCNN (kernels 2/3/4, max over time with padding masked)
                      over a character vocabulary plus FNV-1a hash buckets. Tokenized by
                      inferd's "char".

Data, split and vocabularies: tools/examples_data.py. Results and how to use the models:
docs/examples.md.

For each model the script extracts the data, splits it (stable, by hash), builds the
vocabulary from the training part only, tokenizes exactly as inferd's C tokenizer does
(through tools/ref_tokenizer.py), trains with fixed seeds, evaluates on the held-out part,
exports ONNX (opset 14, dynamic batch and sequence axes, int64 input_ids + attention_mask,
float logits [batch, classes]), and checks the export: ONNX Runtime (tools/ort_run.js) must
agree with PyTorch within 1e-4 on a padded batch of held-out texts, and so must each text run
alone (padding must not change a text's logits). It then writes
  models/<name>/config.json
  models/<name>/1/{model.onnx, pipeline.json, vocab.txt, labels.txt}
  tests/fixtures/examples/<name>.json   texts, token ids, PyTorch logits and labels, metrics
and prints the metrics (also in build/examples/<name>.metrics.json).

Usage (from the repository root; needs python3-torch, python3-onnx, fortunes-zh, apt access
to deb.debian.org for the package descriptions, and onnxruntime-node for the check):
  NODE_PATH=bench/.peers/node_modules /usr/bin/python3 tools/train_examples.py
      [--only debian_section|zh_fortune_source] [--apt-lists DIR] [--dev] [--set K=V]
Without onnxruntime-node (NODE_PATH) the ONNX Runtime comparison is skipped, with a note.
(scripts/deps.sh train installs the Debian packages.) Training uses 2 threads: about 6 min
for debian_section and 2-3 min for zh_fortune_source on this shared 2-core machine, ~10 min
in all with data preparation and checks. Torch's Linear runs on the system BLAS, and Debian's
reference libblas3 is ~10x slower than OpenBLAS, so the script runs itself with OpenBLAS when
libopenblas0-pthread is installed (or INFERD_OPENBLAS_DIR names a directory holding its
libblas.so.3), whatever the libblas.so.3 alternative points to. Results are deterministic for
a given input and thread count (two runs gave byte-identical model files).
For experiments, --dev trains without the dev split and reports accuracy on it (never on the
held-out split) and --set overrides a hyper-parameter; docs/examples.md says how the
committed settings were chosen.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS = 2


def reexec_with_training_env():
    """Runs this script again with the environment training wants, before torch is loaded:
    2 OpenMP and 2 OpenBLAS threads that sleep when idle (spinning OpenMP threads starve
    OpenBLAS's on 2 cores: 3-6x slower), glibc malloc keeping freed memory (page faults are
    expensive here), and OpenBLAS rather than the reference BLAS when it can be found."""
    if os.environ.get("INFERD_TRAIN_ENV") == "1":
        return
    env = dict(os.environ, INFERD_TRAIN_ENV="1", OMP_NUM_THREADS=str(THREADS),
               OPENBLAS_NUM_THREADS=str(THREADS), OMP_WAIT_POLICY="PASSIVE",
               MALLOC_MMAP_THRESHOLD_="33554432", MALLOC_TRIM_THRESHOLD_="4294967296")
    for d in (os.environ.get("INFERD_OPENBLAS_DIR"),
              "/usr/lib/x86_64-linux-gnu/openblas-pthread"):
        if d and os.path.exists(os.path.join(d, "libblas.so.3")):
            env["LD_LIBRARY_PATH"] = d + (":" + env["LD_LIBRARY_PATH"]
                                          if env.get("LD_LIBRARY_PATH") else "")
            env["INFERD_TRAIN_BLAS"] = d
            break
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


if __name__ == "__main__":
    reexec_with_training_env()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import examples_data as data  # noqa: E402

SEED = 20240604
OPSET = 14
TOLERANCE = 1e-4
CONFIG = {"platform": "onnx", "max_batch_size": 32,
          "dynamic_batching": {"max_queue_delay_us": 2000}}

# ------------------------------------------------------------------------------------ models


class SelfAttention(nn.Module):
    """BERT self-attention with the additive mask (1 - m) * -10000 on the scores."""

    def __init__(self, hidden, heads):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.o = nn.Linear(hidden, hidden)

    def split(self, x):
        b, s = x.size(0), x.size(1)
        return x.view(b, s, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, h, mask):
        b, s = h.size(0), h.size(1)
        q, k, v = self.split(self.q(h)), self.split(self.k(h)), self.split(self.v(h))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores + (1.0 - mask[:, None, None, :].to(torch.float32)) * -10000.0
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).contiguous()
        return self.o(ctx.view(b, s, self.heads * self.head_dim))


class EncoderLayer(nn.Module):
    """Post-LN BERT layer, GELU (erf)."""

    def __init__(self, hidden, heads, ffn, dropout):
        super().__init__()
        self.attn = SelfAttention(hidden, heads)
        self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
        self.up = nn.Linear(hidden, ffn)
        self.down = nn.Linear(ffn, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(dropout)

    def forward(self, h, mask):
        a = self.ln1(self.drop(self.attn(h, mask)) + h)
        return self.ln2(self.drop(self.down(F.gelu(self.up(a)))) + a)


class BertClassifier(nn.Module):
    """BERT sequence classifier: word + position embeddings, LayerNorm, post-LN layers,
    [CLS] -> dense -> tanh (the pooler) -> classifier. No token types (one segment)."""

    def __init__(self, vocab, labels, hidden, layers, heads, ffn, max_pos, dropout=0.1):
        super().__init__()
        self.word_emb = nn.Embedding(vocab, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_pos, hidden)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            [EncoderLayer(hidden, heads, ffn, dropout) for _ in range(layers)])
        self.pooler = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, labels)
        self.apply(self.init_weights)

    @staticmethod
    def init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()

    def forward(self, input_ids, attention_mask):
        pos = torch.arange(input_ids.size(1), dtype=torch.long).unsqueeze(0)
        h = self.drop(self.ln(self.word_emb(input_ids) + self.pos_emb(pos)))
        for layer in self.layers:
            h = layer(h, attention_mask)
        pooled = torch.tanh(self.pooler(h[:, 0]))
        return self.classifier(self.drop(pooled))


class TextCNN(nn.Module):
    """Kim's TextCNN over characters whose output does not depend on padding.

    Padding id 0 embeds to zeros and every convolution is zero-padded by k-1 on both sides,
    so an output position whose window holds at least one real character has the same value
    however many padding positions follow the text. Positions whose window holds none are
    multiplied by 0 after the ReLU (valid = max-pool of the mask over the same window), and
    0 never exceeds the max over the valid ones, which are >= 0."""

    def __init__(self, vocab, labels, dim, filters, kernels, dropout=0.5):
        super().__init__()
        self.kernels = list(kernels)
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.convs = nn.ModuleList([nn.Conv1d(dim, filters, k, padding=k - 1) for k in kernels])
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(filters * len(self.kernels), labels)

    def forward(self, input_ids, attention_mask):
        x = self.emb(input_ids).transpose(1, 2)  # [batch, dim, seq]
        m = attention_mask.to(torch.float32).unsqueeze(1)  # [batch, 1, seq]
        feats = []
        for k, conv in zip(self.kernels, self.convs):
            valid = F.max_pool1d(F.pad(m, (k - 1, k - 1)), k, stride=1)  # [batch, 1, seq+k-1]
            feats.append(torch.amax(F.relu(conv(x)) * valid, dim=2))
        return self.fc(self.drop(torch.cat(feats, dim=1)))

# ------------------------------------------------------------------------------------ training


def pad_batch(seqs):
    n = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), n), dtype=np.int64)
    mask = np.zeros((len(seqs), n), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def length_batches(lengths, batch, rng):
    """Shuffled batches of similar lengths: shuffle, sort chunks of 50 batches by length,
    cut, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch * 50
    out = []
    for i in range(0, len(order), chunk):
        part = sorted(order[i: i + chunk], key=lambda j: lengths[j])
        out.extend(part[k: k + batch] for k in range(0, len(part), batch))
    rng.shuffle(out)
    return out


def train(model, seqs, labels, epochs, batch, lr, weight_decay, warmup, rng, augment=None,
          log="", watch=None):
    """AdamW, linear warm-up then linear decay, gradient clipping at 1. augment(i, seq)
    may return a shortened sequence (used to show the model short texts too)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(seqs) / batch)
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, warmup * total)) *
        max(0.0, (total - s) / total))
    y_all = torch.tensor(labels)
    lengths = [len(s) for s in seqs]
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        loss_sum, n = 0.0, 0
        for b in length_batches(lengths, batch, rng):
            rows = [augment(i, seqs[i]) if augment else seqs[i] for i in b]
            ids, mask = pad_batch(rows)
            loss = F.cross_entropy(model(ids, mask), y_all[b])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(b)
            n += len(b)
        print("%s epoch %d/%d  loss %.4f  %.0f s" % (log, ep + 1, epochs, loss_sum / n,
                                                    time.time() - t0), file=sys.stderr)
        if watch:  # experiments only (--dev): accuracy on the dev split after each epoch
            t1 = time.time()
            print("%s   dev top1 %.4f" % (log, accuracy(predict(model, watch[0]), watch[1])),
                  file=sys.stderr)
            t0 += time.time() - t1
    return time.time() - t0


def predict(model, seqs, batch=256):
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(seqs), batch):
            ids, mask = pad_batch(seqs[i: i + batch])
            out.append(model(ids, mask))
    return torch.cat(out).numpy()


def accuracy(logits, y, k=1):
    top = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean([y[i] in top[i] for i in range(len(y))]))


def evaluate(model, seqs, y, names):
    logits = predict(model, seqs)
    pred = logits.argmax(1)
    per_class = {}
    for c, name in enumerate(names):
        idx = [i for i in range(len(y)) if y[i] == c]
        if idx:
            per_class[name] = dict(n=len(idx), top1=round(float(np.mean(pred[idx] == c)), 4))
    return dict(n=len(y), top1=round(accuracy(logits, y, 1), 4),
                top3=round(accuracy(logits, y, 3), 4),
                macro_top1=round(float(np.mean([v["top1"] for v in per_class.values()])), 4),
                per_class=per_class)

# ------------------------------------------------------------------------------------ export


def export_onnx(model, path, example_seqs):
    model.eval()
    ids, mask = pad_batch(example_seqs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask), path, input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=OPSET, do_constant_folding=True,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                        "attention_mask": {0: "batch", 1: "seq"},
                                        "logits": {0: "batch"}})
    onnx.checker.check_model(path)


def ort_logits(node_path, model_path, ids, mask):
    """Runs tools/ort_run.js (ONNX Runtime, one thread) on one batch; None if unavailable."""
    node = shutil.which("node")
    if not node or not node_path or not os.path.isdir(os.path.join(node_path,
                                                                   "onnxruntime-node")):
        return None, None
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "ids.npy"), ids)
        np.save(os.path.join(d, "mask.npy"), mask)
        p = subprocess.run([node, os.path.join(REPO, "tools", "ort_run.js"), model_path,
                            "--input", "input_ids=" + os.path.join(d, "ids.npy"),
                            "--input", "attention_mask=" + os.path.join(d, "mask.npy"),
                            "--output-dir", os.path.join(d, "out"), "--threads", "1"],
                           capture_output=True, text=True,
                           env=dict(os.environ, NODE_PATH=node_path))
        if p.returncode != 0:
            raise SystemExit("ort_run.js failed on %s:\n%s" % (model_path, p.stderr))
        info = json.loads(p.stdout.strip().splitlines()[-1])
        return np.load(os.path.join(d, "out", "logits.npy")), info.get("ort")


def check_export(model, path, seqs, node_path):
    """Torch on a padded batch vs torch one text at a time (padding invariance) vs ONNX
    Runtime on the padded batch. Returns the measured differences; exits if over 1e-4."""
    model.eval()
    ids, mask = pad_batch(seqs)
    with torch.no_grad():
        batch = model(ids, mask).numpy()
        alone = np.concatenate([model(*pad_batch([s])).numpy() for s in seqs])
    res = dict(rows=len(seqs), seq=int(ids.shape[1]),
               max_abs_padded_vs_alone=float(np.abs(batch - alone).max()))
    ort, ver = ort_logits(node_path, path, ids.numpy(), mask.numpy())
    if ort is not None:
        res["max_abs_torch_vs_ort"] = float(np.abs(batch - ort).max())
        res["onnxruntime"] = ver
    else:
        print("check: onnxruntime-node not found (set NODE_PATH); ORT check skipped",
              file=sys.stderr)
    for k in ("max_abs_padded_vs_alone", "max_abs_torch_vs_ort"):
        if res.get(k, 0.0) > TOLERANCE:
            raise SystemExit("check failed for %s: %s = %g > %g" % (path, k, res[k], TOLERANCE))
    return res, alone

# ------------------------------------------------------------------------------------ output


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def write_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def write_version(models_dir, name, model, example_seqs, pipeline, vocab, labels):
    root = os.path.join(models_dir, name)
    ver = os.path.join(root, "1")
    if os.path.isdir(ver):
        shutil.rmtree(ver)
    os.makedirs(ver)
    write_json(os.path.join(root, "config.json"), CONFIG)
    export_onnx(model, os.path.join(ver, "model.onnx"), example_seqs)
    write_json(os.path.join(ver, "pipeline.json"), pipeline)
    write_lines(os.path.join(ver, "vocab.txt"), vocab)
    write_lines(os.path.join(ver, "labels.txt"), labels)
    return ver


def sample_entries(texts, seqs, logits, labels, true=None):
    out = []
    for i, (t, s, lg) in enumerate(zip(texts, seqs, logits)):
        order = np.argsort(-lg)
        e = dict(text=t, ids=[int(x) for x in s], expected_label=labels[int(order[0])],
                 expected_top3=[labels[int(j)] for j in order[:3]],
                 logits=[round(float(x), 6) for x in lg])
        if true is not None:
            e["true_label"] = labels[true[i]]
        out.append(e)
    return out


def write_fixture(args, name, pipeline, metrics, entries):
    os.makedirs(args.fixtures_dir, exist_ok=True)
    write_json(os.path.join(args.fixtures_dir, name + ".json"), dict(
        model=name, version=1, max_length=pipeline["max_length"],
        note=("ids: the reference tokenization (tools/ref_tokenizer.py semantics) that inferd's "
              "pipeline must produce; logits: PyTorch eager on that row alone (ONNX Runtime "
              "agrees within 1e-4); expected_label/top3: from those logits; true_label: the "
              "held-out data's label. Regenerate with tools/train_examples.py."),
        heldout=dict(n=metrics["heldout"]["n"], top1=metrics["heldout"]["top1"],
                     top3=metrics["heldout"]["top3"]),
        samples=entries), indent=1)


def save_metrics(args, name, metrics):
    d = os.path.join(REPO, "build", "examples")
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, name + ".metrics.json"), metrics)
    short = {k: v for k, v in metrics.items() if k not in ("per_class",)}
    for k in ("heldout", "heldout_short", "heldout_first_line"):
        if k in short:
            short[k] = {a: b for a, b in short[k].items() if a != "per_class"}
    print(json.dumps(short, ensure_ascii=False, indent=1))

EVAL_NAME = {False: "held out", True: "dev"}


def split(recs, dev):
    """(training indices, evaluation indices): train+dev and test normally; with --dev,
    train and dev (experiments never see the test split)."""
    if dev:
        return ([i for i, r in enumerate(recs) if r["split"] == "train"],
                [i for i, r in enumerate(recs) if r["split"] == "dev"])
    return ([i for i, r in enumerate(recs) if r["split"] != "test"],
            [i for i, r in enumerate(recs) if r["split"] == "test"])

# ------------------------------------------------------------------------------------ English


EN_NAME = "debian_section"
EN = dict(vocab=8000, suffixes=600, max_length=40, hidden=128, layers=2, heads=4, ffn=256,
          dropout=0.0, epochs=3, batch=64, lr=1e-3, weight_decay=0.01, warmup=0.06,
          short_prob=0.2)
EN_EXAMPLES = [  # sentences for docs/examples.md (not from the data)
    "A command line tool to download files over HTTP, HTTPS and FTP.",
    "Python library for parsing and writing YAML configuration files",
    "A relaxing puzzle game where you slide colourful blocks into place.",
    "TrueType fonts covering Latin, Greek and Cyrillic scripts",
    "Development headers and static library for the PNG image codec",
    "Documentation in HTML format for the Rust standard library",
]


def english(args):
    t0 = time.time()
    if args.apt_lists:
        pk, tr, release = data.apt_lists_in(args.apt_lists, args.cache)
    else:
        pk, tr, release = data.fetch_apt_lists(os.path.join(args.cache, "apt"))
    recs, info = data.debian_sections(pk, tr)
    info["release"] = release
    labels = sorted({r["label"] for r in recs})
    lab = {c: i for i, c in enumerate(labels)}
    tr_idx, te_idx = split(recs, args.dev)
    print("debian_section: %d packages, %d classes, %d train / %d %s (%d sources)"
          % (len(recs), len(labels), len(tr_idx), len(te_idx), EVAL_NAME[args.dev],
             len({recs[i]["source"] for i in te_idx})), file=sys.stderr)
    words = [data.basic_words(r["text"]) for r in recs]
    vocab = data.build_wordpiece_vocab([words[i] for i in tr_idx], EN["vocab"], EN["suffixes"])
    tok = data.WordPiece(vocab, EN["max_length"])
    enc = [tok.encode(r["text"], w) for r, w in zip(recs, words)]
    # Token count of the short description alone, for the short-text augmentation.
    short_len = [len(tok.encode(r["short"])) for r in recs]
    unk = sum(s.count(1) for s in enc) / sum(len(s) for s in enc)
    print("debian_section: vocab %d, [UNK] rate %.4f, mean length %.1f, %.0f s" % (
        len(vocab), unk, np.mean([len(s) for s in enc]), time.time() - t0), file=sys.stderr)
    tr_seqs = [enc[i] for i in tr_idx]
    tr_short = [short_len[i] for i in tr_idx]
    tr_y = [lab[recs[i]["label"]] for i in tr_idx]

    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    model = BertClassifier(len(vocab), len(labels), EN["hidden"], EN["layers"], EN["heads"],
                           EN["ffn"], EN["max_length"], EN["dropout"])
    sep = tok.vocab["[SEP]"]

    def augment(i, s):
        if rng.random() < EN["short_prob"] and tr_short[i] < len(s):
            return s[: tr_short[i] - 1] + [sep]
        return s
    train_s = train(model, tr_seqs, tr_y, EN["epochs"], EN["batch"], EN["lr"],
                    EN["weight_decay"], EN["warmup"], rng, augment, log=EN_NAME,
                    watch=args.dev and ([enc[i] for i in te_idx],
                                        [lab[recs[i]["label"]] for i in te_idx]))
    te_seqs = [enc[i] for i in te_idx]
    te_y = [lab[recs[i]["label"]] for i in te_idx]
    counts = np.bincount(tr_y, minlength=len(labels))
    metrics = dict(
        model=EN_NAME, data=info, classes=len(labels), train=len(tr_idx), params=sum(
            p.numel() for p in model.parameters()), train_seconds=round(train_s, 1),
        blas=os.environ.get("INFERD_TRAIN_BLAS", "system libblas.so.3"), config=EN,
        vocab_unk_rate=round(unk, 5),
        majority_baseline=round(float(np.mean(np.array(te_y) == counts.argmax())), 4),
        heldout=evaluate(model, te_seqs, te_y, labels),
        heldout_short=evaluate(model, [tok.encode(recs[i]["short"]) for i in te_idx], te_y,
                               labels))
    pipeline = {
        "tokenizer": {"type": "wordpiece", "vocab": "vocab.txt", "lowercase": True},
        "max_length": EN["max_length"],
        "truncation": True,
        "padding": "longest",
        "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
        "output": "logits",
        "postprocess": {"function": "softmax", "top_k": 3, "labels": "labels.txt"},
    }
    finish(args, EN_NAME, model, pipeline, vocab, labels, metrics, tok.encode,
           [recs[i]["text"] for i in te_idx], te_seqs, te_y, EN_EXAMPLES,
           [recs[i]["text"] for i in tr_idx])

# ------------------------------------------------------------------------------------ Chinese


ZH_NAME = "zh_fortune_source"
ZH = dict(min_char_count=2, buckets=512, max_length=128, dim=128, filters=128,
          kernels=[2, 3, 4], epochs=30, batch=32, lr=2e-3, weight_decay=0.01, warmup=0.05,
          excerpt_prob=0.3, join_prob=0.2)
SENTENCE_END = re.compile(r"(?<=[。！？；\n])")


def zh_excerpt(text, rng):
    """A random run of whole sentences (cut after 。！？； or a line end), so the model also
    sees the one-line quotes people type rather than only whole fortunes."""
    parts = [p for p in SENTENCE_END.split(text) if p.strip()]
    if len(parts) < 2:
        return text
    a = rng.randrange(len(parts))
    b = rng.randrange(a, min(len(parts), a + 4)) + 1
    return "".join(parts[a:b]).strip()


def zh_first_line(text):
    return text.split("\n")[0]
ZH_EXAMPLES = [  # sentences for docs/examples.md (not from the data)
    "学而不思则罔，思而不学则殆。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "使用 apt-get install 命令安装软件包，然后用 dpkg -l 查看已安装的软件包。",
    "千里之行，始于足下。",
    "关关雎鸠，在河之洲。窈窕淑女，君子好逑。",
    "人生在世，吃亏是福；宁可人负我，切莫我负人。",
]


def chinese(args):
    recs, info = data.zh_fortunes()
    labels = sorted({r["label"] for r in recs})
    lab = {c: i for i, c in enumerate(labels)}
    tr_idx, te_idx = split(recs, args.dev)
    train_r = [recs[i] for i in tr_idx]
    test_r = [recs[i] for i in te_idx]
    vocab = data.build_char_vocab([r["text"] for r in train_r], ZH["min_char_count"])
    tok = data.CharTokenizer(vocab, len(vocab), ZH["buckets"], ZH["max_length"])
    print("zh_fortune_source: %d texts, %d classes, %d train / %d %s, %d chars in vocab"
          % (len(recs), len(labels), len(train_r), len(test_r), EVAL_NAME[args.dev],
             len(vocab) - 1),
          file=sys.stderr)
    tr_seqs = [tok.encode(r["text"]) for r in train_r]
    tr_y = [lab[r["label"]] for r in train_r]
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    model = TextCNN(len(vocab) + ZH["buckets"], len(labels), ZH["dim"], ZH["filters"],
                    ZH["kernels"])
    tr_texts = [r["text"] for r in train_r]

    def augment(i, s):
        t = tr_texts[i]
        if rng.random() < ZH["excerpt_prob"]:
            t = zh_excerpt(t, rng)
        if rng.random() < ZH["join_prob"]:
            t = t.replace("\n", "")
        return tok.encode(t) if t != tr_texts[i] else s
    train_s = train(model, tr_seqs, tr_y, ZH["epochs"], ZH["batch"], ZH["lr"],
                    ZH["weight_decay"], ZH["warmup"], rng, augment, log=ZH_NAME,
                    watch=args.dev and ([tok.encode(r["text"]) for r in test_r],
                                        [lab[r["label"]] for r in test_r]))
    te_seqs = [tok.encode(r["text"]) for r in test_r]
    te_y = [lab[r["label"]] for r in test_r]
    counts = np.bincount(tr_y, minlength=len(labels))
    metrics = dict(
        model=ZH_NAME, data=info, classes=len(labels), train=len(train_r),
        params=sum(p.numel() for p in model.parameters()), train_seconds=round(train_s, 1),
        blas=os.environ.get("INFERD_TRAIN_BLAS", "system libblas.so.3"), config=ZH,
        vocab_chars=len(vocab) - 1,
        majority_baseline=round(float(np.mean(np.array(te_y) == counts.argmax())), 4),
        heldout=evaluate(model, te_seqs, te_y, labels),
        heldout_first_line=evaluate(model, [tok.encode(zh_first_line(r["text"]))
                                            for r in test_r], te_y, labels))
    pipeline = {
        "tokenizer": {"type": "char", "vocab": "vocab.txt",
                      "hash": {"kind": "fnv1a", "offset": len(vocab), "buckets": ZH["buckets"]}},
        "special_tokens": {"pad": 0},
        "max_length": ZH["max_length"],
        "truncation": True,
        "padding": "longest",
        "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
        "output": "logits",
        "postprocess": {"function": "softmax", "top_k": 3, "labels": "labels.txt"},
    }
    finish(args, ZH_NAME, model, pipeline, vocab, labels, metrics, tok.encode,
           [r["text"] for r in test_r], te_seqs, te_y, ZH_EXAMPLES, tr_texts)

# ------------------------------------------------------------------------------------ common


def finish(args, name, model, pipeline, vocab, labels, metrics, encode, te_texts, te_seqs,
           te_y, examples, train_texts):
    """Exports, checks, and writes the version folder, the fixture and the metrics."""
    # Held-out samples for the fixture: a fixed, label-spread pick (every k-th held-out text).
    step = max(1, len(te_texts) // args.samples)
    pick = list(range(0, len(te_texts), step))[: args.samples]
    ex_seqs = [encode(t) for t in examples]
    ver = write_version(args.models_dir, name, model, [te_seqs[i] for i in pick[:4]], pipeline,
                        vocab, labels)
    check_seqs = ex_seqs + [te_seqs[i] for i in pick]
    check, alone = check_export(model, os.path.join(ver, "model.onnx"), check_seqs,
                                args.node_path)
    metrics["export_check"] = check
    n_ex = len(examples)
    entries = sample_entries(examples, ex_seqs, alone[:n_ex], labels)
    for e in entries:  # is the example (a famous quote, say) part of a training text?
        e["in_training_text"] = any(e["text"].lower() in t.lower() for t in train_texts)
    entries += sample_entries([te_texts[i] for i in pick], [te_seqs[i] for i in pick],
                              alone[n_ex:], labels, [te_y[i] for i in pick])
    metrics["model_bytes"] = os.path.getsize(os.path.join(ver, "model.onnx"))
    metrics["examples"] = [dict(text=e["text"], top3=e["expected_top3"],
                                in_training_text=e["in_training_text"],
                                score=round(float(np.max(softmax(np.array(e["logits"])))), 3))
                           for e in entries[:n_ex]]
    write_fixture(args, name, pipeline, metrics, entries)
    save_metrics(args, name, metrics)


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=[EN_NAME, ZH_NAME])
    ap.add_argument("--models-dir", default=os.path.join(REPO, "models"))
    ap.add_argument("--fixtures-dir", default=os.path.join(REPO, "tests", "fixtures",
                                                           "examples"))
    ap.add_argument("--cache", default=os.path.join(REPO, "build", "examples"),
                    help="where the apt indices are fetched and unpacked")
    ap.add_argument("--apt-lists", help="use the bookworm/main Packages and Translation-en "
                    "already in this apt lists directory instead of fetching them")
    ap.add_argument("--node-path", default=os.environ.get(
        "NODE_PATH", os.path.join(REPO, "bench", ".peers", "node_modules")),
        help="node_modules holding onnxruntime-node (default $NODE_PATH)")
    ap.add_argument("--samples", type=int, default=24, help="held-out texts per fixture")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a hyper-parameter for an experiment, e.g. zh.epochs=10 or "
                    "en.layers=3 (the committed models use the defaults)")
    ap.add_argument("--dev", action="store_true",
                    help="experiment: train without the dev split and evaluate on it (never "
                    "on the test split); write to --models-dir/--fixtures-dir as usual")
    args = ap.parse_args()
    for kv in args.set:
        key, _, val = kv.partition("=")
        which, _, field = key.partition(".")
        table = {"en": EN, "zh": ZH}.get(which)
        if table is None or field not in table:
            ap.error("--set %s: no such hyper-parameter" % key)
        table[field] = json.loads(val)
    torch.set_num_threads(THREADS)
    os.makedirs(args.cache, exist_ok=True)
    if "INFERD_TRAIN_BLAS" not in os.environ:
        print("note: OpenBLAS not found; torch uses the system libblas.so.3, which may be the "
              "~10x slower reference BLAS (install libopenblas0-pthread)", file=sys.stderr)
    if args.only in (None, ZH_NAME):
        chinese(args)
    if args.only in (None, EN_NAME):
        english(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
