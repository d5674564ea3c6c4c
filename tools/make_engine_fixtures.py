#!/usr/bin/python3
"""Regenerate the engine's correctness fixtures in tests/fixtures/engine/.

Each case is a tiny text model written by PyTorch's ONNX exporter (as deployed models are),
a few runs of inputs, and the outputs ONNX Runtime 1.30 computes for them. The engine must
reproduce those outputs within the case's tolerance (1e-4 absolute in FP32);
tests/e2e/test_engine_fixtures.py checks it through `inferd exec`.

For every case this script
  1. builds the model with seeded random weights (the seed comes from the case name, so
     adding a case does not change the others) and exports it with torch.onnx.export
     (dynamic batch and sequence axes, do_constant_folding=True);
  2. runs onnx.checker on the file;
  3. writes each run's inputs as .npy, runs ONNX Runtime on them (tools/ort_run.js:
     onnxruntime-node, graph optimisation level 'all', one thread) and keeps its outputs as
     the expected ones;
  4. runs the same inputs through PyTorch eager and fails unless every output agrees with
     ONNX Runtime within 1e-4, so the expected values rest on two independent
     implementations;
  5. for inputs that carry a mask, checks that ignoring the mask would move the outputs by far
     more than the tolerance, so the fixtures catch an engine that mishandles padding.
The results, with both references' versions and their measured disagreement, go into
tests/fixtures/engine/manifest.json.

Usage (from the repository root; needs python3-torch, python3-onnx and onnxruntime-node):
  NODE_PATH=bench/.peers/node_modules /usr/bin/python3 tools/make_engine_fixtures.py
      [--out tests/fixtures/engine] [--cases NAME,...] [--peers ../shared/peers] [--list]
The output directory is deleted and rewritten. --cases writes only the named cases (use it
with another --out while developing; the committed manifest lists every case).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
import zlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-4  # max |engine - ORT| and max |torch - ORT|, FP32
SEED = 20240611
F32_MIN = torch.finfo(torch.float32).min

# ---------------------------------------------------------------------------------------------
# Models. Written the way the Hugging Face and common text-classification code write them, so
# the exporter emits the same node patterns as for real checkpoints.
# ---------------------------------------------------------------------------------------------


def gelu(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "erf":
        return F.gelu(x)  # exports Div/Erf/Add/Mul/Mul
    if kind == "tanh":
        return F.gelu(x, approximate="tanh")  # exports Pow/Mul/Add/Tanh below opset 20
    raise ValueError(kind)


def extended_mask(mask: torch.Tensor, style: str) -> torch.Tensor:
    """Additive attention mask [batch, 1, 1, seq] from a 0/1 mask [batch, seq]."""
    m = mask[:, None, None, :].to(torch.float32)
    if style == "bert":  # original BERT / make_models.py
        return (1.0 - m) * -10000.0
    if style == "finfo":  # transformers >= 4.x get_extended_attention_mask
        return (1.0 - m) * F32_MIN
    raise ValueError(style)


class SelfAttention(nn.Module):
    """Multi-head self-attention; mask_style 'bert'/'finfo' adds a mask to the scores,
    'masked_fill' fills masked scores with the float32 minimum as DistilBERT does, which also
    scales q before the product instead of the scores after it."""

    def __init__(self, hidden: int, heads: int, mask_style: str):
        super().__init__()
        self.heads, self.head_dim, self.mask_style = heads, hidden // heads, mask_style
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.o = nn.Linear(hidden, hidden)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, s = x.size(0), x.size(1)
        return x.view(b, s, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, s = h.size(0), h.size(1)
        q, k, v = self.split(self.q(h)), self.split(self.k(h)), self.split(self.v(h))
        if self.mask_style == "masked_fill":
            q = q / math.sqrt(self.head_dim)
            scores = torch.matmul(q, k.transpose(2, 3))
            hide = (mask == 0).view(b, 1, 1, s).expand_as(scores)
            scores = scores.masked_fill(hide, torch.tensor(F32_MIN))
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            scores = scores + extended_mask(mask, self.mask_style)
        probs = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return self.o(ctx.view(b, s, self.heads * self.head_dim))


class EncoderLayer(nn.Module):
    """Post-LN transformer layer (BERT, RoBERTa, DistilBERT)."""

    def __init__(self, hidden: int, heads: int, ffn: int, gelu_kind: str, mask_style: str,
                 eps: float):
        super().__init__()
        self.attn = SelfAttention(hidden, heads, mask_style)
        self.ln1 = nn.LayerNorm(hidden, eps=eps)
        self.up = nn.Linear(hidden, ffn)
        self.down = nn.Linear(ffn, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=eps)
        self.drop = nn.Dropout(0.1)
        self.gelu_kind = gelu_kind

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.ln1(self.drop(self.attn(h, mask)) + h)
        f = self.down(gelu(self.up(a), self.gelu_kind))
        return self.ln2(self.drop(f) + a)


class Encoder(nn.Module):
    """Embeddings + post-LN layers. positions: 'absolute' (arange) or 'roberta' (cumsum of the
    non-padding tokens, offset by pad_id). types: 'input' (token_type_ids is a model input),
    'row0' (no input, add type row 0 as make_models.py does), 'zeros' (no input, look up
    zeros as RoBERTa's buffered token_type_ids do) or 'none' (DistilBERT)."""

    def __init__(self, vocab: int, hidden: int, heads: int, ffn: int, layers: int,
                 gelu_kind: str = "erf", mask_style: str = "bert", eps: float = 1e-12,
                 max_pos: int = 64, positions: str = "absolute", types: str = "input",
                 type_vocab: int = 2, pad_id: int = 0):
        super().__init__()
        self.positions, self.types, self.pad_id = positions, types, pad_id
        self.word_emb = nn.Embedding(vocab, hidden, padding_idx=pad_id)
        self.pos_emb = nn.Embedding(max_pos, hidden,
                                padding_idx=pad_id if positions == "roberta" else None)
        self.type_emb = nn.Embedding(type_vocab, hidden) if types != "none" else None
        self.ln = nn.LayerNorm(hidden, eps=eps)
        self.drop = nn.Dropout(0.1)
        self.layers = nn.ModuleList(
            [EncoderLayer(hidden, heads, ffn, gelu_kind, mask_style, eps) for _ in range(layers)])

    def position_ids(self, ids: torch.Tensor) -> torch.Tensor:
        if self.positions == "roberta":  # transformers create_position_ids_from_input_ids
            m = ids.ne(self.pad_id).int()
            return (torch.cumsum(m, dim=1).type_as(m) * m).long() + self.pad_id
        return torch.arange(ids.size(1), dtype=torch.long, device=ids.device).unsqueeze(0)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor,
                token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.word_emb(ids) + self.pos_emb(self.position_ids(ids))
        if self.types == "input":
            h = h + self.type_emb(token_type_ids)
        elif self.types == "row0":
            h = h + self.type_emb.weight[0]
        elif self.types == "zeros":
            h = h + self.type_emb(torch.zeros_like(ids))
        h = self.drop(self.ln(h))
        for layer in self.layers:
            h = layer(h, mask)
        return h


class BertPooled(nn.Module):
    """BERT / RoBERTa sequence classifier: first token -> dense -> tanh -> classifier."""

    def __init__(self, labels: int, **enc):
        super().__init__()
        self.enc = Encoder(**enc)
        hidden = self.enc.word_emb.embedding_dim
        self.pooler = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(0.1)
        self.classifier = nn.Linear(hidden, labels)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        h = self.enc(input_ids, attention_mask, token_type_ids)
        pooled = torch.tanh(self.pooler(self.drop(h[:, 0])))
        return self.classifier(self.drop(pooled))


class DistilBertCls(nn.Module):
    """DistilBERT sequence classifier: first token -> pre_classifier -> ReLU -> classifier."""

    def __init__(self, labels: int, **enc):
        super().__init__()
        self.enc = Encoder(types="none", mask_style="masked_fill", **enc)
        hidden = self.enc.word_emb.embedding_dim
        self.pre_classifier = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(0.2)
        self.classifier = nn.Linear(hidden, labels)

    def forward(self, input_ids, attention_mask):
        h = self.enc(input_ids, attention_mask)
        x = F.relu(self.pre_classifier(h[:, 0]))
        return self.classifier(self.drop(x))


class TokenCls(nn.Module):
    """Token classifier that also returns the encoder output, padded positions included."""

    def __init__(self, labels: int, **enc):
        super().__init__()
        self.enc = Encoder(**enc)
        self.classifier = nn.Linear(self.enc.word_emb.embedding_dim, labels)

    def forward(self, input_ids, attention_mask):
        h = self.enc(input_ids, attention_mask)
        return h, self.classifier(h)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers mean pooling: sum(h * mask) / max(sum(mask), 1e-9)."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return torch.sum(h * m, dim=1) / torch.clamp(m.sum(dim=1), min=1e-9)


class MeanPoolCls(nn.Module):
    def __init__(self, labels: int, **enc):
        super().__init__()
        self.enc = Encoder(**enc)
        self.classifier = nn.Linear(self.enc.word_emb.embedding_dim, labels)

    def forward(self, input_ids, attention_mask):
        return self.classifier(masked_mean(self.enc(input_ids, attention_mask), attention_mask))


class TextCNN(nn.Module):
    """Kim-style TextCNN. pool 'maxpool': nn.MaxPool1d over the whole (fixed) length, as
    fixed-length TextCNNs are written; 'reduce': torch.amax for one branch and max(dim) for the
    others (both export ReduceMax), which keeps the sequence axis dynamic."""

    def __init__(self, vocab: int, dim: int, filters: int, kernels: Sequence[int], labels: int,
                 pool: str, fixed_len: int = 0):
        super().__init__()
        self.pool = pool
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.convs = nn.ModuleList([nn.Conv1d(dim, filters, k) for k in kernels])
        if pool == "maxpool":
            self.pools = nn.ModuleList([nn.MaxPool1d(fixed_len - k + 1) for k in kernels])
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(filters * len(kernels), labels)

    def forward(self, input_ids):
        x = self.emb(input_ids).transpose(1, 2)  # [batch, dim, seq]
        feats = []
        for i, conv in enumerate(self.convs):
            c = F.relu(conv(x))
            if self.pool == "maxpool":
                feats.append(self.pools[i](c).squeeze(2))
            elif i == 0:
                feats.append(torch.amax(c, dim=2))
            else:
                feats.append(c.max(dim=2)[0])
        return self.fc(self.drop(torch.cat(feats, dim=1)))


class BiLSTMCls(nn.Module):
    """Embedding -> 2-layer bidirectional LSTM -> last layer's final states (both ways)."""

    def __init__(self, vocab: int, dim: int, hidden: int, labels: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, num_layers=2, bidirectional=True, batch_first=True,
                            dropout=0.1)
        self.fc = nn.Linear(2 * hidden, labels)

    def forward(self, input_ids):
        _, (h_n, _) = self.lstm(self.emb(input_ids))
        return self.fc(torch.cat([h_n[-2], h_n[-1]], dim=1))


class BiGRUCls(nn.Module):
    """Embedding -> bidirectional GRU -> [final states, mean of the outputs] -> linear, so both
    the GRU's Y and Y_h outputs are checked."""

    def __init__(self, vocab: int, dim: int, hidden: int, labels: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.gru = nn.GRU(dim, hidden, num_layers=1, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(4 * hidden, labels)

    def forward(self, input_ids):
        out, h_n = self.gru(self.emb(input_ids))
        return self.fc(torch.cat([h_n[0], h_n[1], out.mean(dim=1)], dim=1))


class FeatureMLP(nn.Module):
    """MLP on float features: Linear/ReLU/Tanh/Sigmoid; 2-D Linear exports Gemm."""

    def __init__(self, features: int, labels: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(features, 32), nn.Linear(32, 32)
        self.fc3, self.fc4 = nn.Linear(32, 16), nn.Linear(16, labels)

    def forward(self, features):
        h = torch.sigmoid(self.fc3(torch.tanh(self.fc2(F.relu(self.fc1(features))))))
        logits = self.fc4(h)
        return logits, torch.sigmoid(logits)


class EmbedMeanMLP(nn.Module):
    """fastText-like: mean of the unmasked token embeddings -> Linear -> ReLU -> Linear."""

    def __init__(self, vocab: int, dim: int, labels: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.fc1, self.fc2 = nn.Linear(dim, 48), nn.Linear(48, labels)

    def forward(self, input_ids, attention_mask):
        return self.fc2(F.relu(self.fc1(masked_mean(self.emb(input_ids), attention_mask))))


def randomise(model: nn.Module) -> None:
    """Make random weights that exercise the engine. PyTorch's default Linear init is so small
    that attention stays nearly uniform and padding barely matters; LeCun-normal weights give
    O(1) activations and peaked attention, as in trained models. PyTorch's LayerNorm starts at
    gamma=1, beta=0, which would hide an engine that drops or swaps them. RNN weights get the
    twice that scale (as trained RNNs have), so that gates do not sit at 0.5 and states near 0."""
    for m in model.modules():
        if isinstance(m, (nn.LSTM, nn.GRU)):
            for name, w in m.named_parameters():
                fan_in = w.shape[1] if name.startswith("weight") else 0
                nn.init.normal_(w, mean=0.0, std=2.0 / math.sqrt(fan_in) if fan_in else 0.2)
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=1.0 / math.sqrt(m.in_features))
            nn.init.normal_(m.bias, mean=0.0, std=0.1)
        elif isinstance(m, nn.LayerNorm):
            nn.init.normal_(m.weight, mean=1.0, std=0.2)
            nn.init.normal_(m.bias, mean=0.0, std=0.2)


def load_peer_bert(peers: str) -> type:
    sys.path.insert(0, peers)
    try:
        import make_models  # ../shared/peers/make_models.py
    finally:
        sys.path.pop(0)
    return make_models.BertClassifier


# ---------------------------------------------------------------------------------------------
# Inputs. Every run pads on the right, with a different length per row.
# ---------------------------------------------------------------------------------------------

# (run name, seq, lengths of the rows); batch = len(lengths).
SEQ_RUNS = [
    ("b1_s7", 7, [7]),
    ("b1_s33_padded", 33, [20]),
    ("b3_s33", 33, [33, 2, 19]),
    ("b5_s7", 7, [7, 1, 4, 6, 3]),
    ("b2_s64", 64, [64, 41]),
]
FIXED32_RUNS = [  # for the fixed-length TextCNN
    ("b1_s32", 32, [32]),
    ("b3_s32", 32, [32, 2, 17]),
    ("b5_s32", 32, [9, 1, 32, 25, 4]),
]
FEATURE_RUNS = [("b1", 0, [0]), ("b3", 0, [0] * 3), ("b5", 0, [0] * 5)]


class Tokens:
    """Special ids of a case's vocabulary: rows start with cls, real tokens end with sep
    (if any), and padding uses pad."""

    def __init__(self, vocab: int, pad: int, cls: int, sep: Optional[int], first: int):
        self.vocab, self.pad, self.cls, self.sep, self.first = vocab, pad, cls, sep, first


def make_ids(rng: np.random.RandomState, tok: Tokens, seq: int,
             lengths: List[int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """input_ids, attention_mask, token_type_ids (int64 [batch, seq]); ids are spread over the
    whole vocabulary and the largest id appears in the first row."""
    b = len(lengths)
    ids = rng.randint(tok.first, tok.vocab, size=(b, seq)).astype(np.int64)
    mask = np.zeros((b, seq), np.int64)
    types = np.zeros((b, seq), np.int64)
    for r, n in enumerate(lengths):
        ids[r, n:] = tok.pad
        mask[r, :n] = 1
        ids[r, 0] = tok.cls
        if tok.sep is not None and n >= 3:
            ids[r, n - 1] = tok.sep
        if n >= 4:  # second segment: the last third of the real tokens
            types[r, n - n // 3:n] = 1
    if lengths[0] >= 3:
        ids[0, 1] = tok.vocab - 1
    return ids, mask, types


# ---------------------------------------------------------------------------------------------
# Cases.
# ---------------------------------------------------------------------------------------------

BERT = dict(vocab=512, hidden=32, heads=4, ffn=64, layers=2, labels=3)


class Case:
    def __init__(self, name: str, opset: int, covers: List[str], build: Callable[[], nn.Module],
                 inputs: List[str], outputs: List[str], runs: list, tokens: Optional[Tokens] = None,
                 features: int = 0, seq_axis: bool = True, external_data: bool = False,
                 seq_outputs: Sequence[str] = ("last_hidden_state",),
                 export_kwargs: Optional[dict] = None, notes: str = ""):
        self.name, self.opset, self.covers, self.build = name, opset, covers, build
        self.seq_outputs = seq_outputs  # outputs with a sequence axis (axis 1)
        self.inputs, self.outputs, self.runs, self.tokens = inputs, outputs, runs, tokens
        self.features, self.seq_axis, self.external_data = features, seq_axis, external_data
        self.export_kwargs, self.notes = export_kwargs, notes


def bert_cls(types: str, **kw) -> Callable[[], nn.Module]:
    cfg = dict(BERT)
    cfg.update(kw)
    return lambda: BertPooled(types=types, **cfg)


def cases(peers: str) -> List[Case]:
    bert_tok = Tokens(vocab=512, pad=0, cls=2, sep=3, first=5)
    ids_mask = ["input_ids", "attention_mask"]
    ids_mask_tt = ids_mask + ["token_type_ids"]

    def peer_model() -> nn.Module:
        Bert = load_peer_bert(peers)
        return Bert(layers=2, hidden=64, heads=4, ffn=128, vocab=1000, labels=5, init=False)

    peer_export = dict(  # exactly make_models.py's torch.onnx.export arguments
        input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                      "attention_mask": {0: "batch", 1: "seq"},
                      "logits": {0: "batch"}},
        opset_version=14, do_constant_folding=True)

    return [
        Case("bert_erf_tt_op11", 11,
             ["BERT", "token_type_ids input", "GELU erf", "LayerNorm decomposed (eps 1e-12)",
              "additive mask -10000", "tanh pooler", "opset 11 (Unsqueeze axes attribute)"],
             bert_cls("input"), ids_mask_tt, ["logits"], SEQ_RUNS, bert_tok),
        Case("bert_tanh_op13", 13,
             ["BERT", "no token_type_ids (type row 0 added as a constant)", "GELU tanh",
              "LayerNorm decomposed", "additive mask -10000", "2 heads of 24",
              "opset 13 (Unsqueeze axes input)"],
             bert_cls("row0", hidden=48, heads=2, ffn=96, gelu_kind="tanh"), ids_mask,
             ["logits"], SEQ_RUNS, bert_tok),
        Case("bert_erf_tt_finfo_op14", 14,
             ["BERT", "token_type_ids input", "GELU erf", "LayerNorm decomposed",
              "HF mask (1-mask)*finfo(float32).min", "opset 14"],
             bert_cls("input", mask_style="finfo"), ids_mask_tt, ["logits"], SEQ_RUNS, bert_tok),
        Case("bert_ln_erf_tt_op17", 17,
             ["BERT", "token_type_ids input", "GELU erf", "LayerNormalization op",
              "additive mask -10000", "opset 17"],
             bert_cls("input"), ids_mask_tt, ["logits"], SEQ_RUNS, bert_tok),
        Case("bert_ln_tanh_finfo_op17", 17,
             ["BERT", "no token_type_ids", "GELU tanh", "LayerNormalization op",
              "HF mask (1-mask)*finfo(float32).min", "8 heads of 4", "opset 17"],
             bert_cls("row0", heads=8, gelu_kind="tanh", mask_style="finfo"), ids_mask,
             ["logits"], SEQ_RUNS, bert_tok),
        Case("distilbert_op12", 12,
             ["DistilBERT", "no token types", "no pooler", "masked_fill mask (Where, finfo.min)",
              "q scaled before QK^T", "pre_classifier + ReLU on first token", "opset 12"],
             lambda: DistilBertCls(labels=4, vocab=512, hidden=32, heads=4, ffn=64, layers=2),
             ids_mask, ["logits"], SEQ_RUNS, bert_tok),
        Case("roberta_op16", 16,
             ["RoBERTa/XLM-R", "position ids = cumsum(ids != pad) * mask + pad_id (CumSum)",
              "pad_id 1", "type vocab 1 looked up with zeros", "LayerNorm decomposed (eps 1e-5)",
              "opset 16"],
             lambda: BertPooled(labels=3, vocab=512, hidden=32, heads=4, ffn=64, layers=2,
                                eps=1e-5, max_pos=66, positions="roberta", types="zeros",
                                type_vocab=1, pad_id=1),
             ids_mask, ["logits"], SEQ_RUNS, Tokens(vocab=512, pad=1, cls=0, sep=2, first=3)),
        Case("peer_bert_op14", 14,
             ["the peers' BertClassifier (../shared/peers/make_models.py) at layers=2 hidden=64 "
              "heads=4 ffn=128 vocab=1000 labels=5", "make_models.py's export arguments",
              "type row 0 added as a constant", "512 positions", "opset 14"],
             peer_model, ids_mask, ["logits"], SEQ_RUNS,
             Tokens(vocab=1000, pad=0, cls=101, sep=102, first=103), export_kwargs=peer_export,
             notes="Built with init=False (PyTorch's default initialisation) and random "
                   "LayerNorm parameters rather than make_models.py's std-0.02 init, so the "
                   "logits are O(1) and 1e-4 is a tight bound."),
        Case("bert_token_op15", 15,
             ["BERT token classifier", "outputs last_hidden_state [batch, seq, hidden] incl. "
              "padded positions", "per-token logits [batch, seq, labels]", "MatMul on 3-D",
              "opset 15"],
             lambda: TokenCls(labels=5, types="row0", **{k: v for k, v in BERT.items()
                                                        if k != "labels"}),
             ids_mask, ["last_hidden_state", "logits"], SEQ_RUNS, bert_tok,
             seq_outputs=("last_hidden_state", "logits")),
        Case("bert_meanpool_op13", 13,
             ["sentence encoder with mean pooling sum(h*mask)/max(sum(mask),1e-9)",
              "ReduceSum with axes input (opset 13)", "Clip with only a min for clamp",
              "opset 13"],
             lambda: MeanPoolCls(labels=4, types="row0", **{k: v for k, v in BERT.items()
                                                           if k != "labels"}),
             ids_mask, ["logits"], SEQ_RUNS, bert_tok),
        Case("bert_h96_op14", 14,
             ["BERT", "no token_type_ids", "hidden 96, FFN 384, 2 heads of 48: layer widths on "
              "whole 48-column panels, so padded batches run on their valid tokens alone",
              "GELU erf", "LayerNorm decomposed", "opset 14"],
             bert_cls("row0", hidden=96, heads=2, ffn=384), ids_mask, ["logits"], SEQ_RUNS,
             bert_tok),
        Case("bert_h96_meanpool_op14", 14,
             ["sentence encoder with mean pooling sum(h*mask)/max(sum(mask),1e-9)",
              "hidden 96, FFN 384, 2 heads of 48 (valid tokens alone, as bert_h96_op14)",
              "opset 14"],
             lambda: MeanPoolCls(labels=4, types="row0", vocab=512, hidden=96, heads=2,
                                 ffn=384, layers=2),
             ids_mask, ["logits"], SEQ_RUNS, bert_tok),
        Case("textcnn_maxpool_op11", 11,
             ["TextCNN", "Embedding (Gather)", "Conv1d kernels 2,3,4", "ReLU",
              "MaxPool1d over the whole length", "Concat", "Dropout (eval)", "Gemm",
              "fixed sequence length 32", "opset 11"],
             lambda: TextCNN(vocab=300, dim=32, filters=16, kernels=(2, 3, 4), labels=4,
                             pool="maxpool", fixed_len=32),
             ["input_ids"], ["logits"], FIXED32_RUNS,
             Tokens(vocab=300, pad=0, cls=1, sep=None, first=2), seq_axis=False,
             notes="nn.MaxPool1d's kernel is an attribute, so this model only takes seq 32 "
                   "(the way fixed-length TextCNNs are deployed); runs vary the batch and the "
                   "padding."),
        Case("textcnn_reducemax_op13", 13,
             ["TextCNN", "Conv1d kernels 2,3,4", "max over time via torch.amax and max(dim) "
              "(ReduceMax)", "dynamic sequence length", "opset 13"],
             lambda: TextCNN(vocab=300, dim=32, filters=16, kernels=(2, 3, 4), labels=4,
                             pool="reduce"),
             ["input_ids"], ["logits"], SEQ_RUNS,
             Tokens(vocab=300, pad=0, cls=1, sep=None, first=2)),
        Case("bilstm_op14", 14,
             ["BiLSTM classifier", "2 stacked bidirectional ONNX LSTM ops (batch_first "
              "Transposes, zero initial states)", "final hidden states Y_h", "opset 14"],
             lambda: BiLSTMCls(vocab=300, dim=32, hidden=24, labels=3),
             ["input_ids"], ["logits"], SEQ_RUNS,
             Tokens(vocab=300, pad=0, cls=1, sep=None, first=2)),
        Case("bigru_op12", 12,
             ["BiGRU classifier", "bidirectional ONNX GRU op (linear_before_reset=1)",
              "outputs Y (mean over time) and Y_h", "opset 12"],
             lambda: BiGRUCls(vocab=300, dim=32, hidden=24, labels=3),
             ["input_ids"], ["logits"], SEQ_RUNS,
             Tokens(vocab=300, pad=0, cls=1, sep=None, first=2)),
        Case("mlp_features_op11", 11,
             ["MLP on float features", "Gemm", "Relu/Tanh/Sigmoid", "two outputs", "opset 11"],
             lambda: FeatureMLP(features=20, labels=6), ["features"], ["logits", "scores"],
             FEATURE_RUNS, features=20),
        Case("mlp_embed_meanpool_op12", 12,
             ["MLP over mean-pooled embeddings (fastText-like)", "ReduceSum axes attribute",
              "opset 12"],
             lambda: EmbedMeanMLP(vocab=400, dim=32, labels=5), ids_mask, ["logits"], SEQ_RUNS,
             Tokens(vocab=400, pad=0, cls=1, sep=2, first=3)),
        Case("bert_external_data_op14", 14,
             ["weights in an external data file (weights.bin, every initializer, "
              "size_threshold=0)", "BERT", "opset 14"],
             lambda: BertPooled(labels=3, types="row0", vocab=200, hidden=32, heads=4, ffn=64,
                                layers=1),
             ids_mask, ["logits"], SEQ_RUNS[:4],
             Tokens(vocab=200, pad=0, cls=2, sep=3, first=5), external_data=True),
    ]


# ---------------------------------------------------------------------------------------------
# Generation.
# ---------------------------------------------------------------------------------------------


def case_seed(name: str) -> int:
    return SEED + zlib.crc32(name.encode())


def dynamic_axes(case: Case) -> Dict[str, Dict[int, str]]:
    axes = {}
    for name in case.inputs:
        axes[name] = {0: "batch", 1: "seq"} if (case.seq_axis and not case.features) \
            else {0: "batch"}
    for name in case.outputs:
        axes[name] = {0: "batch", 1: "seq"} if name in case.seq_outputs else {0: "batch"}
    return axes


def run_inputs(case: Case, run: tuple, rng: np.random.RandomState) -> Dict[str, np.ndarray]:
    _, seq, lengths = run
    if case.features:
        return {"features": (rng.randn(len(lengths), case.features) * 2).astype(np.float32)}
    ids, mask, types = make_ids(rng, case.tokens, seq, lengths)
    every = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {name: every[name] for name in case.inputs}


def torch_run(model: nn.Module, case: Case, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    with torch.no_grad():
        out = model(*[torch.from_numpy(feeds[n]) for n in case.inputs])
    out = out if isinstance(out, tuple) else (out,)
    return [o.numpy() for o in out]


def ort_run(node: str, model: str, feeds: Dict[str, str], out_dir: str) -> dict:
    cmd = [node, os.path.join(REPO, "tools", "ort_run.js"), model]
    for name, path in feeds.items():
        cmd += ["--input", f"{name}={path}"]
    cmd += ["--output-dir", out_dir, "--threads", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"ort_run.js failed on {model}:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def export(case: Case, model: nn.Module, path: str, sample: Dict[str, np.ndarray]) -> None:
    args = tuple(torch.from_numpy(sample[n]) for n in case.inputs)
    kwargs = case.export_kwargs or dict(
        input_names=case.inputs, output_names=case.outputs, dynamic_axes=dynamic_axes(case),
        opset_version=case.opset, do_constant_folding=True)
    assert kwargs["opset_version"] == case.opset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, path, **kwargs)
    if case.external_data:
        m = onnx.load(path)
        os.remove(path)
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)
    onnx.checker.check_model(path)


def describe_values(values) -> List[dict]:
    out = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        out.append(dict(name=v.name, dtype=onnx.TensorProto.DataType.Name(t.elem_type).lower(),
                        shape=dims))
    return out


def make_case(case: Case, out_root: str, node: str, versions: dict) -> dict:
    case_dir = os.path.join(out_root, case.name)
    os.makedirs(case_dir)
    seed = case_seed(case.name)
    torch.manual_seed(seed)
    model = case.build()
    randomise(model)
    model.eval()
    rng = np.random.RandomState(seed % (2 ** 32))
    all_feeds = [run_inputs(case, run, rng) for run in case.runs]

    model_path = os.path.join(case_dir, "model.onnx")
    # Trace with the largest batch, so that no size-1 axis gets specialised away.
    sample = max(all_feeds, key=lambda f: next(iter(f.values())).shape)
    export(case, model, model_path, sample)
    proto = onnx.load(model_path, load_external_data=False)
    assert [v.name for v in proto.graph.input] == case.inputs, [v.name for v in proto.graph.input]
    assert [v.name for v in proto.graph.output] == case.outputs
    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    assert opsets.get("ai.onnx") == case.opset, opsets

    runs = []
    for run, feeds in zip(case.runs, all_feeds):
        run_name = run[0]
        run_dir = os.path.join(case_dir, run_name)
        os.makedirs(os.path.join(run_dir, "inputs"))
        inputs = {}
        for name, arr in feeds.items():
            inputs[name] = os.path.join(case.name, run_name, "inputs", f"{name}.npy")
            np.save(os.path.join(out_root, inputs[name]), arr)
        exp_dir = os.path.join(run_dir, "expected")
        info = ort_run(node, model_path,
                       {n: os.path.join(out_root, p) for n, p in inputs.items()}, exp_dir)
        versions.setdefault("onnxruntime", info["ort"])
        assert versions["onnxruntime"] == info["ort"]

        ref = torch_run(model, case, feeds)
        outputs, diffs, magnitude = {}, {}, {}
        for name, t in zip(case.outputs, ref):
            outputs[name] = os.path.join(case.name, run_name, "expected", f"{name}.npy")
            o = np.load(os.path.join(out_root, outputs[name]))
            if o.shape != t.shape or o.dtype != t.dtype:
                raise SystemExit(f"{case.name}/{run_name}/{name}: ORT gives {o.dtype}{o.shape}, "
                                 f"torch {t.dtype}{t.shape}")
            if not np.all(np.isfinite(o)):
                raise SystemExit(f"{case.name}/{run_name}/{name}: ORT output is not finite")
            d = float(np.max(np.abs(o.astype(np.float64) - t.astype(np.float64))))
            if not d <= TOLERANCE:
                raise SystemExit(f"{case.name}/{run_name}/{name}: max |torch - ORT| = {d:.3g} "
                                 f"> {TOLERANCE}")
            diffs[name] = d
            magnitude[name] = float(np.max(np.abs(o)))
        entry = dict(name=run_name, batch=len(run[2]),
                     inputs=inputs, outputs=outputs,
                     max_abs_torch_vs_ort=diffs, max_abs_output=magnitude)
        if run[1]:
            entry["seq"] = run[1]
            entry["lengths"] = list(run[2])

        # A padded run must depend on the mask, or it could not catch a bad mask.
        if "attention_mask" in feeds and min(run[2]) < run[1]:
            unmasked = dict(feeds, attention_mask=np.ones_like(feeds["attention_mask"]))
            moved = max(float(np.max(np.abs(a - b)))
                        for a, b in zip(ref, torch_run(model, case, unmasked)))
            if not moved > 100 * TOLERANCE:
                raise SystemExit(f"{case.name}/{run_name}: ignoring the mask moves the outputs "
                                 f"by only {moved:.3g}")
            entry["max_abs_change_if_mask_ignored"] = moved
        runs.append(entry)

    files = sorted(f for f in os.listdir(case_dir) if os.path.isfile(os.path.join(case_dir, f)))
    return dict(
        name=case.name,
        model=os.path.join(case.name, "model.onnx"),
        external_data=[os.path.join(case.name, "weights.bin")] if case.external_data else [],
        opset=case.opset,
        covers=case.covers,
        notes=case.notes,
        ops=sorted({n.op_type for n in proto.graph.node}),
        inputs=describe_values(proto.graph.input),
        outputs=describe_values(proto.graph.output),
        bytes=sum(os.path.getsize(os.path.join(case_dir, f)) for f in files),
        seed=seed,
        tolerance=TOLERANCE,
        runs=runs,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "engine"))
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--peers", default=os.path.join(os.path.dirname(REPO), "shared", "peers"),
                    help="folder holding make_models.py")
    ap.add_argument("--node", default="node")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    args = ap.parse_args()

    all_cases = cases(args.peers)
    if args.list:
        for c in all_cases:
            print(c.name)
        return 0
    wanted = [c for c in all_cases if not args.cases or c.name in args.cases.split(",")]
    unknown = set(filter(None, args.cases.split(","))) - {c.name for c in all_cases}
    if unknown:
        ap.error(f"unknown cases: {', '.join(sorted(unknown))}")
    if not os.path.isfile(os.path.join(args.peers, "make_models.py")):
        ap.error(f"{args.peers}/make_models.py not found (use --peers)")
    if not os.environ.get("NODE_PATH"):
        default = os.path.join(REPO, "bench", ".peers", "node_modules")
        os.environ["NODE_PATH"] = default
        print(f"NODE_PATH not set, using {default}", file=sys.stderr)

    torch.set_num_threads(1)
    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    versions = {"torch": torch.__version__, "onnx": onnx.__version__}
    entries = []
    for case in wanted:
        entries.append(make_case(case, out, args.node, versions))
        worst = max(d for r in entries[-1]["runs"] for d in r["max_abs_torch_vs_ort"].values())
        print(f"{case.name:28s} opset {case.opset:2d} {entries[-1]['bytes'] / 1024:7.1f} KiB  "
              f"max |torch - ORT| {worst:.2g}", flush=True)
    manifest = dict(
        generator="tools/make_engine_fixtures.py",
        description="Engine correctness fixtures: ONNX models as torch.onnx.export writes "
                    "them, inputs, and ONNX Runtime's outputs (graph optimisation 'all', one "
                    "thread), each cross-checked against PyTorch eager. Paths are relative to "
                    "this file.",
        references=dict(expected="onnxruntime-node " + versions.get("onnxruntime", "?"),
                        cross_check="torch " + versions["torch"], onnx=versions["onnx"]),
        default_tolerance=TOLERANCE,
        cases=entries,
    )
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
