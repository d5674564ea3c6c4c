#!/usr/bin/python3
"""Write small ONNX models as seeds for fuzz/fuzz_onnx.c (fuzz/corpus/onnx/).

The engine fixtures are exported by PyTorch and weigh 10-700 KB, mostly weights, so libFuzzer's
mutations land in weights and each run is slow. These seeds have the same node patterns as an
exporter writes (embeddings, decomposed LayerNorm, multi-head attention with a mask, erf GELU,
pooler, TextCNN, GRU, and a graph of shape and index ops) with hidden sizes of 4-8, so a seed
is 1-6 KB and every pass (constant folding, shape inference, LayerNorm/GELU/attention fusion,
plan building) runs in microseconds.

Needs only the Python standard library (it writes the protobuf wire format itself), so it runs
without python3-onnx:
    /usr/bin/python3 tools/make_fuzz_onnx.py [--out fuzz/corpus/onnx]
Check a seed with `build/inferd inspect fuzz/corpus/onnx/tiny_bert.onnx --batch 2 --seq 3`.
"""
import argparse
import math
import os
import random
import struct

FLOAT, INT32, INT64, BOOL = 1, 6, 7, 9
ATTR_FLOAT, ATTR_INT, ATTR_STRING, ATTR_TENSOR, ATTR_FLOATS, ATTR_INTS = 1, 2, 3, 4, 6, 7


# ---- protobuf wire format ----

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(field: int, n: int) -> bytes:
    return varint(field << 3) + varint(n)


def f_bytes(field: int, data) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def f_float(field: int, x: float) -> bytes:
    return varint(field << 3 | 5) + struct.pack("<f", x)


# ---- ONNX messages ----

def tensor(name: str, dims, dtype: int, values) -> bytes:
    fmt = {FLOAT: "f", INT32: "i", INT64: "q", BOOL: "?"}[dtype]
    raw = struct.pack("<%d%s" % (len(values), fmt), *values)
    out = b"".join(f_varint(1, d) for d in dims)
    return out + f_varint(2, dtype) + f_bytes(8, name) + f_bytes(9, raw)


def attr(name: str, value) -> bytes:
    out = f_bytes(1, name)
    if isinstance(value, float):
        return out + f_float(2, value) + f_varint(20, ATTR_FLOAT)
    if isinstance(value, int):
        return out + f_varint(3, value) + f_varint(20, ATTR_INT)
    if isinstance(value, str):
        return out + f_bytes(4, value) + f_varint(20, ATTR_STRING)
    if isinstance(value, bytes):  # a TensorProto
        return out + f_bytes(5, value) + f_varint(20, ATTR_TENSOR)
    if isinstance(value, list) and value and isinstance(value[0], float):
        return out + b"".join(f_float(7, x) for x in value) + f_varint(20, ATTR_FLOATS)
    if isinstance(value, list):
        return out + b"".join(f_varint(8, x) for x in value) + f_varint(20, ATTR_INTS)
    raise TypeError(value)


def value_info(name: str, dtype: int, shape) -> bytes:
    dims = b"".join(f_bytes(1, f_bytes(2, d) if isinstance(d, str) else f_varint(1, d))
                    for d in shape)
    tensor_type = f_varint(1, dtype) + f_bytes(2, dims)
    return f_bytes(1, name) + f_bytes(2, f_bytes(1, tensor_type))


class Graph:
    def __init__(self, seed: int):
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.rng = random.Random(seed)
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return "%s_%d" % (base, self.count)

    def input(self, name, dtype, shape):
        self.inputs.append(value_info(name, dtype, shape))
        return name

    def output(self, name, dtype, shape):
        self.outputs.append(value_info(name, dtype, shape))

    def init(self, dims, dtype=FLOAT, values=None, base="w"):
        n = 1
        for d in dims:
            n *= d
        if values is None:
            scale = 1.0 / math.sqrt(dims[0]) if dims else 1.0
            values = [round(self.rng.gauss(0, scale), 4) for _ in range(n)]
        name = self.name(base)
        self.inits.append(tensor(name, dims, dtype, values))
        return name

    def const(self, values, dtype=INT64, dims=None):
        return self.init([len(values)] if dims is None else dims, dtype, values, base="c")

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        node = b"".join(f_bytes(1, i) for i in inputs)
        node += b"".join(f_bytes(2, o) for o in outs)
        node += f_bytes(3, self.name("n")) + f_bytes(4, op_type)
        node += b"".join(f_bytes(5, attr(k, v)) for k, v in attrs.items())
        self.nodes.append(node)
        return outs[0] if n_out == 1 else outs

    def model(self, opset: int) -> bytes:
        graph = b"".join(f_bytes(1, n) for n in self.nodes) + f_bytes(2, "g")
        graph += b"".join(f_bytes(5, t) for t in self.inits)
        graph += b"".join(f_bytes(11, v) for v in self.inputs)
        graph += b"".join(f_bytes(12, v) for v in self.outputs)
        opset_id = f_bytes(1, "") + f_varint(2, opset)
        return f_varint(1, 7) + f_bytes(2, "make_fuzz_onnx") + f_bytes(7, graph) + \
            f_bytes(8, opset_id)


# ---- building blocks, in the exporter's patterns ----

def unsqueeze(g: Graph, x: str, axes, opset: int) -> str:
    if opset >= 13:  # axes became an input in opset 13
        return g.op("Unsqueeze", [x, g.const(axes)])
    return g.op("Unsqueeze", [x], axes=axes)


def layernorm(g: Graph, x: str, h: int, fused: bool) -> str:
    gamma = g.init([h], values=[round(1 + g.rng.uniform(-0.2, 0.2), 4) for _ in range(h)])
    beta = g.init([h], values=[round(g.rng.uniform(-0.2, 0.2), 4) for _ in range(h)])
    if fused:
        return g.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-12)
    mean = g.op("ReduceMean", [x], axes=[-1], keepdims=1)
    d = g.op("Sub", [x, mean])
    var = g.op("ReduceMean", [g.op("Pow", [d, g.const([2.0], FLOAT, [])])], axes=[-1], keepdims=1)
    std = g.op("Sqrt", [g.op("Add", [var, g.const([1e-12], FLOAT, [])])])
    return g.op("Add", [g.op("Mul", [g.op("Div", [d, std]), gamma]), beta])


def linear(g: Graph, x: str, n_in: int, n_out: int) -> str:
    return g.op("Add", [g.op("MatMul", [x, g.init([n_in, n_out])]), g.init([n_out])])


def gelu_erf(g: Graph, x: str) -> str:
    e = g.op("Erf", [g.op("Div", [x, g.const([1.4142135], FLOAT, [])])])
    return g.op("Mul", [g.op("Mul", [x, g.op("Add", [e, g.const([1.0], FLOAT, [])])]),
                        g.const([0.5], FLOAT, [])])


def attention(g: Graph, x: str, mask_add: str, h: int, heads: int) -> str:
    dh = h // heads

    def split_heads(t, perm):
        r = g.op("Reshape", [t, g.const([0, 0, heads, dh])])
        return g.op("Transpose", [r], perm=perm)

    q = split_heads(linear(g, x, h, h), [0, 2, 1, 3])
    k = split_heads(linear(g, x, h, h), [0, 2, 3, 1])
    v = split_heads(linear(g, x, h, h), [0, 2, 1, 3])
    s = g.op("Div", [g.op("MatMul", [q, k]), g.const([math.sqrt(dh)], FLOAT, [])])
    p = g.op("Softmax", [g.op("Add", [s, mask_add])], axis=-1)
    c = g.op("Transpose", [g.op("MatMul", [p, v])], perm=[0, 2, 1, 3])
    c = g.op("Reshape", [c, g.const([0, 0, h])])
    return linear(g, c, h, h)


def tiny_bert(opset: int, fused_ln: bool, seed: int) -> bytes:
    g = Graph(seed)
    h, heads, ffn, vocab, max_pos, labels = 8, 2, 16, 32, 16, 3
    ids = g.input("input_ids", INT64, ["batch", "seq"])
    mask = g.input("attention_mask", INT64, ["batch", "seq"])
    # Embeddings: words plus positions sliced to the sequence length.
    words = g.op("Gather", [g.init([vocab, h]), ids], axis=0)
    seq = unsqueeze(g, g.op("Gather", [g.op("Shape", [ids]), g.const([1], dims=[])], axis=0),
                    [0], opset)
    pos_ids = g.op("Slice", [g.const(list(range(max_pos)), dims=[1, max_pos]), g.const([0]), seq,
                             g.const([1])])
    pos = g.op("Gather", [g.init([max_pos, h]), pos_ids], axis=0)
    x = layernorm(g, g.op("Add", [words, pos]), h, fused_ln)
    # Mask: (1 - mask) * min, shaped [batch, 1, 1, seq].
    m = g.op("Cast", [unsqueeze(g, mask, [1, 2], opset)], to=FLOAT)
    mask_add = g.op("Mul", [g.op("Sub", [g.const([1.0], FLOAT, []), m]),
                            g.const([-3.4028234663852886e38], FLOAT, [])])
    x = layernorm(g, g.op("Add", [attention(g, x, mask_add, h, heads), x]), h, fused_ln)
    f = linear(g, gelu_erf(g, linear(g, x, h, ffn)), ffn, h)
    x = layernorm(g, g.op("Add", [f, x]), h, fused_ln)
    # Pooler on the first token, then the classifier.
    cls = g.op("Gather", [x, g.const([0], dims=[])], axis=1)
    logits = linear(g, g.op("Tanh", [linear(g, cls, h, h)]), h, labels)
    g.nodes.append(f_bytes(1, logits) + f_bytes(2, "logits") + f_bytes(4, "Identity"))
    g.output("logits", FLOAT, ["batch", labels])
    return g.model(opset)


def tiny_textcnn(seed: int) -> bytes:
    g = Graph(seed)
    h, vocab, labels, seq = 4, 16, 2, 6
    ids = g.input("input_ids", INT64, ["batch", seq])
    e = g.op("Transpose", [g.op("Gather", [g.init([vocab, h]), ids], axis=0)], perm=[0, 2, 1])
    feats = []
    for k in (2, 3):
        c = g.op("Relu", [g.op("Conv", [e, g.init([3, h, k]), g.init([3])], kernel_shape=[k],
                               pads=[0, 0], strides=[1])])
        if k == 2:
            feats.append(g.op("ReduceMax", [c], axes=[2], keepdims=0))
        else:
            feats.append(g.op("Flatten", [g.op("GlobalMaxPool", [c])], axis=1))
    cat = g.op("Concat", feats, axis=1)
    out = g.op("Gemm", [cat, g.init([labels, 6]), g.init([labels])], transB=1)
    g.nodes.append(f_bytes(1, g.op("Softmax", [out], axis=1)) + f_bytes(2, "probs") +
                   f_bytes(4, "Identity"))
    g.output("probs", FLOAT, ["batch", labels])
    return g.model(11)


def tiny_gru(seed: int) -> bytes:
    g = Graph(seed)
    h, hid, vocab, labels = 4, 3, 16, 2
    ids = g.input("input_ids", INT64, ["batch", "seq"])
    e = g.op("Transpose", [g.op("Gather", [g.init([vocab, h]), ids], axis=0)], perm=[1, 0, 2])
    y, yh = g.op("GRU", [e, g.init([2, 3 * hid, h]), g.init([2, 3 * hid, hid]),
                         g.init([2, 6 * hid])], n_out=2, hidden_size=hid,
                 direction="bidirectional", linear_before_reset=1)
    last = g.op("Reshape", [g.op("Transpose", [yh], perm=[1, 0, 2]), g.const([0, 2 * hid])])
    # Mean of the outputs over time and directions, added to the last states.
    mean = g.op("ReduceMean", [y], axes=[0, 1], keepdims=0)
    feat = g.op("Add", [last, g.op("Concat", [mean, mean], axis=1)])
    logits = linear(g, feat, 2 * hid, labels)
    g.nodes.append(f_bytes(1, logits) + f_bytes(2, "logits") + f_bytes(4, "Identity"))
    g.output("logits", FLOAT, ["batch", labels])
    return g.model(12)


def tiny_lstm(seed: int) -> bytes:
    g = Graph(seed)
    h, hid, vocab, labels = 4, 3, 16, 2
    ids = g.input("input_ids", INT64, ["batch", "seq"])
    e = g.op("Transpose", [g.op("Gather", [g.init([vocab, h]), ids], axis=0)], perm=[1, 0, 2])
    _, yh, _ = g.op("LSTM", [e, g.init([1, 4 * hid, h]), g.init([1, 4 * hid, hid]),
                             g.init([1, 8 * hid])], n_out=3, hidden_size=hid)
    last = g.op("Squeeze", [yh], axes=[0])
    logits = linear(g, last, hid, labels)
    g.nodes.append(f_bytes(1, logits) + f_bytes(2, "logits") + f_bytes(4, "Identity"))
    g.output("logits", FLOAT, ["batch", labels])
    return g.model(12)


def shape_ops(seed: int) -> bytes:
    """Index and shape ops around a masked mean pool: Shape, ConstantOfShape, Range, Expand,
    Where, Equal, CumSum, TopK, ArgMax, OneHot, Tile, Split, Pad, Clip, ReduceSum."""
    g = Graph(seed)
    h, vocab = 4, 16
    ids = g.input("input_ids", INT64, ["batch", "seq"])
    mask = g.input("attention_mask", INT64, ["batch", "seq"])
    e = g.op("Gather", [g.init([vocab, h]), ids], axis=0)
    mf = unsqueeze(g, g.op("Cast", [mask], to=FLOAT), [2], 13)
    zeros = g.op("ConstantOfShape", [g.op("Shape", [e])],
                 value=tensor("v", [1], FLOAT, [0.0]))
    keep = g.op("Equal", [g.op("Cast", [mf], to=INT64), g.const([1], dims=[])])
    masked = g.op("Where", [g.op("Expand", [keep, g.op("Shape", [e])]), e, zeros])
    pooled = g.op("Div", [g.op("ReduceSum", [masked, g.const([1])], keepdims=0),
                          g.op("Clip", [g.op("ReduceSum", [mf, g.const([1])], keepdims=0),
                                        g.const([1e-9], FLOAT, []), g.const([1e9], FLOAT, [])])])
    pos = g.op("CumSum", [mask, g.const([1], dims=[])])
    last_pos = g.op("Cast", [g.op("ReduceMax", [pos], axes=[1], keepdims=1)], to=FLOAT)
    seq = g.op("Gather", [g.op("Shape", [mask]), g.const([1], dims=[])], axis=0)
    r = g.op("Range", [g.const([0], dims=[]), seq, g.const([1], dims=[])])
    a, b = g.op("Split", [pooled, g.const([2, 2])], n_out=2, axis=1)
    padded = g.op("Pad", [g.op("Mul", [a, b]), g.const([0, 1, 0, 1])], mode="constant")
    vals, idx = g.op("TopK", [padded, g.const([2])], n_out=2, axis=1)
    hot = g.op("OneHot", [g.op("ArgMax", [vals], axis=1, keepdims=0), g.const([3], dims=[]),
                          g.const([0.0, 1.0], FLOAT)], axis=-1)
    tiled = g.op("Tile", [hot, g.const([1, 2])])
    n = g.op("Cast", [g.op("Size", [r])], to=FLOAT)
    out = g.op("Concat", [tiled, g.op("Cast", [idx], to=FLOAT),
                          g.op("Add", [g.op("Add", [vals, n]), last_pos])], axis=1)
    g.nodes.append(f_bytes(1, out) + f_bytes(2, "scores") + f_bytes(4, "Identity"))
    g.output("scores", FLOAT, ["batch", 10])
    return g.model(13)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fuzz",
                                                  "corpus", "onnx"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    seeds = {
        "tiny_bert_op14.onnx": tiny_bert(14, False, 1),
        "tiny_bert_ln_op17.onnx": tiny_bert(17, True, 2),
        "tiny_bert_op11.onnx": tiny_bert(11, False, 3),
        "tiny_textcnn_op11.onnx": tiny_textcnn(4),
        "tiny_bigru_op12.onnx": tiny_gru(5),
        "tiny_lstm_op12.onnx": tiny_lstm(6),
        "tiny_shape_ops_op13.onnx": shape_ops(7),
    }
    for name, data in seeds.items():
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)
        print("%-28s %6d bytes" % (name, len(data)))


if __name__ == "__main__":
    main()
