"""Data for the example models (tools/train_examples.py): extraction, split, vocabularies.

Everything here is deterministic: the same input files give the same texts, labels, split and
vocabularies, with no random numbers involved (ties are broken by the strings themselves).

English, `debian_sections`: Debian package descriptions -> the package's Section.
  * Input: the bookworm/main `Packages` index (Package, Source, Section, Description-md5) and
    its `Translation-en` (the long descriptions; Debian's Packages files carry only the short
    one, which is all `apt-cache dumpavail` shows when translations are not downloaded).
    `fetch_apt_lists` gets both with apt itself, into a private lists directory, so the
    system's apt state is not touched.
  * Text: the short description, then the long one with paragraph marks (" .") dropped and
    white space collapsed, cut to the first EN_MAX_WORDS words.
  * Label: Section with an archive-area prefix ("contrib/", "non-free/",
    "non-free-firmware/") removed. Sections with fewer than EN_MIN_CLASS packages, or whose
    packages come from fewer than EN_MIN_SOURCES source packages, are left out.
  * Split by source package: a package is held out when md5("inferd-examples:" + its source
    package name) is 0 mod 10, so a library's -dev, -doc and runtime packages (which share
    most of their long description) are always on the same side.

Chinese, `zh_fortunes`: texts of fortunes-zh -> which work they come from.
  * Input: /usr/share/games/fortunes/{chinese,tang300,song100} (fortunes-zh 2.98).
  * Label: tang300 and song100 are their own collections (Tang and Song poetry); in `chinese`
    the attribution line names the work: 谚语 (proverbs), 论语 (the Analects), 菜根谭,
    增广贤文, 道德经, 詩經 (first line), Debian 参考手册/参考卡片 (the Debian reference).
    Fortunes from other sources (modern authors, Song ci, single poems: about 750) are left
    out.
  * Text: the body only. Title, author and attribution lines (the lines the files colour with
    ANSI green/yellow/bold escapes, and lines starting with "--") are removed, as are the
    remaining escape sequences; lines are stripped and blank ones dropped. Texts that repeat
    are kept once (and dropped if they carry two labels).
  * Split: per label, texts sorted by md5 and every 10th held out (exactly stratified).

Both splits also mark a second 10% as "dev" (see split_of), part of the training data except
in experiments.
"""
import collections
import hashlib
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_tokenizer  # noqa: E402  (BERT BasicTokenizer + WordPiece, the C tokenizer's reference)

EN_MAX_WORDS = 64
EN_MIN_CLASS = 100
EN_MIN_SOURCES = 10
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

APT_SOURCE = "deb http://deb.debian.org/debian bookworm main\n"


def md5_int(s):
    return int(hashlib.md5(s.encode("utf-8")).hexdigest(), 16)


def split_of(k):
    """Bucket k (0..9) -> "test" (0, the held-out 10%), "dev" (1) or "train" (2..9). The
    models train on "train" + "dev"; "dev" alone serves experiments (--dev), so choices made
    while experimenting never look at "test"."""
    return "test" if k == 0 else "dev" if k == 1 else "train"

# --------------------------------------------------------------------------- apt indices


def fetch_apt_lists(cache):
    """Downloads bookworm/main Packages and Translation-en with apt-get into cache/lists
    (its own sources.list, lists and cache directories; nothing system-wide changes). Returns
    (packages_path, translation_path, release_info) with the indices decompressed."""
    lists = os.path.join(cache, "lists")
    os.makedirs(os.path.join(lists, "partial"), exist_ok=True)
    os.makedirs(os.path.join(cache, "archives", "partial"), exist_ok=True)
    src = os.path.join(cache, "sources.list")
    with open(src, "w") as f:
        f.write(APT_SOURCE)
    cmd = ["apt-get", "update", "-q",
           "-o", "Dir::State::Lists=" + lists,
           "-o", "Dir::Etc::SourceList=" + src,
           "-o", "Dir::Etc::SourceParts=/nonexistent",
           "-o", "Dir::Cache=" + cache,
           "-o", "Acquire::Languages=en",
           "-o", "APT::Get::List-Cleanup=0"]
    if os.geteuid() != 0:
        cmd += ["-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=" + os.environ.get(
            "USER", "nobody")]
    print("data: " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    return apt_lists_in(lists, cache)


def apt_lists_in(lists, out_dir):
    """Finds the bookworm/main Packages and Translation-en indices in an apt lists directory
    and decompresses them (apt-helper cat-file handles apt's .lz4/.gz/.xz) into out_dir."""
    names = sorted(os.listdir(lists))

    def find(suffix):
        for n in names:
            if "_dists_bookworm_main_" in n and re.search(suffix, n):
                return os.path.join(lists, n)
        raise SystemExit("data: no %s index in %s (run without --apt-lists to fetch one)"
                         % (suffix, lists))
    out = []
    for pat, name in (("binary-amd64_Packages", "Packages"),
                      ("i18n_Translation-en", "Translation-en")):
        path = find(pat)
        dst = os.path.join(out_dir, name)
        with open(dst, "wb") as f:
            subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", path], check=True, stdout=f)
        out.append(dst)
    release = {}
    for n in names:
        if n.endswith("_dists_bookworm_InRelease"):
            with open(os.path.join(lists, n), encoding="utf-8", errors="replace") as f:
                for line in f:  # the fields before the checksum lists (after the PGP header)
                    k, _, v = line.partition(":")
                    if k in ("Suite", "Codename", "Version", "Date"):
                        release[k.lower()] = v.strip()
                    if k in ("MD5Sum", "SHA256"):
                        break
    return out[0], out[1], release


def stanzas(path):
    """Parses a deb822 file (Packages, Translation-en) into dicts; continuation lines are
    joined to their field with "\\n" and their single leading space removed."""
    cur, key = {}, None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if cur:
                    yield cur
                cur, key = {}, None
            elif line[0] in " \t":
                if key is not None:
                    cur[key] += "\n" + line[1:]
            else:
                key, _, v = line.partition(":")
                cur[key] = v.strip()
    if cur:
        yield cur


def description_text(desc):
    """Short description + long description, paragraph marks dropped, white space collapsed,
    first EN_MAX_WORDS words."""
    lines = desc.split("\n")
    words = lines[0].split()
    for line in lines[1:]:
        if line.strip() == ".":
            continue
        words.extend(line.split())
    return " ".join(words[:EN_MAX_WORDS]), " ".join(lines[0].split())


def debian_sections(packages_path, translation_path):
    """Returns (records, info). Each record: package, source, label, text, short, split."""
    long_desc = {}
    for s in stanzas(translation_path):
        if "Description-md5" in s and "Description-en" in s:
            long_desc[s["Description-md5"]] = s["Description-en"]
    seen, recs, no_desc = set(), [], 0
    for s in stanzas(packages_path):
        name = s.get("Package")
        if not name or name in seen or "Section" not in s:
            continue
        seen.add(name)
        desc = long_desc.get(s.get("Description-md5", ""))
        if desc is None:
            no_desc += 1
            desc = s.get("Description", "")
        if not desc.strip():
            continue
        text, short = description_text(desc)
        recs.append(dict(package=name, source=s.get("Source", name).split()[0],
                         label=s["Section"].split("/")[-1], text=text, short=short))
    count = collections.Counter(r["label"] for r in recs)
    sources = collections.defaultdict(set)
    for r in recs:
        sources[r["label"]].add(r["source"])
    keep = {c for c in count if count[c] >= EN_MIN_CLASS and len(sources[c]) >= EN_MIN_SOURCES}
    dropped = {c: count[c] for c in sorted(count) if c not in keep}
    recs = [r for r in recs if r["label"] in keep]
    for r in recs:
        r["split"] = split_of(md5_int("inferd-examples:" + r["source"]) % 10)
    info = dict(packages=len(seen), without_long_description=no_desc,
                dropped_sections=dropped, kept=len(recs))
    return recs, info

# --------------------------------------------------------------------------- fortunes-zh


FORTUNES = "/usr/share/games/fortunes"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HEADER = re.compile(r"^\s*\x1b\[(32|33|37;1)m")  # title (green), author (yellow), heading (bold)

ZH_WORKS = [  # (label, test on the attribution line)
    ("proverb", "《谚语》"),
    ("analects", "论语"),
    ("caigentan", "菜根谭"),
    ("zengguang", "增广贤文"),
    ("daodejing", "道德经"),
    ("debian_ref", "Debian 参考"),
]


def fortune_items(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [x for x in re.split(r"\n%\n", text) if x.strip()]


def fortune_label(collection, item):
    if collection != "chinese":
        return collection
    lines = item.rstrip("\n").split("\n")
    attribution = ""
    for line in reversed(lines):
        s = ANSI.sub("", line).strip()
        if s.startswith("--"):
            attribution = s
            break
    for label, key in ZH_WORKS:
        if key in attribution:
            return label
    if ANSI.sub("", lines[0]).startswith("《詩經"):
        return "shijing"
    return None


def fortune_body(item):
    out = []
    for line in item.split("\n"):
        if HEADER.match(line):
            continue
        s = ANSI.sub("", line).strip()
        if s and not s.startswith("--"):
            out.append(s)
    return "\n".join(out)


def zh_fortunes(root=FORTUNES):
    """Returns (records, info). Each record: label, text, split."""
    if not os.path.exists(os.path.join(root, "chinese")):
        raise SystemExit("data: %s/chinese not found: apt-get install fortunes-zh" % root)
    by_text, total, unlabelled = {}, 0, 0
    for coll in ("chinese", "tang300", "song100"):
        for item in fortune_items(os.path.join(root, coll)):
            total += 1
            label = fortune_label(coll, item)
            body = fortune_body(item)
            if label is None:
                unlabelled += 1
                continue
            if len(body) < 2:
                continue
            by_text.setdefault(body, set()).add(label)
    recs = [dict(label=next(iter(ls)), text=t) for t, ls in by_text.items() if len(ls) == 1]
    conflicts = sum(1 for ls in by_text.values() if len(ls) > 1)
    by_label = collections.defaultdict(list)
    for r in recs:
        by_label[r["label"]].append(r)
    for rs in by_label.values():
        rs.sort(key=lambda r: (md5_int(r["text"]), r["text"]))
        for i, r in enumerate(rs):
            r["split"] = split_of(i % 10)
    recs = [r for label in sorted(by_label) for r in by_label[label]]
    info = dict(fortunes=total, other_sources=unlabelled, conflicting_duplicates=conflicts,
                kept=len(recs))
    return recs, info

# --------------------------------------------------------------------------- vocabularies


def basic_words(text):
    """BERT BasicTokenizer words (lowercased, accents stripped, punctuation split): exactly
    what inferd's wordpiece tokenizer feeds to WordPiece."""
    return ref_tokenizer.basic_tokenize(text, lower=True, hf=False)


def build_wordpiece_vocab(word_lists, size, n_suffixes, min_char_count=2):
    """A WordPiece vocabulary of `size` tokens from the training texts' words (basic_words
    of each text), by a simple rule:
      1. the BERT specials [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4;
      2. every character seen at least min_char_count times in the training words, both as a
         word start "c" and as a continuation "##c" (so nearly every word can be spelled);
      3. the n_suffixes most frequent word endings of 2 to 5 characters, as "##ending",
         counted over word occurrences of words at least 2 characters longer than the ending;
      4. whole words by frequency (seen at least twice) until `size` is reached.
    Ties are broken by the string, so the result is deterministic. Greedy longest-match then
    splits an unseen word into its longest known start and known endings or characters."""
    words = collections.Counter()
    for ws in word_lists:
        words.update(ws)
    chars = collections.Counter()
    for w, c in words.items():
        for ch in w:
            chars[ch] += c
    vocab, seen = [], set()

    def add(tok):
        if tok not in seen and len(vocab) < size:
            seen.add(tok)
            vocab.append(tok)
    for t in SPECIALS:
        add(t)
    for ch, c in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0])):
        if c >= min_char_count:
            add(ch)
            add("##" + ch)
    ends = collections.Counter()
    for w, c in words.items():
        for n in range(2, 6):
            if len(w) >= n + 2:
                ends[w[-n:]] += c
    for e, _ in sorted(ends.items(), key=lambda kv: (-kv[1], kv[0]))[:n_suffixes]:
        add("##" + e)
    for w, c in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        if c < 2 or len(vocab) >= size:
            break
        add(w)
    return vocab


class WordPiece:
    """inferd's "wordpiece" tokenizer with [CLS] ... [SEP] and truncation at max_length,
    through tools/ref_tokenizer.py (memoised per word: the result depends on the word only)."""

    def __init__(self, vocab, max_length):
        self.vocab = {t: i for i, t in enumerate(vocab)}
        self.max_length = max_length
        self.cache = {}

    def pieces(self, word):
        p = self.cache.get(word)
        if p is None:
            p = [self.vocab[t] for t in ref_tokenizer.wordpiece(word, self.vocab)]
            self.cache[word] = p
        return p

    def encode(self, text, words=None):
        """[CLS] + WordPiece ids + [SEP], at most max_length; words: basic_words(text) if
        the caller has them already."""
        ids = []
        for w in basic_words(text) if words is None else words:
            ids.extend(self.pieces(w))
            if len(ids) >= self.max_length - 2:
                break
        return [self.vocab["[CLS]"]] + ids[: self.max_length - 2] + [self.vocab["[SEP]"]]


def build_char_vocab(texts, min_count):
    """Characters seen at least min_count times in the training texts, most frequent first,
    after "[PAD]" on line 0 (a multi-character line that no single character can match, so
    id 0 stays the padding id). White space and control characters are left out: vocab.txt
    lines lose surrounding white space when loaded, and such characters go to the hash
    buckets instead."""
    chars = collections.Counter()
    for t in texts:
        chars.update(t)
    vocab = ["[PAD]"]
    for ch, c in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0])):
        if c >= min_count and not ch.isspace() and ch.isprintable():
            vocab.append(ch)
    return vocab


def fnv1a32(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


class CharTokenizer:
    """inferd's "char" tokenizer: one id per code point, from vocab.txt, else
    offset + FNV-1a32(UTF-8 bytes) % buckets; no special tokens; first max_length ids."""

    def __init__(self, vocab, offset, buckets, max_length):
        self.vocab = {t: i for i, t in enumerate(vocab)}
        self.offset, self.buckets, self.max_length = offset, buckets, max_length

    def id(self, ch):
        i = self.vocab.get(ch)
        if i is None:
            i = self.offset + fnv1a32(ch.encode("utf-8")) % self.buckets
        return i

    def encode(self, text):
        return [self.id(ch) for ch in text[: self.max_length]]
