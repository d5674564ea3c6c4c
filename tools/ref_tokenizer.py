#!/usr/bin/python3
"""Reference tokenizers for inferd's test fixtures (stdlib only: unicodedata, re, json).

Written from the published descriptions, independently of the C code in src/prep/:
  * BERT's BasicTokenizer + WordpieceTokenizer (google-research/bert tokenization.py):
    clean text, CJK spacing, whitespace split, lower + NFD accent strip, punctuation split,
    greedy longest-match-first WordPiece with "##" and max_input_chars_per_word -> [UNK].
    With hf=True it follows Hugging Face's BertNormalizer where the two differ (white space is
    the White_Space property, lowercasing has no final-sigma rule).
  * GPT-2 byte-level BPE (openai/gpt-2 encoder.py): bytes_to_unicode, the GPT-2 split pattern
    (run by Python's own regex engine over explicit character classes, since `re` has no
    \\p{L}), and the "merge the lowest-ranked bigram everywhere, repeat" loop.
  * Unigram: Viterbi over piece log-probabilities, unknown characters scored min - 10 and
    consecutive unknowns fused (SentencePiece / Hugging Face semantics).
  * the peers' char tokenizer (FNV-1a over each code point's UTF-8 bytes).

`/usr/bin/python3 tools/ref_tokenizer.py tests/fixtures/tokenizer` regenerates every fixture
there: the small vocabularies, merges and tokenizer.json files, and *_vectors.json with the
expected ids. The C unit tests (src/prep/test_vectors.c) compare against those files.
"""
import json
import os
import re
import sys
import unicodedata

# ---------------------------------------------------------------- BERT BasicTokenizer

WHITE_SPACE = set(chr(c) for c in list(range(0x09, 0x0E)) + [0x20, 0x85, 0xA0, 0x1680]
                  + list(range(0x2000, 0x200B)) + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000])


def bert_is_whitespace(ch, hf):
    if hf:
        return ch in WHITE_SPACE
    if ch in " \t\n\r":
        return True
    return unicodedata.category(ch) == "Zs"


def bert_is_control(ch, hf):
    if ch in "\t\n\r":
        return False
    cat = unicodedata.category(ch)
    if hf:
        return cat in ("Cc", "Cf", "Cn", "Co")
    return cat.startswith("C")


def bert_is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokenize(text, lower=True, hf=False):
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or bert_is_control(ch, hf):
            continue
        out.append(" " if bert_is_whitespace(ch, hf) else ch)
    text = "".join(out)
    text = "".join(" %s " % ch if is_cjk(ord(ch)) else ch for ch in text)
    words = []
    for tok in text.split() if not hf else split_white_space(text):
        if lower:
            if hf:
                tok = "".join(c.lower() for c in tok)  # per character: no final sigma
            else:
                tok = tok.lower()
            tok = "".join(c for c in unicodedata.normalize("NFD", tok)
                          if unicodedata.category(c) != "Mn")
        cur = []
        for ch in tok:
            if bert_is_punctuation(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
    return words


def split_white_space(text):
    words, cur = [], []
    for ch in text:
        if ch in WHITE_SPACE:
            if cur:
                words.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


def wordpiece(word, vocab, unk="[UNK]", max_chars=100):
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end, found = len(word), None
        while start < end:
            sub = word[start:end]
            if start > 0:
                sub = "##" + sub
            if sub in vocab:
                found = sub
                break
            end -= 1
        if found is None:
            return [unk]
        pieces.append(found)
        start = end
    return pieces


def bert_encode(text, vocab, max_len, hf=False):
    toks = []
    for w in basic_tokenize(text, hf=hf):
        toks.extend(wordpiece(w, vocab))
    ids = [vocab[t] for t in toks][: max_len - 2]
    return [vocab["[CLS]"]] + ids + [vocab["[SEP]"]]

# ---------------------------------------------------------------- GPT-2 byte-level BPE


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def gpt2_pattern(alphabet):
    """GPT-2's pattern with \\p{L}, \\p{N} and \\s spelled out for the characters used."""
    chars = set(alphabet) | set(chr(c) for c in range(128)) | WHITE_SPACE
    L = "".join(re.escape(c) for c in sorted(chars) if unicodedata.category(c).startswith("L"))
    N = "".join(re.escape(c) for c in sorted(chars) if unicodedata.category(c).startswith("N"))
    S = "".join(re.escape(c) for c in sorted(WHITE_SPACE))
    return re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[%s]+| ?[%s]+| ?[^%s%s%s]+|[%s]+(?![^%s])|[%s]+"
                      % (L, N, S, L, N, S, S, S))


def get_pairs(word):
    return set(zip(word, word[1:]))


def bpe_word(token, ranks):
    word = tuple(token)
    pairs = get_pairs(word)
    while pairs:
        bigram = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if bigram not in ranks:
            break
        first, second = bigram
        new, i = [], 0
        while i < len(word):
            try:
                j = word.index(first, i)
            except ValueError:
                new.extend(word[i:])
                break
            new.extend(word[i:j])
            i = j
            if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                new.append(first + second)
                i += 2
            else:
                new.append(word[i])
                i += 1
        word = tuple(new)
        if len(word) == 1:
            break
        pairs = get_pairs(word)
    return list(word)


def gpt2_encode(text, vocab, ranks, pattern, add_prefix_space=False):
    b2u = bytes_to_unicode()
    if add_prefix_space and not text.startswith(" "):
        text = " " + text
    ids = []
    for tok in pattern.findall(text):
        mapped = "".join(b2u[b] for b in tok.encode("utf-8"))
        ids.extend(vocab[p] for p in bpe_word(mapped, ranks))
    return ids


def train_bpe(corpus, n_merges, pattern):
    """Most-frequent-pair training, only to make a plausible small merge list."""
    b2u = bytes_to_unicode()
    words = {}
    for tok in pattern.findall(corpus):
        w = tuple(b2u[b] for b in tok.encode("utf-8"))
        words[w] = words.get(w, 0) + 1
    merges = []
    for _ in range(n_merges):
        counts = {}
        for w, c in words.items():
            for p in zip(w, w[1:]):
                counts[p] = counts.get(p, 0) + c
        if not counts:
            break
        best = max(sorted(counts), key=lambda p: counts[p])
        merges.append(best)
        nw = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] = nw.get(tuple(out), 0) + c
        words = nw
    return merges

# ---------------------------------------------------------------- Unigram


def unigram_encode(word, pieces, unk_id):
    """Best segmentation by total score; unknown single characters score min - 10."""
    score = {p: s for p, s in reversed(pieces)}  # first occurrence wins
    ident = {}
    for i, (p, _) in enumerate(pieces):
        ident.setdefault(p, i)
    unk_score = min(s for _, s in pieces) - 10.0
    n = len(word)
    best = [None] * (n + 1)  # (score, start, id)
    best[0] = (0.0, 0, None)
    for i in range(n):
        base = best[i][0]
        single = False
        for e in range(i + 1, n + 1):
            sub = word[i:e]
            if sub in score:
                if e == i + 1:
                    single = True
                cand = base + score[sub]
                if best[e] is None or cand > best[e][0]:
                    best[e] = (cand, i, ident[sub])
        if not single:
            cand = base + unk_score
            if best[i + 1] is None or cand > best[i + 1][0]:
                best[i + 1] = (cand, i, unk_id)
    path, e = [], n
    while e > 0:
        path.append(best[e][2])
        e = best[e][1]
    path.reverse()
    out = []
    for t in path:
        if t == unk_id and out and out[-1] == unk_id:
            continue  # fuse unknowns
        out.append(t)
    return out


def metaspace_words(text):
    text = text.replace(" ", "\u2581")
    if not text.startswith("\u2581"):
        text = "\u2581" + text
    words, cur = [], ""
    for ch in text:
        if ch == "\u2581" and cur:
            words.append(cur)
            cur = ""
        cur += ch
    if cur:
        words.append(cur)
    return words

# ---------------------------------------------------------------- peers' char tokenizer


def char_ids(text, max_len=128):
    ids = [101]
    for ch in text:
        if len(ids) >= max_len:
            break
        h = 2166136261
        for b in ch.encode("utf-8"):
            h = ((h ^ b) * 16777619) & 0xFFFFFFFF
        ids.append(1000 + h % 20128)
    return ids

# ---------------------------------------------------------------- fixtures

TEXTS = [
    ("english", "Hello, world! The quick brown fox jumps over the lazy dog."),
    ("english_affixes", "unaffable playing runner's re-tokenization"),
    ("chinese", "中文文本分类很有趣。"),
    ("mixed", "BERT模型 handles 中英文 mixing, ok?"),
    ("emoji", "I love it 😀🎉!"),
    ("accents", "Café déjà vu, naïve résumé. ÉCOLE"),
    ("control", "tab\there\x00nul\x07bell\u200bzwsp\ufffdrepl\r\nline"),
    ("empty", ""),
    ("spaces_only", "   \t\n "),
    ("long_word", "a" * 150 + " ok"),
    ("punct_runs", "wait...what?!? (yes) [no] {maybe}"),
    ("numbers", "In 2024 we sold 3,500 units at $19.99"),
    ("greek_sigma", "ΟΔΟΣ ΟΔΟΣ. σοφός"),
    ("overlong", " ".join(["the quick brown fox"] * 60)),
    ("fullwidth", "ＡＢＣ１２３ full width"),
]

WP_VOCAB = """[PAD] [UNK] [CLS] [SEP] [MASK] the quick brown fox jumps over lazy dog hello world
, . ! ? ' - ( ) [ ] { } $ 。 : a un ##aff ##able play ##ing run ##ner s re ##to ##ken ##ization
中 文 本 分 类 很 有 趣 模 型 英 混 bert handles mix ##ing ok i love it cafe deja vu naive resume
ecole tab here nul ##bell bell zw ##sp repl line wait what yes no maybe in 20 ##24 we sold 3 500
units at 19 99 οδος οδοσ σοφος abc 12 ##3 full width 2024 ##ab ##c"""


def write(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main(out):
    os.makedirs(out, exist_ok=True)
    # WordPiece (BERT) -------------------------------------------------------------
    tokens = []
    for t in WP_VOCAB.split():
        if t not in tokens:
            tokens.append(t)
    with open(os.path.join(out, "wordpiece_vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    vocab = {t: i for i, t in enumerate(tokens)}
    max_len = 32
    vecs = [{"name": n, "text": t, "ids": bert_encode(t, vocab, max_len)} for n, t in TEXTS]
    vecs.append({"name": "invalid_utf8", "text_hex": "6869c328", "error": "byte offset 2"})
    write(os.path.join(out, "wordpiece_vectors.json"),
          {"vocab": "wordpiece_vocab.txt", "max_length": max_len, "vectors": vecs})
    # The same vocab as a tokenizer.json, checked against the HF flavour of the reference.
    hf_wp = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]],
        "normalizer": {"type": "BertNormalizer", "clean_text": True,
                       "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "pair": [],
                           "special_tokens": {
                               "[CLS]": {"id": "[CLS]", "ids": [vocab["[CLS]"]], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [vocab["[SEP]"]], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }
    write(os.path.join(out, "hf_wordpiece.json"), hf_wp)
    hf_texts = [(n, t) for n, t in TEXTS if n != "greek_sigma"] + [
        ("added_in_text", "hello [MASK] world[SEP]")]
    hvecs = []
    for n, t in hf_texts:
        if n == "added_in_text":
            ids = ([vocab["[CLS]"]] + [vocab[x] for x in ["hello"]] + [vocab["[MASK]"]]
                   + [vocab["world"], vocab["[SEP]"]] + [vocab["[SEP]"]])
        else:
            ids = bert_encode(t, vocab, max_len, hf=True)
        hvecs.append({"name": n, "text": t, "ids": ids})
    write(os.path.join(out, "hf_wordpiece_vectors.json"),
          {"tokenizer": "hf_wordpiece.json", "max_length": max_len, "vectors": hvecs})
    # Byte-level BPE (GPT-2) -----------------------------------------------------------
    alphabet = "".join(t for _, t in TEXTS)
    pattern = gpt2_pattern(alphabet)
    corpus = " ".join(t for _, t in TEXTS[:7]) * 3 + " the the the lower lowest newer wider"
    merges = train_bpe(corpus, 120, pattern)
    b2u = bytes_to_unicode()
    bvocab = {}
    for b in range(256):
        bvocab[b2u[b]] = len(bvocab)
    for a, b in merges:
        if a + b not in bvocab:
            bvocab[a + b] = len(bvocab)
    bvocab["<|endoftext|>"] = len(bvocab)
    ranks = {m: i for i, m in enumerate(merges)}

    def bpe_json(array_merges):
        return {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": bvocab["<|endoftext|>"], "content": "<|endoftext|>",
                              "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": True}],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                              "trim_offsets": True, "use_regex": True},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True,
                               "trim_offsets": False, "use_regex": True},
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False, "vocab": bvocab,
                      "merges": [[a, b] for a, b in merges] if array_merges
                      else ["%s %s" % (a, b) for a, b in merges]},
        }
    write(os.path.join(out, "bpe_bytelevel.json"), bpe_json(False))
    write(os.path.join(out, "bpe_bytelevel_array_merges.json"), bpe_json(True))
    bmax = 64
    bvecs = []
    for n, t in TEXTS + [("contractions", "It's what we're doing, isn't it? They'll've 'd"),
                         ("space_runs", "a  b   c\n\nd \t e  "),
                         ("endoftext", "one<|endoftext|>two")]:
        if n == "endoftext":
            ids = (gpt2_encode("one", bvocab, ranks, pattern) + [bvocab["<|endoftext|>"]]
                   + gpt2_encode("two", bvocab, ranks, pattern))
        else:
            ids = gpt2_encode(t, bvocab, ranks, pattern)
        bvecs.append({"name": n, "text": t, "ids": ids[:bmax]})
    write(os.path.join(out, "bpe_vectors.json"),
          {"tokenizer": "bpe_bytelevel.json", "max_length": bmax, "vectors": bvecs})
    # Unigram ---------------------------------------------------------------------------
    pieces = [["<unk>", 0.0], ["\u2581", -2.0], ["\u2581the", -3.0], ["\u2581quick", -5.0],
              ["\u2581qu", -6.0], ["ick", -6.5], ["\u2581brown", -5.5], ["\u2581b", -4.0],
              ["rown", -6.0], ["\u2581fox", -5.0], ["f", -4.5], ["o", -3.5], ["x", -4.8],
              ["\u2581hello", -6.0], ["hel", -5.0], ["lo", -4.0], ["\u2581world", -6.0],
              ["w", -4.5], ["or", -4.2], ["ld", -4.6], ["e", -3.0], ["h", -4.0], ["l", -3.8],
              ["t", -3.6], ["a", -3.3], ["\u2581a", -3.9], ["b", -4.1], ["c", -4.3],
              ["ab", -5.2], ["abc", -7.5], ["bc", -5.0], ["中", -6.0], ["文", -6.0],
              ["中文", -9.0], ["s", -3.7], ["\u2581s", -4.4], ["r", -4.0], ["n", -3.9],
              ["d", -4.2], ["i", -3.6], ["u", -4.4], ["k", -4.9], ["q", -6.5], ["y", -5.0],
              ["g", -5.0], ["m", -4.5], ["p", -4.7], ["v", -5.5], ["j", -6.0], ["z", -6.5]]
    uni = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "always", "split": True},
        "post_processor": None, "decoder": None,
        "model": {"type": "Unigram", "unk_id": 0, "vocab": pieces, "byte_fallback": False},
    }
    write(os.path.join(out, "unigram.json"), uni)
    uvecs = []
    for n, t in [("english", "the quick brown fox"), ("hello", "hello world"),
                 ("abc", "abc ab bc cab"), ("unknown", "zebra ÿ€ 中文文 x"),
                 ("empty", ""), ("spaces", "  a  b ")]:
        ids = []
        for w in metaspace_words(t) if t else []:
            ids.extend(unigram_encode(w, pieces, 0))
        uvecs.append({"name": n, "text": t, "ids": ids})
    write(os.path.join(out, "unigram_vectors.json"),
          {"tokenizer": "unigram.json", "max_length": 256, "vectors": uvecs})
    # Char (the peers' rule, on our texts too) ---------------------------------------------
    write(os.path.join(out, "char_vectors.json"),
          {"max_length": 128, "vectors": [{"name": n, "text": t, "ids": char_ids(t)}
                                          for n, t in TEXTS]})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tokenizer")
