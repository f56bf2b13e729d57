#!/usr/bin/env python3
"""Fetch speed of many small files from a file:// vault: unnamed pending files
(O_TMPFILE) against the named fallback, and optionally another dmp tree.

    python bench/bench_fetch.py [--files 5000] [--runs 3] [--other DIR] [--data DIR]

Makes ``--files`` files of 4 KiB, 100 to a directory, their objects in a file:// vault
and their manifest (once, under --data), then times `dmp manifest --fetch` of the whole
manifest into a fresh directory on the same filesystem: median of --runs, the variants
in turn, after one untimed warm-up each (the page cache holds the vault). ``--other``
times the dmp_cli package found under DIR too (say, an export of an earlier commit).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dmp_cli.fsutil import NAMED_TEMPORARIES  # noqa: E402
from dmp_cli.layout import digest_key  # noqa: E402
from dmp_cli.manifest import Entry, format_line  # noqa: E402
from tests.integration.vaultkit import sha  # noqa: E402
from tests.servers import dmp_env  # noqa: E402

SIZE = 4 << 10


def make_data(root: Path, count: int) -> Path:
    manifest = root / f"m{count}.sha256"
    if manifest.exists():
        return manifest
    lines = []
    for index in range(count):
        data = index.to_bytes(8, "big") * (SIZE // 8)
        digest = sha(data)
        obj = root / "vault" / digest_key(digest)
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(data)
        lines.append(format_line(Entry(digest, f"d{index // 100:03d}/f{index:05d}")))
    manifest.write_bytes(b"".join(lines))
    return manifest


def fetch_seconds(root: Path, manifest: Path, env: dict[str, str]) -> float:
    target = root / "restore"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dmp_cli", "-q", "manifest", "--fetch", "-m", str(manifest)],
        cwd=target,
        env=env,
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--other", help="a directory holding another dmp_cli to time")
    parser.add_argument("--data", default=str(REPO / "bench" / "data" / "fetch"))
    args = parser.parse_args()
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    manifest = make_data(root, args.files)
    base = {"DMP_VAULT": f"file://{root / 'vault'}", "PYTHONPATH": str(REPO)}
    variants = {
        "unnamed (O_TMPFILE)": dmp_env(**base),
        "named temporaries": dmp_env(**base, **{NAMED_TEMPORARIES: "1"}),
    }
    if args.other:
        variants[f"dmp_cli from {args.other}"] = dmp_env(**{**base, "PYTHONPATH": args.other})
    times: dict[str, list[float]] = {name: [] for name in variants}
    for env in variants.values():
        fetch_seconds(root, manifest, env)  # warm-up: the vault into the page cache
    for _ in range(args.runs):
        for name, env in variants.items():
            times[name].append(fetch_seconds(root, manifest, env))
    shutil.rmtree(root / "restore", ignore_errors=True)
    print(f"| `--fetch` of {args.files:,} × 4 KiB, file:// vault | median s | runs |")
    print("|---|---|---|")
    for name, seconds in times.items():
        runs = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"| {name} | {statistics.median(seconds):.2f} | {runs} |")


if __name__ == "__main__":
    main()
