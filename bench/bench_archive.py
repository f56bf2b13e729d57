#!/usr/bin/env python3
"""Archive speed: dmp against `aws s3 cp --recursive` and `rclone copy`, same moto server.

    python bench/bench_archive.py [--runs 3] [--data bench/data]

Makes 1,000 files of 64 KiB and 4 files of 256 MiB (once, under bench/data), starts
moto's S3 server on a free loopback port, and times each tool uploading each set into a
fresh bucket (median of --runs), then `dmp manifest --vault` over 10,000 entries. Buckets
are emptied after each run so that moto's memory stays flat; each run starts with another
tool, after one untimed warm-up upload. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dmp_cli.manifest import Entry, format_line  # noqa: E402
from tests.servers import dmp_env, moto_server  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
SETS = {"small": (1000, 64 * KiB), "big": (4, 256 * MiB)}
VAULT_ENTRIES = 10_000


def make_data(root: Path) -> None:
    for name, (count, size) in SETS.items():
        directory = root / name
        if directory.is_dir() and len(os.listdir(directory)) == count:
            continue
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for index in range(count):
            with open(directory / f"f{index:05d}.bin", "wb") as out:
                left = size
                while left:
                    chunk = os.urandom(min(left, 16 * MiB))
                    out.write(chunk)
                    left -= len(chunk)


def manifest_for(root: Path, name: str, env: dict[str, str]) -> Path:
    manifest = root / f"{name}.sha256"
    if not manifest.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dmp_cli",
                "manifest",
                "--create",
                "--dir",
                name,
                "--manifest",
                manifest.name,
            ],
            cwd=root,
            env=env,
            check=True,
        )
    return manifest


def vault_manifest(root: Path) -> Path:
    """10,000 entries whose checksums are not in the vault, plus some that are."""
    manifest = root / "vault10k.sha256"
    entries = (Entry(os.urandom(32).hex(), f"f{i:05d}") for i in range(VAULT_ENTRIES))
    manifest.write_bytes(b"".join(format_line(e) for e in entries))
    return manifest


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{command[:3]} failed: {result.stderr.decode()[-2000:]}")
    return elapsed


def empty_bucket(s3: object, bucket: str) -> None:
    paginator = s3.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})  # type: ignore[attr-defined]
    s3.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]


def warm_up(s3: object, root: Path) -> None:
    """One untimed upload of each set first: moto's first gigabyte costs it more (its heap
    grows), and that cost would fall on whichever tool happened to go first."""
    from boto3.s3.transfer import TransferConfig

    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    for name in SETS:
        for path in sorted((root / name).iterdir()):
            s3.upload_file(
                str(path),
                bucket,
                f"{name}/{path.name}",  # type: ignore[attr-defined]
                Config=TransferConfig(use_threads=True),
            )
    empty_bucket(s3, bucket)


def tools(url: str, root: Path) -> dict[str, Callable[[str, str], list[str]]]:
    return {
        "dmp": lambda name, bucket: [
            sys.executable,
            "-m",
            "dmp_cli",
            "manifest",
            "--archive",
            "--manifest",
            f"{name}.sha256",
        ],
        "aws s3 cp": lambda name, bucket: [
            "aws",
            "s3",
            "cp",
            "--recursive",
            "--only-show-errors",
            "--endpoint-url",
            url,
            name,
            f"s3://{bucket}/{name}",
        ],
        "rclone copy": lambda name, bucket: ["rclone", "copy", name, f"bench:{bucket}/{name}"],
    }


def tool_env(url: str, bucket: str) -> dict[str, str]:
    return dmp_env(
        AWS_ENDPOINT_URL=url,
        DMP_VAULT=f"s3://{bucket}/object",
        PYTHONPATH=str(REPO),
        RCLONE_CONFIG_BENCH_TYPE="s3",
        RCLONE_CONFIG_BENCH_PROVIDER="Other",
        RCLONE_CONFIG_BENCH_ENDPOINT=url,
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="testing",
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="testing",
        RCLONE_CONFIG_BENCH_REGION="us-east-1",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO / "bench" / "data")
    parser.add_argument("--only", choices=["dmp", "aws s3 cp", "rclone copy"], action="append")
    args = parser.parse_args()
    root = args.data.resolve()
    make_data(root)
    for name in SETS:
        manifest_for(root, name, tool_env("http://unused", "unused"))
    results: dict[tuple[str, str], list[float]] = {}
    with moto_server() as server:
        s3 = boto3.client(
            "s3",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        warm_up(s3, root)
        commands = tools(server.url, root)
        for run in range(args.runs):
            for name in SETS:
                # Each run starts with another tool, so none always follows the same one.
                order = list(commands.items())
                order = order[run % len(order) :] + order[: run % len(order)]
                for tool, command in order:
                    if args.only and tool not in args.only:
                        continue
                    bucket = f"bench-{uuid.uuid4().hex[:12]}"
                    s3.create_bucket(Bucket=bucket)
                    seconds = timed(command(name, bucket), root, tool_env(server.url, bucket))
                    results.setdefault((name, tool), []).append(seconds)
                    print(
                        f"run {run + 1}: {name:5} {tool:12} {seconds:7.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    empty_bucket(s3, bucket)
        vault_times = []
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        manifest = vault_manifest(root)
        for _ in range(args.runs):
            vault_times.append(
                timed(
                    [
                        sys.executable,
                        "-m",
                        "dmp_cli",
                        "manifest",
                        "--vault",
                        "--manifest",
                        manifest.name,
                    ],
                    root,
                    tool_env(server.url, bucket),
                )
            )
        empty_bucket(s3, bucket)
    report(results, vault_times)


def report(results: dict[tuple[str, str], list[float]], vault_times: list[float]) -> None:
    print("| data | dmp | aws s3 cp | rclone copy | dmp / aws | dmp / rclone |")
    print("|---|---|---|---|---|---|")
    for name, (count, size) in SETS.items():
        med = {
            tool: statistics.median(times)
            for (set_, tool), times in results.items()
            if set_ == name
        }
        label = (
            f"{count:,} x {size // MiB} MiB" if size >= MiB else f"{count:,} x {size // KiB} KiB"
        )
        cells = [
            f"{med[t]:.2f} s" if t in med else "—" for t in ("dmp", "aws s3 cp", "rclone copy")
        ]
        ratios = [
            f"{med['dmp'] / med[t]:.2f}" if "dmp" in med and t in med else "—"
            for t in ("aws s3 cp", "rclone copy")
        ]
        print(f"| {label} | " + " | ".join(cells + ratios) + " |")
    vault = statistics.median(vault_times)
    print(
        f"\n`dmp manifest --vault` over {VAULT_ENTRIES:,} entries: {vault:.2f} s "
        f"({VAULT_ENTRIES / vault:,.0f} HEAD requests/s), median of {len(vault_times)}."
    )


if __name__ == "__main__":
    main()
