#!/usr/bin/env python3
"""Hashing speed of `dmp manifest --create` and `--check` against sha256sum, rclone, hashdeep.

    python bench/bench_hash.py [--data DIR] [--runs 3] [--baseline CHECKOUT]

Makes (once) 8 files of 256 MiB and 100,000 files of 4 KiB in 100 directories, then times
each command `--runs` times, the commands taking turns in each round and the tree read
into the page cache before every timed command (a memory-hungry peer can push it out),
and prints the medians as a Markdown table, with each dmp time as a ratio of the best
peer measured in the same run. ``--baseline`` times the dmp of another checkout (an
earlier commit, say) in the same rounds, for a before-and-after. Also reports the peak
RSS of `--check` over a 1,000,000-line manifest.
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


def warm(tree: str, cwd: str) -> None:
    """Read the whole tree, so that the next command finds it page-cached."""
    subprocess.run(
        f"find {tree} -type f -print0 | xargs -0 cat > /dev/null", shell=True, cwd=cwd, check=True
    )


def rounds(commands: dict[str, str], runs: int, cwd: str, tree: str) -> dict[str, float]:
    """Median wall time of each shell command, the commands taking turns in each round,
    the tree warmed before each."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            warm(tree, cwd)
            start = time.perf_counter()
            subprocess.run(cmd, shell=True, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


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
    parser.add_argument(
        "--baseline", metavar="CHECKOUT", help="also time the dmp of this checkout, alongside"
    )
    args = parser.parse_args()
    make_tree(args.data)
    dmps = {"dmp": f"{sys.executable} -m dmp_cli"}
    if args.baseline:
        dmps["baseline"] = f"PYTHONPATH={os.path.abspath(args.baseline)} {dmps['dmp']}"
    print(
        f"| work | {' | '.join(f'{who} --create | {who} --check' for who in dmps)} | "
        f"peers (median of {args.runs}) | "
        f"{' | '.join(f'{who} --create / best peer | {who} --check / best peer' for who in dmps)} |"
    )
    print("|---|" + "---|" * (4 * len(dmps) + 1))
    for label, tree, is_big in (
        ("8 × 256 MiB", "big", True),
        ("100,000 × 4 KiB, 100 dirs", "small", False),
    ):
        # Made once for --check: each dmp's --create writes it again, to the same bytes.
        subprocess.run(
            f"{dmps['dmp']} manifest --create --dir {tree} -r -m {MANIFEST}.new",
            shell=True,
            cwd=args.data,
            check=True,
        )
        os.replace(f"{MANIFEST}.new", MANIFEST)
        if os.path.exists(f"{MANIFEST}.new.meta"):  # its companion of metadata
            os.unlink(f"{MANIFEST}.new.meta")
        commands: dict[str, str] = {}
        for who, dmp in dmps.items():
            commands[f"{who} create"] = (
                f"{dmp} manifest --create --dir {tree} -r -m {MANIFEST}.{who} && "
                f"rm -f {MANIFEST}.{who} {MANIFEST}.{who}.meta"
            )
            commands[f"{who} check"] = f"{dmp} manifest --check -m {MANIFEST}"
        found = peers(tree, is_big)
        commands.update(found)
        medians = rounds(commands, args.runs, args.data, tree)
        best = min(medians[name] for name in found)
        shown = ", ".join(f"{name} {medians[name]:.2f} s" for name in found)
        ours = [(medians[f"{who} create"], medians[f"{who} check"]) for who in dmps]
        print(
            f"| {label} | "
            + " | ".join(f"{create:.2f} s | {check:.2f} s" for create, check in ours)
            + f" | {shown} | "
            + " | ".join(f"{create / best:.2f} × | {check / best:.2f} ×" for create, check in ours)
            + " |",
            flush=True,
        )
    print(f"\n`--check` of a 1,000,000-line manifest: peak RSS {check_rss(args.data):.0f} MB")


if __name__ == "__main__":
    main()
