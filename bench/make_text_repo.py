#!/usr/bin/python3
"""Build the inferd model repositories of `make bench-text`: N copies of the peers' small
classifier behind the text API, with the peers' character tokenizer as a pipeline.json.

  /usr/bin/python3 bench/make_text_repo.py                    # text_repo21 and text_repo1
  /usr/bin/python3 bench/make_text_repo.py --models 100 --name text_repo100
  /usr/bin/python3 bench/make_text_repo.py --check-node       # inferd's labels == ORT's
  /usr/bin/python3 bench/make_text_repo.py --check-node --check-api kserve   # ids from chartok.py

Each model mNN (m00..m{N-1}) is one version folder:

  bench/.peers/text_repo21/m00/config.json     batching: max_batch_size, short delay,
                                               pad_dims with length buckets
  bench/.peers/text_repo21/m00/1/model.onnx    symlink to bench/.peers/models/small.onnx
  bench/.peers/text_repo21/m00/1/pipeline.json the peers' char tokenizer (chartok.py):
                                               FNV-1a 32 of each code point's UTF-8 bytes,
                                               id = 1000 + h % 20128, [CLS]=101 first, at
                                               most 128 ids; softmax, top 1, labels.txt
  bench/.peers/text_repo21/m00/1/labels.txt    label_00 .. label_29 (the model has 30)

The peers answer {"label": argmax, "score": max softmax}; inferd answers the same argmax as
"label_NN" with the same softmax score. --check-node starts the peers' Node.js server (ONNX
Runtime) and an inferd on the repository and compares both on a few texts.
"""
import argparse
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", ".peers")
MODELS = os.path.join(PEERS, "models")
N_LABELS = 30  # the peers' small model: logits [batch, 30]

PIPELINE = {
    "tokenizer": {"type": "char", "vocab": None,
                  "hash": {"kind": "fnv1a", "offset": 1000, "buckets": 20128}},
    "special_tokens": {"cls": 101},
    "max_length": 128,
    "truncation": True,
    "padding": "longest",
    "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
    "output": "logits",
    "postprocess": {"function": "softmax", "top_k": 1, "labels": "labels.txt"},
}


# What config.json declares for the TorchScript file (bench/bench_torch.py): a TorchScript file
# names no tensors, so the declarations say what forward(input_ids, attention_mask) takes.
TORCH_TENSORS = {
    "inputs": [{"name": "input_ids", "datatype": "INT64", "dims": [-1, -1]},
               {"name": "attention_mask", "datatype": "INT64", "dims": [-1, -1]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "dims": [-1, N_LABELS]}],
}


def config(max_batch, delay_us, buckets, platform="onnx"):
    dyn = {"max_queue_delay_us": delay_us, "max_queue_size": 1024}
    if buckets:
        dyn["pad_dims"] = True
        dyn["length_buckets"] = buckets
    cfg = {"platform": platform, "max_batch_size": max_batch, "dynamic_batching": dyn}
    if platform == "torchscript":
        cfg.update(TORCH_TENSORS)
    return cfg


def build(name, n, max_batch, delay_us, buckets, model="small.onnx", root=PEERS):
    """(Re)builds <root>/<name> (default bench/.peers/<name>) with n models; returns its path.
    model: the file of bench/.peers/models each version links to; a .pt is served as a
    TorchScript model (platform torchscript, model.pt, declared tensors)."""
    src = os.path.join(MODELS, model)
    if not os.path.exists(src):
        sys.exit(f"{src} is missing: make the peers' models first "
                 "(/usr/bin/python3 ../shared/peers/make_models.py --out bench/.peers/models)")
    torch = model.endswith(".pt")
    out = os.path.join(root, name)
    if os.path.isdir(out):
        shutil.rmtree(out)
    labels = "".join(f"label_{i:02d}\n" for i in range(N_LABELS))
    for i in range(n):
        vdir = os.path.join(out, f"m{i:02d}", "1")
        os.makedirs(vdir)
        with open(os.path.join(out, f"m{i:02d}", "config.json"), "w") as f:
            json.dump(config(max_batch, delay_us, buckets,
                             "torchscript" if torch else "onnx"), f, indent=1)
        os.symlink(src, os.path.join(vdir, "model.pt" if torch else "model.onnx"))
        with open(os.path.join(vdir, "pipeline.json"), "w") as f:
            json.dump(PIPELINE, f, indent=1)
        with open(os.path.join(vdir, "labels.txt"), "w") as f:
            f.write(labels)
    return out


def peer_repo(n):
    """The peers' repository of n names (repo21 and repo1 come from make_models.py; others,
    e.g. repo100, are made here the same way: symlinks to the small model's files)."""
    d = os.path.join(MODELS, f"repo{n}")
    if os.path.isdir(d) and len([f for f in os.listdir(d) if f.endswith(".onnx")]) == n:
        return d
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        for ext in (".pt", ".onnx", ".state.pt", ".json"):
            link = os.path.join(d, f"m{i:02d}{ext}")
            if not os.path.lexists(link):
                os.symlink(os.path.join("..", "small" + ext), link)
    return d


def check_node(repo, texts, api="text", binary=None):
    """Starts the peers' node server and inferd on `repo`; returns a list of mismatches.
    api "text": inferd tokenizes (POST /v1/models/M:predict); "kserve": the peers' chartok.py
    does and inferd gets the ids (POST /v2/models/M/infer), which checks the repository and
    the engine without the text API."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import bench_text as bt  # noqa: E402  (server helpers)
    names = sorted(os.listdir(repo))
    pool = texts
    peer = bt.start_server(bt.VARIANTS["node"], bt.peer_repo_for(len(names)))
    try:
        want = [bt.predict(peer, names[i % len(names)], t) for i, t in enumerate(pool)]
    finally:
        bt.stop_server(peer)
    inf = bt.start_server(bt.inferd_variant(repo, binary, "inferd" if api == "text" else "kserve"),
                          None)
    try:
        got = [bt.predict(inf, names[i % len(names)], t) for i, t in enumerate(pool)]
    finally:
        bt.stop_server(inf)
    bad = []
    for t, w, g in zip(pool, want, got):
        # The random-weight model is close to uniform (every text: label 21, p ~ 0.040), so
        # the score, which moves by ~1e-4 between texts, is what shows a tokenizer mismatch.
        ok = w["label"] == g["label"] and abs(w["score"] - g["score"]) < 2e-6
        print(f"{'ok ' if ok else 'BAD'} ORT {w['label']:2d} {w['score']:.7f}  "
              f"inferd {g['label']:2d} {g['score']:.7f}  ({len(t)} chars) {t[:20]}")
        if not ok:
            bad.append((t, w, g))
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=0,
                    help="build one repository of this many models (default: 21 and 1)")
    ap.add_argument("--name", help="its folder under bench/.peers (default text_repoN)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--delay-us", type=int, default=500)
    ap.add_argument("--buckets", default="32,64,128",
                    help="length buckets for pad_dims ('' for no padding)")
    ap.add_argument("--check-node", action="store_true",
                    help="compare inferd's answers with the peers' node server (ORT)")
    ap.add_argument("--check-api", choices=("text", "kserve"), default="text",
                    help="inferd endpoint for --check-node (default text)")
    ap.add_argument("--inferd", help="inferd binary for --check-node (default build/inferd)")
    args = ap.parse_args()
    buckets = [int(b) for b in args.buckets.split(",") if b]
    todo = [(args.name or f"text_repo{args.models}", args.models)] if args.models else \
        [("text_repo21", 21), ("text_repo1", 1)]
    for name, n in todo:
        print(build(name, n, args.max_batch, args.delay_us, buckets))
    if args.check_node:
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        import bench_text as bt  # noqa: E402
        texts = bt.text_pool.text_pool(12, seed=7)
        bad = check_node(os.path.join(PEERS, todo[0][0]), texts, args.check_api, args.inferd)
        print(f"{len(texts) - len(bad)} passed, {len(bad)} failed")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
