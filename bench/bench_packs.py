#!/usr/bin/env python3
"""Packing vaults: `dmp manifest --archive` of many small files into a plain vault (an
object a file, today's way) against a packing vault (`dmp vault init`, its defaults: files
under 1 MiB in packs of about 64 MiB), then `--fetch` of them all back out of each, on
moto's S3 server.

    python bench/bench_packs.py [--files 100000] [--runs 3] [--plain-runs N] [--data DIR]
                                [--proxy]

Makes ``--files`` files of 4 KiB of random bytes, 1,000 to a directory, and their manifest
(once, under --data: bench/data/packs-N). Starts stock moto (``python -m moto.server``) on
a free loopback port, its request log to a file, and stops it at the end. In each round
the two vaults take turns (each round starting with the other one), each in a fresh
bucket: the tree read into the page cache, `--archive` of the whole manifest timed, then
the tree read again and `--fetch` of the whole manifest into an empty directory timed
(which is removed after), then the bucket emptied and deleted. Wall seconds of the
command; CPU seconds of the command and its processes, and of moto's process (from
/proc/PID/stat before and after); requests by kind (``request_kind``) from moto's own
request log, one line a request, so the timed runs are the counted ones (``--proxy``
sends the commands through the fault proxy, no faults armed, and counts there instead:
``Counts.kinds()``; a connection to moto a request). In the first round, the bucket's
objects are counted after `--archive` (a listing) and the fetched tree checked with
`--check`. Medians of --runs (of --plain-runs for the plain vault, whose runs are long);
the load average is printed around the rounds. Prints two Markdown tables (the runs, and
packing against plain) and writes them, with the figures as JSON, under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dmp_cli.layout import digest_key  # noqa: E402
from tests.integration.s3proxy import FaultProxy, fault_proxy, request_kind  # noqa: E402
from tests.servers import dmp_env, free_port, moto_client, stop, wait_for_port  # noqa: E402

SIZE = 4 << 10
PER_DIR = 1000
PREFIX = "vault"
WAYS = ("plain", "packing")
COMMANDS = ("archive", "fetch")
# A request line in werkzeug's log: "PUT /bucket/key?query HTTP/1.1" 200 -
REQUEST = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+"\s+(\d{3})')
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def make_data(root: Path, count: int) -> Path:
    """The tree of ``count`` files of 4 KiB under ``root/tree``, and its manifest."""
    manifest = root / "manifest.sha256"
    done = root / ".done"
    if done.exists():
        return manifest
    tree = root / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    for index in range(count):
        directory = tree / f"d{index // PER_DIR:03d}"
        if index % PER_DIR == 0:
            directory.mkdir(parents=True)
        (directory / f"f{index % PER_DIR:04d}").write_bytes(os.urandom(SIZE))
    create = dmp("manifest", "--create", "--dir", "tree", "-r", "-m", manifest.name)
    subprocess.run(create, cwd=root, env=dmp_env(), check=True)
    done.touch()
    return manifest


def warm(tree: Path) -> None:
    """Read the whole tree, so that the next command finds it page-cached."""
    subprocess.run(
        f"find {tree} -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True
    )


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_of(pid: int) -> float:
    """The CPU seconds a running process has used (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


@dataclass
class Moto:
    """Stock moto's server, its request log in a file read from an offset."""

    url: str
    pid: int
    log: Path
    offset: int = 0

    def requests(self) -> Counter[str]:
        """The requests logged since the last call, by kind (and ``status-5xx``, if any)."""
        size = -1
        while size != self.log.stat().st_size:  # werkzeug logs a request once answered
            size = self.log.stat().st_size
            time.sleep(0.3)
        with open(self.log, "rb") as log:
            log.seek(self.offset)
            text = log.read(size - self.offset).decode(errors="replace")
        self.offset = size
        kinds: Counter[str] = Counter()
        for match in REQUEST.finditer(ANSI.sub("", text)):
            method, target, status = match.groups()
            kinds[request_kind(method, target)] += 1
            if status.startswith("5"):
                kinds["status-5xx"] += 1
        return kinds


@contextmanager
def moto(work: Path) -> Iterator[Moto]:
    """``python -m moto.server`` (the moto of this interpreter) on a free loopback port,
    its log (werkzeug's: a line a request) to a file; stopped after."""
    port = free_port()
    log = work / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, proc)
        yield Moto(f"http://127.0.0.1:{port}", proc.pid, log)
    finally:
        stop(proc)


def dmp(*args: str) -> list[str]:
    return [sys.executable, "-m", "dmp_cli", *args]


def timed(command: list[str], cwd: Path, env: dict[str, str], server: Moto) -> dict[str, Any]:
    """Wall and CPU seconds (the command's, moto's) of one command, which must succeed."""
    server_cpu, client_cpu = cpu_of(server.pid), children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:5])} failed: {done.stderr.decode()[-2000:]}")
    return {
        "seconds": round(seconds, 2),
        "client_cpu": round(children_cpu() - client_cpu, 2),
        "server_cpu": round(cpu_of(server.pid) - server_cpu, 2),
        "summary": done.stderr.decode().strip().splitlines()[-1:],
    }


def bucket_objects(s3: Any, bucket: str) -> tuple[int, int, list[str]]:
    """The bucket's objects: how many, their bytes, and the keys not under packs/ or
    index/ that are not a checksum's (the config)."""
    count = size = 0
    other = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            count += 1
            size += obj["Size"]
            packed = obj["Key"].startswith((f"{PREFIX}/packs/", f"{PREFIX}/index/"))
            if not packed and obj["Key"].count("/") < 5:
                other.append(obj["Key"])
    return count, size, other


def drop_bucket(s3: Any, bucket: str, way: str, manifest: Path) -> None:
    """Delete the bucket and all it holds, so that moto's memory stays flat. A plain
    vault's keys are the manifest's checksums' (listing 100,000 keys costs moto a lot),
    deleted first; then whatever is left is listed and deleted."""
    keys: list[str] = []
    if way == "plain":
        digests = {line.split(" ", 1)[0] for line in manifest.read_text().splitlines()}
        keys = [f"{PREFIX}/{digest_key(d)}" for d in sorted(digests)]
    while True:
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": key} for key in keys[start : start + 1000]]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
        keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        if not keys:
            break
    s3.delete_bucket(Bucket=bucket)


def one_way(
    way: str, first: bool, root: Path, manifest: Path, server: Moto, s3: Any, proxied: bool
) -> dict[str, dict[str, Any]]:
    """`--archive` then `--fetch` of the whole manifest, in a fresh bucket of ``way``."""
    bucket = f"bench-packs-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    runs: dict[str, dict[str, Any]] = {}
    proxy_of: Any = fault_proxy(server.url) if proxied else nullcontext()
    with proxy_of as proxy:
        endpoint = proxy.url if proxy else server.url
        env = dmp_env(
            AWS_ENDPOINT_URL=endpoint, DMP_VAULT=f"s3://{bucket}/{PREFIX}", PYTHONPATH=str(REPO)
        )
        if way == "packing":
            subprocess.run(dmp("-q", "vault", "init"), env=env, check=True)
        counted(server, proxy)
        warm(root / "tree")
        archive = dmp("manifest", "--archive", "-m", manifest.name)
        runs["archive"] = timed(archive, root, env, server)
        runs["archive"]["by_kind"] = counted(server, proxy)
        if first:
            count, size, other = bucket_objects(s3, bucket)
            runs["archive"].update(objects=count, stored_bytes=size, other_keys=other)
            counted(server, proxy)  # not the listing's requests
        restore = root / "restore"
        shutil.rmtree(restore, ignore_errors=True)
        restore.mkdir()
        warm(root / "tree")
        runs["fetch"] = timed(dmp("manifest", "--fetch", "-m", str(manifest)), restore, env, server)
        runs["fetch"]["by_kind"] = counted(server, proxy)
        if first:
            checked = subprocess.run(
                dmp("-q", "manifest", "--check", "-m", str(manifest)), cwd=restore, env=env
            )
            if checked.returncode != 0:
                raise SystemExit(f"the files fetched from the {way} vault do not check")
        shutil.rmtree(restore)
    drop_bucket(s3, bucket, way, manifest)
    for command, run in runs.items():
        print(json.dumps({"way": way, "command": command, **run}), flush=True)
    return runs


def counted(server: Moto, proxy: FaultProxy | None) -> dict[str, int]:
    """The requests since the last count, by kind: at the proxy if there is one, else in
    moto's log (which is read either way, to move past what the proxy has counted)."""
    logged = server.requests()
    if proxy is None:
        return dict(sorted(logged.items()))
    return dict(sorted(proxy.reset().kinds().items()))


def median_of(runs: list[dict[str, Any]], field: str) -> float:
    return float(statistics.median(run[field] for run in runs))


def summarize(
    results: dict[tuple[str, str], list[dict[str, Any]]], files: int
) -> list[dict[str, Any]]:
    rows = []
    for way in WAYS:
        objects = results[(way, "archive")][0]["objects"]
        for command in COMMANDS:
            runs = results[(way, command)]
            by_kind = runs[0]["by_kind"]
            requests = sum(n for kind, n in by_kind.items() if kind != "status-5xx")
            rows.append(
                {
                    "way": way,
                    "command": command,
                    "files": files,
                    "seconds": median_of(runs, "seconds"),
                    "client_cpu": median_of(runs, "client_cpu"),
                    "server_cpu": median_of(runs, "server_cpu"),
                    "runs": [run["seconds"] for run in runs],
                    "requests": requests,
                    "by_kind": by_kind,
                    "requests_each_run": [
                        sum(n for k, n in run["by_kind"].items() if k != "status-5xx")
                        for run in runs
                    ],
                    "objects": objects if command == "archive" else None,
                }
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| command | vault | wall s (median) | runs | CPU s: dmp | CPU s: moto | requests "
        "| by kind | requests / 1,000 files | objects after | objects / 1,000 files |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in row["by_kind"].items())
        objects = row["objects"]
        per = 1000 / row["files"]
        lines.append(
            f"| `--{row['command']}` | {row['way']} | {row['seconds']:.2f} | "
            f"{', '.join(f'{s:.2f}' for s in row['runs'])} | {row['client_cpu']:.2f} | "
            f"{row['server_cpu']:.2f} | {row['requests']:,} | {kinds} | "
            f"{row['requests'] * per:,.2f} | "
            f"{'' if objects is None else f'{objects:,}'} | "
            f"{'' if objects is None else f'{objects * per:,.2f}'} |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> str:
    """Plain over packing, for each command: how many times faster, fewer, cheaper."""
    lines = [
        "| command | wall: plain / packing | CPU dmp: plain / packing | CPU moto: plain / packing "
        "| requests: packing / plain |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    found = {(row["way"], row["command"]): row for row in rows}
    for command in COMMANDS:
        plain, packing = found[("plain", command)], found[("packing", command)]
        cells = [
            f"{plain[field] / packing[field]:.1f} ×" if packing[field] else "-"
            for field in ("seconds", "client_cpu", "server_cpu")
        ]
        share = 100 * packing["requests"] / plain["requests"]
        lines.append(f"| `--{command}` | {' | '.join(cells)} | {share:.3f} % |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO / "bench" / "data")
    parser.add_argument(
        "--plain-runs", type=int, help="rounds with the plain vault, if fewer than --runs"
    )
    parser.add_argument("--proxy", action="store_true", help="count at the fault proxy")
    args = parser.parse_args()
    plain_runs = min(args.runs, args.plain_runs or args.runs)
    root = (args.data / f"packs-{args.files}").resolve()
    root.mkdir(parents=True, exist_ok=True)
    manifest = make_data(root, args.files)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    loads = [load()]
    print(f"load average: {loads[0]}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dmp-bench-packs-") as work, moto(Path(work)) as server:
        s3 = moto_client(server.url)
        for turn in range(args.runs):
            order = WAYS[turn % 2 :] + WAYS[: turn % 2]
            for way in order:
                if way == "plain" and turn >= plain_runs:
                    continue
                runs = one_way(way, turn == 0, root, manifest, server, s3, args.proxy)
                for command, run in runs.items():
                    results.setdefault((way, command), []).append(run)
            loads.append(load())
            print(f"load average after round {turn + 1}: {loads[-1]}", flush=True)
        s3.close()
    rows = summarize(results, args.files)
    text = (
        f"{args.files:,} files of 4 KiB, {args.runs} rounds, load average "
        f"{' / '.join(loads)}\n\n{table(rows)}\n\n{ratios(rows)}"
    )
    print(text)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    results_dir = REPO / "bench" / "results"
    results_dir.mkdir(exist_ok=True)
    each = {f"{way} {command}": runs for (way, command), runs in results.items()}
    figures = {"rows": rows, "load": loads, "runs": each}
    (results_dir / f"packs-{stamp}.json").write_text(json.dumps(figures, indent=1) + "\n")
    (results_dir / f"packs-{stamp}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
