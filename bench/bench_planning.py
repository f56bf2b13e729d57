#!/usr/bin/env python3
"""Vault planning: `dmp manifest --vault` of N entries against a vault holding them, a HEAD
per checksum against listing the vault's keys (DMP_VAULT_PLANNING=head, and the automatic
choice, which lists), beside the floor of any lister: the vault's keys listed whole by
boto3's paginator, a page of 1,000 keys a request, on moto's S3 server.

    python bench/bench_planning.py [--sizes 10000,100000] [--runs 3] [--head-runs 1]
                                   [--head-subset N] [--no-floor] [--no-count-head]
                                   [--no-count] [--proxy-timed] [--indexed]

For each size, a moto server is started with that many objects already in it (put into
its backend in its own process: ``tests.bulkmoto``), and the ways take turns, round after
round (median of each way's runs, as wall seconds of the whole command, in a process of
its own). The requests of one run of each way are counted at a fault proxy with no
faults (timed runs go straight to moto: the proxy makes a connection per request);
``--no-count-head`` leaves HEADs uncounted (one per distinct checksum, and the bucket's);
``--proxy-timed`` times the listings through the proxy, counted there (a big vault's
listing is then run once, not twice; a connection per request adds little to a LIST).
``--head-subset N`` times HEADs of the first N entries only (against the whole vault):
the cost of a HEAD, which does not grow with the vault, times the entries gives the
HEAD seconds of them all. With --indexed, moto answers LIST requests from a sorted index
of the keys instead of reading the whole bucket for each request, as S3 does. Prints a
Markdown table, and writes it with the figures as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
from tests.integration.s3proxy import FaultProxy, fault_proxy, request_kind  # noqa: E402
from tests.servers import dmp_env  # noqa: E402

BUCKET = "dmp-bench-planning"
# The floor: every key of the vault, a page of 1,000 a request, one request after another.
FLOOR = """
import sys, boto3
client = boto3.client("s3", endpoint_url=sys.argv[1])
keys = 0
for page in client.get_paginator("list_objects_v2").paginate(
    Bucket=sys.argv[2], Prefix="object/", PaginationConfig={"PageSize": 1000}
):
    keys += len(page.get("Contents", []))
print(keys)
"""


def vault_run(endpoint: str, manifest: Path, way: str) -> tuple[float, str]:
    """Seconds of one run of ``way``, and what -v said of it (the floor: its keys)."""
    env = dmp_env(
        AWS_ENDPOINT_URL=endpoint, DMP_VAULT=f"s3://{BUCKET}/object", DMP_VAULT_PLANNING=way
    )
    if way == "floor":
        command = [sys.executable, "-c", FLOOR, endpoint, BUCKET]
    else:
        command = [sys.executable, "-m", "dmp_cli", "manifest", "--vault", "-m", str(manifest)]
        command.append("-v")
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=manifest.parent, capture_output=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode())
    if way == "floor":
        return seconds, f"{int(done.stdout):,} keys listed"
    note = next((line for line in done.stderr.decode().splitlines() if "planning by" in line), "")
    return seconds, note


def kinds(proxy: FaultProxy) -> dict[str, int]:
    """The requests the proxy has seen, by kind."""
    counts: Counter[str] = Counter()
    for (method, target), n in proxy.counts.seen.items():
        counts[request_kind(method, target)] += n
    return dict(counts)


def counted(url: str, manifest: Path, way: str) -> dict[str, int]:
    with fault_proxy(url) as proxy:
        vault_run(proxy.url, manifest, way)
        return kinds(proxy)


def cpu_of(pid: int) -> float:
    """The CPU seconds a process has used (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def bench(size: int, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    manifest = work / f"vault-{size}.sha256"
    manifest.write_text("".join(f"{bulk_digest(i)}  data/f{i}\n" for i in range(size)))
    subset = min(size, args.head_subset or size)
    headed = manifest
    if subset < size:
        headed = work / f"vault-{size}-first-{subset}.sha256"
        headed.write_text("".join(f"{bulk_digest(i)}  data/f{i}\n" for i in range(subset)))
    ways = [("auto", args.runs, manifest), ("head", args.head_runs, headed)]
    if not args.no_floor:
        ways.append(("floor", args.runs, manifest))
    times: dict[str, list[float]] = {way: [] for way, _, _ in ways}
    # CPU seconds of each run: the server's, and the client's (dmp, or the floor's lister)
    cpu: dict[str, list[tuple[float, float]]] = {way: [] for way, _, _ in ways}
    notes: dict[str, str] = {}
    loads = [load()]
    seen: dict[str, dict[str, int]] = {}
    with bulk_moto(BUCKET, size, timeout=3600, indexed=args.indexed) as server:
        for turn in range(max(repeat for _, repeat, _ in ways)):
            for way, repeat, path in ways:
                if turn >= repeat:
                    continue
                server_cpu, client_cpu = cpu_of(server.proc.pid), children_cpu()
                if args.proxy_timed and way != "head":
                    with fault_proxy(server.url) as proxy:
                        seconds, notes[way] = vault_run(proxy.url, path, way)
                        seen[way] = kinds(proxy)
                else:
                    seconds, notes[way] = vault_run(server.url, path, way)
                times[way].append(round(seconds, 2))
                used = (cpu_of(server.proc.pid) - server_cpu, children_cpu() - client_cpu)
                cpu[way].append((round(used[0], 1), round(used[1], 1)))
                print(
                    json.dumps({"entries": size, "way": way, "seconds": seconds, "cpu": used}),
                    flush=True,
                )
            loads.append(load())
        rows = []
        for way, repeat, path in ways:
            if not repeat:
                continue
            count = args.count and not (way == "head" and args.no_count_head)
            requests = seen.get(way) or (counted(server.url, path, way) if count else {})
            entries = subset if way == "head" else size
            rows.append(
                {
                    "entries": entries,
                    "vault": size,
                    "way": way,
                    "indexed": args.indexed,
                    "seconds": round(statistics.median(times[way]), 2),
                    "runs": times[way],
                    "cpu": cpu[way],  # (server, client) CPU seconds of each run
                    "requests": sum(requests.values()) if requests else None,
                    "by_kind": requests,
                    "note": notes[way].removeprefix("dmp: "),
                    "load": loads,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| vault | entries | moto | way | seconds (median) | runs | server CPU s | client CPU s "
        "| requests | note |",
        "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        requests = row["requests"]
        server = statistics.median(c[0] for c in row["cpu"])
        client = statistics.median(c[1] for c in row["cpu"])
        lines.append(
            f"| {row['vault']:,} | {row['entries']:,} | "
            f"{'indexed' if row['indexed'] else 'stock'} | {row['way']} | {row['seconds']} | "
            f"{len(row['runs'])} | {server:.1f} | {client:.1f} | "
            f"{'' if requests is None else f'{requests:,}'} | {row['note']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--head-runs", type=int, default=1)
    parser.add_argument("--head-subset", type=int, default=0)
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--no-count", dest="count", action="store_false")
    parser.add_argument("--no-count-head", action="store_true")
    parser.add_argument("--proxy-timed", action="store_true")
    parser.add_argument("--indexed", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dmp-bench-planning-") as work:
        for size in (int(s) for s in args.sizes.split(",")):
            rows += bench(size, args, Path(work))
    text = table(rows)
    print(text)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"planning-{stamp}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (results / f"planning-{stamp}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
