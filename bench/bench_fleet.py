"""Benchmark of the fleet against the embedded executor, on this machine.

    PYTHONPATH=. python bench/bench_fleet.py [--files 100000] [--synthetic 1000000]

1. `dmp manifest --create` of FILES x 4 KiB files in 100 directories: embedded, then with
   2 local workers (one process each), median of 3 runs each, and their ratio.
2. A synthetic job of SYNTHETIC items (`--check` of a manifest naming files that do not
   exist, so that the workers do next to nothing and the fleet's own costs show): the
   CLI's peak RSS, items per second, and Redis memory per file in flight.

Starts its own redis-server and workers on loopback and stops them at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

import redis  # noqa: E402

from tests.integration.fleet import fleet_env, worker  # noqa: E402
from tests.servers import redis_server  # noqa: E402

DATA = Path(REPO) / "bench" / "data"
RESULTS = Path(REPO) / "bench" / "results"


def make_tree(root: Path, files: int, dirs: int = 100) -> Path:
    tree = root / f"tree-{files}"
    marker = tree / ".complete"
    if marker.exists():
        return tree
    block = os.urandom(4096 + 256)
    per_dir = max(1, files // dirs)
    for d in range(dirs):
        sub = tree / f"d{d:03}"
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(per_dir):
            n = d * per_dir + f
            (sub / f"f{f:05}").write_bytes(block[n % 256 : n % 256 + 4096])
    marker.touch()
    return tree


def make_synthetic_manifest(root: Path, items: int) -> Path:
    """ITEMS lines naming files that do not exist, written once (complete, or not at all:
    a run stopped halfway leaves no short manifest to be used next time)."""
    manifest = root / f"synthetic-{items}.sha256"
    if not manifest.exists():
        root.mkdir(parents=True, exist_ok=True)
        temp = manifest.with_suffix(".tmp")
        digest = "0" * 64
        with open(temp, "w") as stream:
            for start in range(0, items, 100_000):
                stream.write(
                    "".join(
                        f'{digest}  "synthetic/d{i // 1000:04}/f{i:07}"\n'
                        for i in range(start, min(items, start + 100_000))
                    )
                )
        temp.rename(manifest)
    return manifest


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, int, float]:
    """Run dmp; (seconds, exit status, peak RSS in KiB, CPU seconds) of that process (its
    CPU seconds include its embedded pool's)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmp_cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (
        time.perf_counter() - started,
        proc.returncode,
        usage.ru_maxrss,
        usage.ru_utime + usage.ru_stime,
    )


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by these processes and their descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0, list(pids)
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            for task in os.listdir(f"/proc/{pid}/task"):
                todo += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
        except OSError:  # gone meanwhile
            continue
    return total / tick


class RedisMemory:
    """Samples Redis's used memory in a thread; the peak above the starting level."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.base = self.peak = int(self.client.info("memory")["used_memory"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.sample()

    def sample(self) -> None:
        self.peak = max(self.peak, int(self.client.info("memory")["used_memory"]))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_create(tree: Path, url: str, runs: int, services: list[int]) -> dict[str, Any]:
    """Embedded and distributed runs in turn; seconds, and CPU seconds of everything that
    worked (the CLI and its pool; or the CLI, the workers and Redis)."""
    args = ["manifest", "--create", "--dir", tree.name, "--recursive"]
    local, fleet = fleet_env(None), fleet_env(url)
    for env in (local, fleet):  # warm the page cache and the workers
        assert timed(args, tree.parent, env)[1] == 0
    embedded, distributed, embedded_cpu, distributed_cpu = [], [], [], []
    for _ in range(runs):
        seconds, _, _, cpu = timed(args, tree.parent, local)
        embedded.append(seconds)
        embedded_cpu.append(cpu)
        before = cpu_seconds(services)
        seconds, _, _, cpu = timed(args, tree.parent, fleet)
        distributed.append(seconds)
        distributed_cpu.append(cpu + cpu_seconds(services) - before)
    e, d = statistics.median(embedded), statistics.median(distributed)
    # The best runs too: on a shared machine the median moves with others' load.
    return {
        "embedded_s": e,
        "distributed_s": d,
        "ratio": d / e,
        "best_ratio": min(distributed) / min(embedded),
        "embedded_cpu_s": statistics.median(embedded_cpu),
        "distributed_cpu_s": statistics.median(distributed_cpu),
        "embedded_runs": embedded,
        "distributed_runs": distributed,
    }


def bench_synthetic(manifest: Path, url: str) -> dict[str, float]:
    from dmp_tasks.executor import FILES_IN_FLIGHT

    with open(manifest, "rb") as stream:
        items = sum(1 for _ in stream)
    args = ["manifest", "--check", "-m", manifest.name]
    with RedisMemory(url) as memory:
        seconds, status, rss_kib, _ = timed(args, manifest.parent, fleet_env(url))
    assert status == 1  # every file is missing, by design
    in_flight = FILES_IN_FLIGHT
    return {
        "items": items,
        "seconds": seconds,
        "items_per_s": items / seconds,
        "cli_rss_mb": rss_kib / 1024,
        "redis_peak_mb": (memory.peak - memory.base) / 2**20,
        "in_flight_files": in_flight,
        "redis_bytes_per_in_flight_file": (memory.peak - memory.base) / in_flight,
    }


def table(
    create: dict[str, Any], synthetic: dict[str, float], small: dict[str, float], files: int
) -> str:
    runs = len(create["embedded_runs"])
    return "\n".join(
        [
            "| measurement | result | target |",
            "|---|---|---|",
            f"| `--create`, {files:,} x 4 KiB, embedded (median of {runs}) "
            f"| {create['embedded_s']:.2f} s | |",
            f"| `--create`, {files:,} x 4 KiB, 2 local workers (median of {runs}) "
            f"| {create['distributed_s']:.2f} s | |",
            f"| ratio distributed / embedded (medians) | {create['ratio']:.2f} x | <= 1.25 x |",
            f"| ratio distributed / embedded (best runs) | {create['best_ratio']:.2f} x | |",
            f"| CPU seconds, embedded (CLI and its pool) | {create['embedded_cpu_s']:.2f} s | |",
            f"| CPU seconds, distributed (CLI, workers, Redis) "
            f"| {create['distributed_cpu_s']:.2f} s | |",
            f"| synthetic job, {synthetic['items']:,} items: time "
            f"| {synthetic['seconds']:.1f} s | |",
            f"| synthetic job: items per second | {synthetic['items_per_s']:,.0f} | |",
            f"| synthetic job: CLI peak RSS | {synthetic['cli_rss_mb']:.0f} MB | < 200 MB |",
            f"| the same with {small['items']:,} items: CLI peak RSS (flat with job size) "
            f"| {small['cli_rss_mb']:.0f} MB | |",
            f"| synthetic job: Redis peak above idle | {synthetic['redis_peak_mb']:.1f} MB | |",
            f"| Redis memory per file in flight ({synthetic['in_flight_files']:,} in flight) "
            f"| {synthetic['redis_bytes_per_in_flight_file']:.0f} B | |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--synthetic", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    tree = make_tree(DATA, options.files)
    manifest = make_synthetic_manifest(DATA, options.synthetic)
    logs = Path(tempfile.mkdtemp(prefix="dmp-bench-"))
    with (
        redis_server() as server,
        worker(server.url, "bench1", logs) as one,
        worker(server.url, "bench2", logs) as two,
    ):
        create = bench_create(tree, server.url, options.runs, [one.pid, two.pid, server.proc.pid])
        synthetic = bench_synthetic(manifest, server.url)
        small = bench_synthetic(make_synthetic_manifest(DATA, options.synthetic // 10), server.url)
    report = table(create, synthetic, small, options.files)
    report += f"\n\n(load average {os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs)"
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"fleet-{stamp}.json").write_text(
        json.dumps(
            {
                "create": create,
                "synthetic": synthetic,
                "synthetic_small": small,
                "cpus": os.cpu_count(),
                "load": os.getloadavg(),
            },
            indent=2,
        )
    )
    (RESULTS / f"fleet-{stamp}.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
