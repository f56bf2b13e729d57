#!/usr/bin/env python3
"""Hashing speed of `dmp manifest --create` and `--check` against sha256sum, rclone, hashdeep.

    python bench/bench_hash.py [--data DIR] [--runs 3]

Makes (once) 8 files of 256 MiB and 100,000 files of 4 KiB in 100 directories, reads
them once so they are page-cached, then times each command `--runs` times and prints the
medians as a Markdown table, with each dmp time as a ratio of the best peer measured in
the same run. Also reports the peak RSS of `--check` over a 1,000,000-line manifest.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = "/tmp/dmp-bench.sha256"


def make_tree(data: str) -> tuple[str, str]:
    big, small = os.path.join(data, "big"), os.path.join(data, "small")
    if not os.path.exists(os.path.join(big, ".done")):
        os.makedirs(big, exist_ok=True)
        for i in range(8):
            with open(os.path.join(big, f"f{i}.bin"), "wb") as f:
                for _ in range(256):
                    f.write(os.urandom(1 << 20))
        open(os.path.join(big, ".done"), "w").close()
    if not os.path.exists(os.path.join(small, ".done")):
        for d in range(100):
            sub = os.path.join(small, f"d{d:03d}")
            os.makedirs(sub, exist_ok=True)
            for i in range(1000):
                with open(os.path.join(sub, f"f{i:04d}"), "wb") as f:
                    f.write(os.urandom(4096))
        open(os.path.join(small, ".done"), "w").close()
    return big, small


def timed(cmd: str, runs: int, cwd: str, fresh: str | None = None) -> float:
    """Median wall time of a shell command; ``fresh`` is a file removed before each run."""
    times = []
    for _ in range(runs):
        if fresh and os.path.exists(fresh):
            os.unlink(fresh)
        start = time.perf_counter()
        subprocess.run(cmd, shell=True, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peers(tree: str, big: bool) -> dict[str, str]:
    n = "-n1" if big else ""
    found = {
        "xargs -P2 sha256sum": f"find {tree} -type f ! -name .done -print0 | "
        f"xargs -0 -P2 {n} sha256sum",
    }
    if shutil.which("rclone"):
        found["rclone hashsum --checkers 2"] = f"rclone hashsum sha256 --checkers 2 {tree}"
    if shutil.which("hashdeep"):
        found["hashdeep -j 2"] = f"hashdeep -c sha256 -j 2 -r {tree}"
    return found


def check_rss(data: str) -> float:
    """Peak RSS (MB) of `dmp manifest --check` over a 1,000,000-line manifest."""
    manifest = os.path.join(data, "million.sha256")
    if not os.path.exists(manifest):
        lines = []
        with open(MANIFEST, "rb") as f:  # the small tree's manifest
            lines = f.read().splitlines(keepends=True)
        with open(manifest, "wb") as f:
            for _ in range(1_000_000 // len(lines)):
                f.writelines(lines)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dmp_cli",
            "manifest",
            "--check",
            "--status",
            "--manifest",
            manifest,
        ],
        cwd=data,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(before, after) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(HERE, "data"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    make_tree(args.data)
    dmp = f"{sys.executable} -m dmp_cli"
    print(
        f"| work | dmp --create | dmp --check | peers (median of {args.runs}) | "
        "--create / best peer | --check / best peer |"
    )
    print("|---|---|---|---|---|---|")
    for label, tree, is_big in (
        ("8 × 256 MiB", "big", True),
        ("100,000 × 4 KiB, 100 dirs", "small", False),
    ):
        # Read everything once, so that every command finds it page-cached.
        timed(f"find {tree} -type f -print0 | xargs -0 cat > /dev/null", 1, args.data)
        create = timed(
            f"{dmp} manifest --create --dir {tree} -r -m {MANIFEST}",
            args.runs,
            args.data,
            fresh=MANIFEST,
        )
        check = timed(f"{dmp} manifest --check -m {MANIFEST}", args.runs, args.data)
        results = {
            name: timed(cmd, args.runs, args.data) for name, cmd in peers(tree, is_big).items()
        }
        best = min(results.values())
        shown = ", ".join(f"{name} {t:.2f} s" for name, t in results.items())
        print(
            f"| {label} | {create:.2f} s | {check:.2f} s | {shown} | "
            f"{create / best:.2f} × | {check / best:.2f} × |",
            flush=True,
        )
    print(f"\n`--check` of a 1,000,000-line manifest: peak RSS {check_rss(args.data):.0f} MB")


if __name__ == "__main__":
    main()
