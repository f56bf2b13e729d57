#!/usr/bin/env python3
"""Hashing speed of `dmp manifest --create` and `--check` against sha256sum, rclone, hashdeep.

    python bench/bench_hash.py [--data DIR] [--runs 3] [--baseline CHECKOUT] [--sets small]

Makes (once) 8 files of 256 MiB and 100,000 files of 4 KiB in 100 directories, then times
each command `--runs` times, the commands taking turns in each round and the tree read
into the page cache before every timed command (a memory-hungry peer can push it out),
and prints the medians as a Markdown table, with each dmp time as a ratio of the best
peer measured in the same run. ``--baseline`` times the dmp of another checkout (an
earlier commit, say) in the same rounds, for a before-and-after. Also reports the peak
RSS of `--check` over a 1,000,000-line manifest.

`--check` has a peer of its own: `sha256sum --check` split over the two cores (the
manifest in sha256sum's form, cut in two halves at a line, each half checked by its own
`sha256sum --check`, side by side). A second table gives each `--check` against it: the
median of the rounds' own ratios (each round's dmp time over the same round's peer time),
and the CPU time (user + system, the command's processes and their children) of each.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
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


def _cpu() -> float:
    """CPU seconds (user + system) of this process's waited-for children so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed_rounds(
    commands: dict[str, str], runs: int, cwd: str, tree: str
) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each shell command in each round, the commands taking turns
    in each round, the tree warmed before each."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            warm(tree, cwd)
            cpu, start = _cpu(), time.perf_counter()
            subprocess.run(cmd, shell=True, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
            times[name].append((time.perf_counter() - start, _cpu() - cpu))
    return times


def rounds(commands: dict[str, str], runs: int, cwd: str, tree: str) -> dict[str, float]:
    """Median wall time of each shell command (see ``timed_rounds``)."""
    times = timed_rounds(commands, runs, cwd, tree)
    return {name: statistics.median(wall for wall, _ in values) for name, values in times.items()}


SPLIT_CHECK = "sha256sum --check, split in two"
FLOOR = "floor: hashing alone"


def hash_floor(manifest: str) -> None:
    """What no --check can beat here: the files of a dmp manifest hashed and compared in a
    bare loop (open, read, sha256, close), by two forked processes as --check's pool
    is, each over half the files; no parsing beyond slicing, no rows, no output. Exits
    non-zero if a file does not match."""
    with open(manifest, "rb") as stream:
        entries = [(line[67:-2].decode(), line[:64].decode()) for line in stream]
    half = len(entries) // 2
    with multiprocessing.get_context("fork").Pool(2) as pool:
        matched = sum(pool.map(_hash_all, [entries[:half], entries[half:]]))
    sys.exit(0 if matched == len(entries) else 1)


def _hash_all(entries: list[tuple[str, str]]) -> int:
    view = memoryview(bytearray(1 << 20))
    matched = 0
    for path, expected in entries:
        fd = os.open(path, os.O_RDONLY)
        hasher = hashlib.sha256()
        while n := os.readv(fd, [view]):
            hasher.update(view[:n])
        os.close(fd)
        matched += hasher.hexdigest() == expected
    return matched


def split_check(manifest: str) -> str:
    """The shell command of the `--check` peer: ``manifest`` (sha256sum's form) cut in two
    halves at a line, each checked by its own `sha256sum --check`, side by side."""
    subprocess.run(["split", "-n", "l/2", manifest, f"{manifest}.half."], check=True)
    first, second = f"{manifest}.half.aa", f"{manifest}.half.ab"
    return (
        f"sha256sum --check {first} & one=$!; sha256sum --check {second} & two=$!; "
        "wait $one && wait $two"
    )


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
    parser.add_argument(
        "--sets",
        choices=("all", "big", "small"),
        default="all",
        help="time the big files, the small files, or both (the default)",
    )
    parser.add_argument("--floor-of", metavar="MANIFEST", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_of:  # the floor's timed command (see hash_floor)
        hash_floor(args.floor_of)
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
    checks: list[str] = []  # the second table's rows: each --check against the split peer
    for label, tree, is_big in (
        ("8 × 256 MiB", "big", True),
        ("100,000 × 4 KiB, 100 dirs", "small", False),
    ):
        if args.sets not in ("all", tree):
            continue
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
        gnu = f"{MANIFEST}.gnu"  # the same files in sha256sum's form, for the split peer
        if os.path.exists(gnu):
            os.unlink(gnu)
        subprocess.run(
            f"{dmps['dmp']} manifest --create --dir {tree} -r --no-meta --format sha256sum "
            f"-m {gnu}",
            shell=True,
            cwd=args.data,
            check=True,
        )
        commands: dict[str, str] = {}
        for who, dmp in dmps.items():
            commands[f"{who} create"] = (
                f"{dmp} manifest --create --dir {tree} -r -m {MANIFEST}.{who} && "
                f"rm -f {MANIFEST}.{who} {MANIFEST}.{who}.meta"
            )
            commands[f"{who} check"] = f"{dmp} manifest --check -m {MANIFEST}"
        found = peers(tree, is_big)
        commands.update(found)
        commands[SPLIT_CHECK] = split_check(gnu)
        if not is_big:  # a dmp manifest of plain names, as hash_floor reads it
            commands[FLOOR] = f"{sys.executable} {os.path.abspath(__file__)} --floor-of {MANIFEST}"
        timed = timed_rounds(commands, args.runs, args.data, tree)
        medians = {
            name: statistics.median(wall for wall, _ in values) for name, values in timed.items()
        }
        checks.append(_check_row(label, timed, list(dmps)))
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
    print(
        f"\n| work | {SPLIT_CHECK} | {FLOOR} | "
        + " | ".join(
            f"{who} --check | {who} --check / split peer | {who} --check / floor" for who in dmps
        )
        + f" | CPU: {SPLIT_CHECK} | CPU: {FLOOR} | "
        + " | ".join(f"CPU: {who} --check" for who in dmps)
        + " |"
    )
    print("|---|" + "---|" * (4 * len(dmps) + 4))
    for row in checks:
        print(row)
    if args.sets in ("all", "small"):
        rss = check_rss(args.data)
        print(f"\n`--check` of a 1,000,000-line manifest: peak RSS {rss:.0f} MB")


def _check_row(label: str, timed: dict[str, list[tuple[float, float]]], dmps: list[str]) -> str:
    """A row of the second table: the split peer's and the floor's median wall times, and
    each dmp's --check, with the medians of the rounds' own ratios to them (and their
    range), then the median CPU times."""
    peer, floor = timed[SPLIT_CHECK], timed.get(FLOOR)

    def by_round(ours: list[tuple[float, float]], theirs: list[tuple[float, float]] | None) -> str:
        if theirs is None:
            return "-"
        ratios = [mine[0] / other[0] for mine, other in zip(ours, theirs, strict=True)]
        return f"{statistics.median(ratios):.2f} × ({min(ratios):.2f}-{max(ratios):.2f})"

    def wall(values: list[tuple[float, float]] | None) -> str:
        return "-" if values is None else f"{statistics.median(w for w, _ in values):.2f} s"

    def cpu(values: list[tuple[float, float]] | None) -> str:
        return "-" if values is None else f"{statistics.median(c for _, c in values):.2f} s"

    cells = [wall(peer), wall(floor)]
    for who in dmps:
        ours = timed[f"{who} check"]
        cells += [wall(ours), by_round(ours, peer), by_round(ours, floor)]
    cells += [cpu(peer), cpu(floor), *(cpu(timed[f"{who} check"]) for who in dmps)]
    return f"| {label} | " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
