#!/usr/bin/env python3
"""Vault planning: `dmp manifest --vault` of N entries against a vault holding them, a HEAD
per checksum against listing the vault's keys (DMP_VAULT_PLANNING=head, =list, and the
automatic choice), on moto's S3 server.

    python bench/bench_planning.py [--sizes 10000,100000] [--runs 3] [--head-runs 1]
                                   [--indexed]

For each size, a moto server is started with that many objects already in it (put into
its backend in its own process: ``tests.bulkmoto``), and each way is timed (median of its
runs, as wall seconds of the whole command, in a process of its own). The requests of
one run of each way are counted at a fault proxy with no faults (timed runs go straight
to moto: the proxy makes a connection per request). With --indexed, moto answers LIST
requests from a sorted index of the keys instead of reading the whole bucket for each
request, as S3 does. Prints a Markdown table, and writes it with the figures as JSON
under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.bulkmoto import bulk_digest, bulk_moto  # noqa: E402
from tests.integration.s3proxy import fault_proxy, request_kind  # noqa: E402
from tests.servers import dmp_env  # noqa: E402

BUCKET = "dmp-bench-planning"


def vault_run(endpoint: str, manifest: Path, way: str) -> tuple[float, str]:
    env = dmp_env(
        AWS_ENDPOINT_URL=endpoint, DMP_VAULT=f"s3://{BUCKET}/object", DMP_VAULT_PLANNING=way
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "dmp_cli", "manifest", "--vault", "-m", str(manifest), "-v"],
        env=env,
        cwd=manifest.parent,
        capture_output=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode())
    note = next((line for line in done.stderr.decode().splitlines() if "planning by" in line), "")
    return seconds, note


def counted(url: str, manifest: Path, way: str) -> dict[str, int]:
    with fault_proxy(url) as proxy:
        vault_run(proxy.url, manifest, way)
        kinds: Counter[str] = Counter()
        for (method, target), n in proxy.counts.seen.items():
            kinds[request_kind(method, target)] += n
    return dict(kinds)


def bench(size: int, runs: int, head_runs: int, indexed: bool, work: Path) -> list[dict[str, Any]]:
    manifest = work / f"vault-{size}.sha256"
    manifest.write_text("".join(f"{bulk_digest(i)}  data/f{i}\n" for i in range(size)))
    rows = []
    with bulk_moto(BUCKET, size, timeout=1800, indexed=indexed) as server:
        for way, repeat in (("list", runs), ("auto", 1), ("head", head_runs)):
            if not repeat:
                continue
            times, note = [], ""
            for _ in range(repeat):
                seconds, note = vault_run(server.url, manifest, way)
                times.append(seconds)
            requests = counted(server.url, manifest, way) if way != "auto" else {}
            rows.append(
                {
                    "entries": size,
                    "way": way,
                    "indexed": indexed,
                    "seconds": round(statistics.median(times), 2),
                    "runs": times,
                    "requests": sum(requests.values()) if requests else None,
                    "by_kind": requests,
                    "note": note.removeprefix("dmp: "),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| entries | moto | way | seconds (median) | requests | requests per entry |",
        "| ---: | --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        requests = row["requests"]
        per = f"{requests / row['entries']:.4f}" if requests else ""
        lines.append(
            f"| {row['entries']:,} | {'indexed' if row['indexed'] else 'stock'} | {row['way']} "
            f"| {row['seconds']} | {'' if requests is None else f'{requests:,}'} | {per} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--head-runs", type=int, default=1)
    parser.add_argument("--indexed", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dmp-bench-planning-") as work:
        for size in (int(s) for s in args.sizes.split(",")):
            rows += bench(size, args.runs, args.head_runs, args.indexed, Path(work))
    text = table(rows)
    print(text)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"planning-{stamp}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (results / f"planning-{stamp}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
