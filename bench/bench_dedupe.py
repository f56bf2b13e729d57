#!/usr/bin/env python3
"""The bookkeeping of --vault and --archive that answers a repeated checksum from its
first row (which checksums were met, each first row's outcome): peak RSS and CPU seconds.

    python bench/bench_dedupe.py book [--sizes 100000,1000000,10000000] [--tree DIR]
    python bench/bench_dedupe.py vault [--entries 1000000] [--tree DIR]

``book`` runs the bookkeeping alone, in a process of its own for each size: the
manifest's lines read into items (``EntryReader``), a row made for each item at once
(``present``; a repeat ``same``) and counted (``Tally``); every tenth entry repeats an
earlier checksum. Each size runs with dedupe off too (the same loop, nothing kept), and
the difference is the bookkeeping's cost per entry (CPU seconds, the fastest of --runs
runs up to 10^6). ``vault`` runs a whole `dmp manifest --vault` of that many distinct
entries against an empty ``file://`` vault (every checksum missing): its wall and CPU
seconds and its peak RSS, from the kernel. ``--tree DIR`` runs another checkout's
dmp_cli (an earlier commit, to compare). Prints one line per run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def digest(n: int) -> str:
    return hashlib.sha256(n.to_bytes(8, "little")).hexdigest()


def book(distinct: int, dedupe: bool) -> None:
    """In this process: the bookkeeping of a manifest of ``distinct`` checksums, each
    tenth entry a repeat; prints seconds and peak RSS."""
    from dmp_cli.manifest import Entry, Line
    from dmp_cli.runs.entries import EntryReader, Tally

    def lines() -> object:
        number = 0
        for n in range(distinct):
            number += 1
            yield Line(number, Entry(digest(n), "f"))
            if n % 9 == 8:
                number += 1
                yield Line(number, Entry(digest(n // 2), "copy"))

    reader = EntryReader(dedupe=dedupe)
    tally = Tally(dedupe=dedupe)
    started = time.process_time()  # CPU seconds: the machine's other work does not count
    for item in reader.items(lines()):  # type: ignore[arg-type]
        tally.add({**item, "status": "same" if item.get("same") else "present"})
    seconds = time.process_time() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert reader.entries == distinct + distinct // 9
    assert tally.distinct == (distinct if dedupe else reader.entries)
    close = getattr(tally, "close", None)
    if close:
        close()
    print(f"{seconds:.2f} {rss:.0f} {reader.entries}")


def child(tree: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def fastest(tree: Path, runs: int, *args: str) -> list[str]:
    """The fields of the fastest of ``runs`` runs (the machine's other work only slows)."""
    return min((child(tree, *args).split() for _ in range(runs)), key=lambda f: float(f[0]))


def run_book(sizes: list[int], tree: Path, runs: int) -> None:
    for size in sizes:
        count = runs if size <= 1_000_000 else 1
        off = fastest(tree, count, "_book", str(size), "off")
        on = fastest(tree, count, "_book", str(size), "on")
        entries = int(on[2])
        per_entry = (float(on[0]) - float(off[0])) / entries * 1e6
        print(
            f"{size:>12,} distinct, {entries:,} entries: {float(on[0]):.1f} s, "
            f"peak RSS {on[1]} MB (dedupe off: {float(off[0]):.1f} s, {off[1]} MB); "
            f"bookkeeping {per_entry:.2f} us an entry",
            flush=True,
        )


def run_vault(entries: int, tree: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="dmp-bench-dedupe-") as where:
        root = Path(where)
        (root / "vault").mkdir()
        with open(root / "m.sha256", "w") as out:
            for n in range(entries):
                out.write(f"{digest(n)}  f{n}\n")
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "DMP_VAULT": f"file://{root / 'vault'}",
        }
        started = time.monotonic()
        with subprocess.Popen(
            [sys.executable, "-m", "dmp_cli", "manifest", "--vault", "-m", "m.sha256"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as proc:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        cpu = usage.ru_utime + usage.ru_stime
        print(
            f"--vault of {entries:,} entries: {seconds:.1f} s ({cpu:.1f} s CPU), peak RSS "
            f"{usage.ru_maxrss / 1024:.0f} MB (exit {proc.returncode})"
        )


def main() -> None:
    if sys.argv[1:2] == ["_book"]:
        book(int(sys.argv[2]), sys.argv[3] == "on")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["book", "vault"])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--tree", type=Path, default=REPO)
    parser.add_argument("--runs", type=int, default=5, help="of each size up to 10^6: the fastest")
    args = parser.parse_args()
    if args.what == "book":
        sizes = [int(size) for size in args.sizes.split(",")]
        run_book(sizes, args.tree.resolve(), args.runs)
    else:
        run_vault(args.entries, args.tree.resolve())


if __name__ == "__main__":
    main()
