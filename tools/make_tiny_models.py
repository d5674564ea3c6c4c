#!/usr/bin/python3
"""Writes a repository of tiny ONNX text classifiers for residency tests and benchmarks.

Each version folder gets a model.onnx built with the onnx package alone (no torch), so tests
can make a hundred of them in a second at test time:

    input_ids INT64 [batch, seq]
      -> Gather(embedding [vocab, hidden]) -> ReduceMean over seq -> MatMul + bias
      -> logits FP32 [batch, classes]
      -> version FP32 [batch, 1]: the version number the model was made for, on every row

The "version" output lets a test check that every response was computed by the version its
model_version field names. Weights are random from a seed derived from (model index,
version), so every file differs and every run writes the same bytes.

    /usr/bin/python3 tools/make_tiny_models.py OUT --models 100 [--versions 1] [--vocab 1000]
        [--hidden 64] [--classes 4] [--config '{"max_batch_size": 8}']

Used by tests/e2e/test_residency.py and bench/bench_residency.py.
"""
import argparse
import json
import os

import numpy as np
from onnx import TensorProto, checker, helper, numpy_helper


def model_bytes(version, seed, vocab=1000, hidden=64, classes=4):
    """Serialized ONNX model (opset 14) for one version."""
    rng = np.random.RandomState(seed)
    emb = (rng.standard_normal((vocab, hidden)) * 0.5).astype(np.float32)
    w = (rng.standard_normal((hidden, classes)) / np.sqrt(hidden)).astype(np.float32)
    b = rng.standard_normal(classes).astype(np.float32)
    inits = [
        numpy_helper.from_array(emb, "embedding"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(np.array([float(version)], dtype=np.float32), "version_value"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
        numpy_helper.from_array(np.array([0.0], dtype=np.float32), "nothing"),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["tokens"], axis=0),
        helper.make_node("ReduceMean", ["tokens"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["scores"]),
        helper.make_node("Add", ["scores", "b"], ["logits"]),
        # version = logits[:, 0:1] * 0 + version: a [batch, 1] column of the version number.
        helper.make_node("Slice", ["logits", "zero", "one", "one"], ["first"]),
        helper.make_node("Mul", ["first", "nothing"], ["zeros"]),
        helper.make_node("Add", ["zeros", "version_value"], ["version"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_classifier",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
         helper.make_tensor_value_info("version", TensorProto.FLOAT, ["batch", 1])],
        inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)],
                          producer_name="inferd-tools")
    m.ir_version = 8
    checker.check_model(m)
    return m.SerializeToString()


def write_version(model_dir, version, seed, **kw):
    """Writes model_dir/<version>/model.onnx through a temporary folder and a rename, so a
    polling server never sees a half-written version."""
    final = os.path.join(model_dir, str(version))
    tmp = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}")
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "model.onnx"), "wb") as f:
        f.write(model_bytes(version, seed, **kw))
    os.rename(tmp, final)
    return final


def seed_of(index, version):
    return (index * 7919 + version * 104729) % (2**31)


def make_repo(out, models=100, versions=(1,), config=None, prefix="m", **kw):
    """Writes out/<prefix><i>/<v>/model.onnx for each model i and version v; returns the
    model names."""
    names = []
    for i in range(models):
        name = f"{prefix}{i:03d}"
        mdir = os.path.join(out, name)
        os.makedirs(mdir, exist_ok=True)
        for v in versions:
            write_version(mdir, v, seed_of(i, v), **kw)
        if config is not None:
            with open(os.path.join(mdir, "config.json"), "w") as f:
                json.dump(config, f)
        names.append(name)
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--versions", default="1", help="comma-separated version numbers")
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--prefix", default="m")
    ap.add_argument("--config", help="config.json text for every model")
    args = ap.parse_args()
    names = make_repo(args.out, args.models, [int(v) for v in args.versions.split(",")],
                      json.loads(args.config) if args.config else None, args.prefix,
                      vocab=args.vocab, hidden=args.hidden, classes=args.classes)
    print(f"{len(names)} models in {args.out}")


if __name__ == "__main__":
    main()
