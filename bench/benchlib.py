"""What the benchmark drivers in bench/ share: paths, a free port, the header lines and
tables of their Markdown, writing their section of bench/RESULTS.md, and the command-line
options of the text-scenario load runs (bench_text.py, bench_torch.py, bench_models100.py).

Plain stdlib, importable from any of them (each has bench/ on sys.path).
"""
import json
import math
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "peers")  # ../shared/peers
PEERS = os.path.join(ROOT, "bench", ".peers")
OUT = os.path.join(ROOT, "bench", "out")
RESULTS = os.path.join(ROOT, "bench", "RESULTS.md")
INFERD = os.path.join(ROOT, "build", "inferd")
PY = "/usr/bin/python3"


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inferd_perf(model, threads, batch, seq, seconds, *extra, inferd=INFERD):
    """The run record (p50_ms, items_per_s, ...) of `inferd perf` on one batch shape, with the
    peers' vocabulary; None (its stderr printed) when it fails."""
    p = subprocess.run([inferd, "perf", model, "--threads", str(threads), "--batch", str(batch),
                        "--seq", str(seq), "--vocab", "21128", "--seconds", str(seconds), *extra],
                       capture_output=True, text=True, timeout=3600)
    runs = [json.loads(l) for l in p.stdout.splitlines() if '"kind":"run"' in l]
    if p.returncode != 0 or not runs:
        print(f"# inferd perf failed ({p.returncode}): {p.stderr[-2000:]}", file=sys.stderr)
        return None
    return runs[-1]


def proc_status(pid, field):
    """The number in field ("Threads", "VmRSS": kB) of /proc/PID/status; 0 if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------
# numbers

def median(xs):
    """The upper median (the middle element of the sorted list); None if empty."""
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def pct(sorted_vals, q):
    """Nearest-rank percentile (q in 0..1) of an ascending list; None if empty."""
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


def fmt(x, nd=0):
    """x with nd decimals, "-" for None."""
    return "-" if x is None else f"{x:.{nd}f}"


# ---------------------------------------------------------------------------------------------
# the Markdown sections of bench/RESULTS.md

def utc_now():
    """The time a run started, as its "Run ..." line gives it: 2024-01-31 12:34 UTC."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def command_line(script, argv):
    """The "Command: ..." line of a section: how `bench/<script>` was run, with argv."""
    return f"Command: `/usr/bin/python3 bench/{script} {' '.join(argv)}`".rstrip()


def table_head(*columns):
    """The header and separator lines of a Markdown table."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def markers(name):
    """The comment lines that open and close section `name` (bench-text, ...)."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_section(old, text, name):
    """old (a RESULTS.md) with section `name` replaced by text (which holds its start and end
    markers and ends in a newline), or text appended after a blank line if old lacks it. The
    replaced section's end marker takes its own newline along."""
    start, end = markers(name)
    if start in old and end in old:
        return old[:old.index(start)] + text + old[old.index(end) + len(end) + 1:]
    return old.rstrip("\n") + "\n\n" + text


def write_section(path, text, name):
    """Writes section `name` of the results file at path (replace_section); a missing file
    starts as "# Benchmark results"."""
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n"
    new = replace_section(old, text, name)
    with open(path, "w") as f:
        f.write(new)


# ---------------------------------------------------------------------------------------------
# the load runs of the text scenario: bench_text.py, bench_torch.py, bench_models100.py

# Type and default of each option, and its help where the scripts share one. A script picks
# the options in its own order and changes what differs for it (see add_options).
LOAD_OPTIONS = {
    "--servers": {},
    "--drivers": dict(default="locust,inferd-bench", help="locust, inferd-bench"),
    "--duration": dict(type=float, default=60.0,
                       help="measured seconds per server and driver, over all rounds"),
    "--rounds": dict(type=int, default=3),
    "--warmup": dict(type=float, default=5.0),
    "--users": dict(type=int, default=16),
    "--texts": dict(type=int, default=2000),
    "--seed": dict(type=int, default=1),
    "--ready-interval": dict(type=float, default=0.25),
    "--max-batch": dict(type=int, default=16),
    "--delay-us": dict(type=int, default=500),
    "--buckets": dict(default="32,64,128"),
    "--inferd": dict(help="inferd binary to serve with (default build/inferd)"),
    "--inferd-bench-binary": dict(help="inferd binary for `inferd bench`"),
    "--results": dict(default=RESULTS),
    "--no-write": dict(action="store_true"),
}


def add_options(ap, *options, **changes):
    """Adds options to the argparse parser ap in the order given: each a name from
    LOAD_OPTIONS, or a (name, keywords) pair for an option of the script's own. changes:
    keywords by option dest (max_batch=dict(help=...)) that replace those of LOAD_OPTIONS
    (help=None: no help text)."""
    for opt in options:
        if isinstance(opt, tuple):
            ap.add_argument(opt[0], **opt[1])
            continue
        kw = dict(LOAD_OPTIONS[opt])
        kw.update(changes.pop(opt[2:].replace("-", "_"), {}))
        ap.add_argument(opt, **kw)
    if changes:
        raise TypeError(f"changes to options not added: {', '.join(changes)}")


def check_servers(servers, variants):
    """Exits naming the first of servers that is not one of variants."""
    for s in servers:
        if s not in variants:
            sys.exit(f"unknown server {s!r}; choose from {', '.join(variants)}")


def rotated(items, rnd):
    """items in round rnd's order: each round starts one further along."""
    k = rnd % len(items)
    return items[k:] + items[:k]
