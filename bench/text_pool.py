"""The texts of `make bench-text`: a fixed, seeded pool of Chinese texts of 20-120 characters.

They are cut from real Chinese prose and poetry that Debian ships (the fortunes-zh package:
/usr/share/games/fortunes/{chinese,tang300,song100}, colour escapes removed, line breaks and
runs of white space folded to nothing); only fortunes that are at least half CJK ideographs
are used. Without fortunes-zh the pool is drawn from the common CJK block (U+4E00..U+9FA5)
instead; text_pool_source() says which. Both are deterministic for a given seed.

Plain stdlib (no locust import), so both bench_text.py and the locustfile can use it.
"""
import json
import os
import random
import re

FORTUNES = "/usr/share/games/fortunes"
FILES = ("chinese", "tang300", "song100")
_ESC = re.compile(r"\x1b\[[0-9;]*m")
_WS = re.compile(r"\s+")


def _is_cjk(c):
    return "\u4e00" <= c <= "\u9fff"


def _corpus():
    paths = [os.path.join(FORTUNES, f) for f in FILES if os.path.exists(os.path.join(FORTUNES, f))]
    parts = []
    for p in paths:
        with open(p, encoding="utf-8", errors="replace") as f:
            raw = _ESC.sub("", f.read())
        for fortune in raw.split("\n%\n"):
            t = _WS.sub("", fortune)
            if len(t) >= 20 and sum(map(_is_cjk, t)) >= 0.5 * len(t):
                parts.append(t)
    return "".join(parts)


def text_pool_source():
    return "fortunes-zh" if _corpus() else "random CJK U+4E00..U+9FA5"


def text_pool(n=2000, seed=1, lo=20, hi=120):
    """n texts of lo..hi code points (uniform lengths), the same for the same arguments."""
    rng = random.Random(seed)
    corpus = _corpus()
    out = []
    for _ in range(n):
        k = rng.randint(lo, hi)
        if len(corpus) > hi:
            s = rng.randrange(0, len(corpus) - k)
            out.append(corpus[s:s + k])
        else:
            out.append("".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(k)))
    return out


def write_pool(path, n=2000, seed=1):
    texts = text_pool(n, seed)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"source": text_pool_source(), "seed": seed, "texts": texts}, f,
                  ensure_ascii=False)
    return texts
