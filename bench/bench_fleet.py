"""Benchmark of the fleet against the embedded executor, on this machine.

    PYTHONPATH=. python bench/bench_fleet.py [--files 100000] [--large 400000]
        [--synthetic 1000000] [--runs 5]

1. `dmp manifest --create` of FILES x 4 KiB files in 100 directories: embedded, then with
   2 local workers (one process each), in turn, RUNS times each: the medians of time and of
   CPU seconds, and their ratios.
2. CPU per file: the same with LARGE files (400 directories), in turn with the first; what
   a file costs is the difference over the difference in files (what a command costs
   whatever its size, such as importing Celery, cancels out); and that fixed cost itself,
   from a job of one file.
3. A synthetic job of SYNTHETIC items (`--check` of a manifest naming files that do not
   exist, so that the workers do next to nothing and the fleet's own costs show): the
   CLI's peak RSS, items per second, and Redis memory per file in flight.

Starts its own redis-server and workers on loopback and stops them at the end.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

import redis  # noqa: E402

from tests.integration.fleet import fleet_env, worker  # noqa: E402
from tests.servers import redis_server  # noqa: E402

DATA = Path(REPO) / "bench" / "data"
RESULTS = Path(REPO) / "bench" / "results"


def make_tree(root: Path, files: int, dirs: int | None = None) -> Path:
    tree = root / f"tree-{files}"
    marker = tree / ".complete"
    if marker.exists():
        return tree
    block = os.urandom(4096 + 256)
    dirs = dirs or max(1, files // 1000)
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


def timed(
    args: list[str], cwd: Path, env: dict[str, str], command: list[str] | None = None
) -> tuple[float, int, int, float]:
    """Run dmp (or ``command``, then ARGS); (seconds, exit status, peak RSS in KiB, CPU
    seconds) of that process (its CPU seconds include its embedded pool's)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*(command or [sys.executable, "-m", "dmp_cli"]), *args],
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


def warm(tree: Path) -> None:
    """Read the tree into the page cache (a command after a cold cache runs several times
    slower, and its CPU seconds grow too)."""
    find = subprocess.Popen(
        ["find", tree.name, "-type", "f", "-print0"], cwd=tree.parent, stdout=subprocess.PIPE
    )
    subprocess.run(
        ["xargs", "-0", "cat"],
        cwd=tree.parent,
        stdin=find.stdout,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    find.wait()


MINIMUM = [sys.executable, str(Path(REPO) / "bench" / "celery_minimum.py")]


@contextmanager
def minimum_workers(url: str, logs: Path) -> Iterator[list[int]]:
    """Two workers of bench/celery_minimum.py (one process each, as dmp's), with ``url``
    for their broker; their pids."""
    app, queue = "bench.celery_minimum", "minimum"
    with (
        worker(
            url, "minimum1", logs, celery=True, app=app, queues=queue, CELERY_MINIMUM_URL=url
        ) as one,
        worker(
            url, "minimum2", logs, celery=True, app=app, queues=queue, CELERY_MINIMUM_URL=url
        ) as two,
    ):
        yield [one.pid, two.pid]


def with_services(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    pids: list[int],
    command: list[str] | None = None,
) -> tuple[float, float]:
    """Run dmp (or ``command``) against a fleet; its seconds, and the CPU seconds of it and
    of the fleet's processes ``pids`` (counted a moment after, for the last callback)."""
    before = cpu_seconds(pids)
    seconds, status, _, cpu = timed(args, cwd, env, command)
    assert status == 0
    time.sleep(0.3)
    return seconds, cpu + cpu_seconds(pids) - before


def create_args(tree: Path) -> list[str]:
    return ["manifest", "--create", "--dir", tree.name, "--recursive"]


def bench_create(
    trees: dict[Path, int],
    url: str,
    runs: int,
    services: list[int],
    minimum: tuple[str, list[int]] | None = None,
) -> dict[str, dict[str, Any]]:
    """For each tree, embedded and distributed runs in turn (and the trees in turn), the
    tree read into the page cache before each; seconds, and CPU seconds of everything
    that worked (the CLI and its pool; or the CLI, the workers and Redis). With
    ``minimum`` (its Redis URL and workers), the smallest tree is also done by
    bench/celery_minimum.py in each round."""
    local, fleet = fleet_env(None), fleet_env(url)
    smallest = min(trees, key=lambda tree: trees[tree])
    for tree in trees:  # warm the workers, and each tree's listing
        for env in (local, fleet):
            assert timed(create_args(tree), tree.parent, env)[1] == 0
    runs_of: dict[Path, dict[str, list[float]]] = {
        tree: {"embedded_s": [], "distributed_s": [], "embedded_cpu": [], "distributed_cpu": []}
        for tree in trees
    }
    for _ in range(runs):
        for tree in trees:
            got = runs_of[tree]
            warm(tree)
            seconds, status, _, cpu = timed(create_args(tree), tree.parent, local)
            assert status == 0
            got["embedded_s"].append(seconds)
            got["embedded_cpu"].append(cpu)
            warm(tree)
            seconds, cpu = with_services(create_args(tree), tree.parent, fleet, services)
            got["distributed_s"].append(seconds)
            got["distributed_cpu"].append(cpu)
            if minimum and tree == smallest:
                warm(tree)
                pids = [*minimum[1], services[-1]]  # its workers and Redis
                env = fleet_env(None, CELERY_MINIMUM_URL=minimum[0])
                _, cpu = with_services([tree.name], tree.parent, env, pids, MINIMUM)
                got.setdefault("minimum_cpu", []).append(cpu)
    results = {}
    for tree, got in runs_of.items():
        e, d = statistics.median(got["embedded_s"]), statistics.median(got["distributed_s"])
        ecpu, dcpu = (
            statistics.median(got["embedded_cpu"]),
            statistics.median(got["distributed_cpu"]),
        )
        results[tree.name] = {
            "files": trees[tree],
            "embedded_s": e,
            "distributed_s": d,
            "ratio": d / e,
            "embedded_cpu_s": ecpu,
            "distributed_cpu_s": dcpu,
            "cpu_ratio": dcpu / ecpu,
            # Each round's pair ran back to back, under the same load from others: the
            # median of their ratios moves less with that load than the ratio of medians.
            "cpu_ratio_paired": statistics.median(
                d / e for d, e in zip(got["distributed_cpu"], got["embedded_cpu"], strict=True)
            ),
            "runs": got,
        }
        if "minimum_cpu" in got:
            results[tree.name]["minimum_cpu_s"] = statistics.median(got["minimum_cpu"])
    return results


def bench_fixed(url: str, runs: int, services: list[int]) -> dict[str, float]:
    """CPU seconds of a job of one file: what a command costs whatever its size."""
    root = Path(tempfile.mkdtemp(prefix="dmp-bench-one-"))
    (root / "one").write_bytes(b"x" * 4096)
    args = ["manifest", "--create", "one"]
    local, fleet = fleet_env(None), fleet_env(url)
    embedded, distributed = [], []
    for _ in range(runs):
        embedded.append(timed(args, root, local)[3])
        distributed.append(with_services(args, root, fleet, services)[1])
    return {
        "embedded_cpu_s": statistics.median(embedded),
        "distributed_cpu_s": statistics.median(distributed),
    }


def per_file(create: dict[str, dict[str, Any]]) -> dict[str, float]:
    """CPU microseconds a file, from the smallest tree to the largest."""
    ordered = sorted(create.values(), key=lambda r: int(r["files"]))
    small, large = ordered[0], ordered[-1]
    files = large["files"] - small["files"]
    embedded = (large["embedded_cpu_s"] - small["embedded_cpu_s"]) / files * 1e6
    distributed = (large["distributed_cpu_s"] - small["distributed_cpu_s"]) / files * 1e6
    return {
        "embedded_us": embedded,
        "distributed_us": distributed,
        "ratio": distributed / embedded,
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
    create: dict[str, dict[str, Any]],
    fixed: dict[str, float],
    synthetic: dict[str, float],
    small: dict[str, float],
) -> str:
    ordered = sorted(create.values(), key=lambda r: int(r["files"]))
    first, last = ordered[0], ordered[-1]
    runs = len(first["runs"]["embedded_s"])
    files = f"{first['files']:,} x 4 KiB"
    rows = [
        "| measurement | result | target |",
        "|---|---|---|",
        f"| `--create`, {files}, embedded (median of {runs}) | {first['embedded_s']:.2f} s | |",
        f"| the same with 2 local workers | {first['distributed_s']:.2f} s | |",
        f"| ratio distributed / embedded, medians | {first['ratio']:.2f} x | <= 1.25 x |",
        f"| CPU seconds, embedded (the CLI and its pool) | {first['embedded_cpu_s']:.2f} s | |",
        "| CPU seconds, distributed (the CLI, both workers, Redis) "
        f"| {first['distributed_cpu_s']:.2f} s | |",
        f"| CPU, distributed / embedded: ratio of the medians | {first['cpu_ratio']:.2f} x | |",
        "| CPU, distributed / embedded: median of each round's ratio "
        f"| {first['cpu_ratio_paired']:.2f} x | |",
    ]
    if "minimum_cpu_s" in first:
        rows.append(
            "| the same job by the simplest Celery fleet (`bench/celery_minimum.py`): CPU "
            f"| {first['minimum_cpu_s']:.2f} s | |"
        )
    if last is not first:
        marginal = per_file(create)
        rows += [
            f"| the same for {last['files']:,} files: CPU, distributed / embedded "
            f"| {last['cpu_ratio']:.2f} x (rounds: {last['cpu_ratio_paired']:.2f} x) | |",
            f"| CPU per file, embedded (from {first['files']:,} to {last['files']:,} files) "
            f"| {marginal['embedded_us']:.1f} us | |",
            f"| CPU per file, distributed | {marginal['distributed_us']:.1f} us | |",
            f"| CPU per file, distributed / embedded | {marginal['ratio']:.2f} x | <= 1.3 x |",
        ]
    rows += [
        f"| CPU seconds of a job of 1 file, embedded | {fixed['embedded_cpu_s']:.2f} s | |",
        f"| the same, distributed | {fixed['distributed_cpu_s']:.2f} s | |",
        f"| synthetic job, {synthetic['items']:,} items: time | {synthetic['seconds']:.1f} s | |",
        f"| synthetic job: items per second | {synthetic['items_per_s']:,.0f} | |",
        f"| synthetic job: CLI peak RSS | {synthetic['cli_rss_mb']:.0f} MB | < 200 MB |",
        f"| the same with {small['items']:,} items: CLI peak RSS (flat with job size) "
        f"| {small['cli_rss_mb']:.0f} MB | |",
        f"| synthetic job: Redis peak above idle | {synthetic['redis_peak_mb']:.1f} MB | |",
        f"| Redis memory per file in flight ({synthetic['in_flight_files']:,} in flight) "
        f"| {synthetic['redis_bytes_per_in_flight_file']:.0f} B | |",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=400_000, help="0: no CPU per file")
    parser.add_argument("--synthetic", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    # As an installed package is: compiled. Where PYTHONDONTWRITEBYTECODE is set, every
    # command would otherwise compile each module changed since its last .pyc was written
    # (about 25 ms of CPU a command for dmp_tasks alone).
    for package in ("dmp_cli", "dmp_tasks"):
        compileall.compile_dir(Path(REPO) / package, quiet=1)
    DATA.mkdir(parents=True, exist_ok=True)
    trees = {make_tree(DATA, options.files): options.files}
    if options.large:
        trees[make_tree(DATA, options.large)] = options.large
    manifest = make_synthetic_manifest(DATA, options.synthetic)
    logs = Path(tempfile.mkdtemp(prefix="dmp-bench-"))
    with (
        redis_server() as server,
        worker(server.url, "bench1", logs) as one,
        worker(server.url, "bench2", logs) as two,
        minimum_workers(server.url.rsplit("/", 1)[0] + "/1", logs) as minimum,
    ):
        services = [one.pid, two.pid, server.proc.pid]
        minimum_url = server.url.rsplit("/", 1)[0] + "/1"
        create = bench_create(trees, server.url, options.runs, services, (minimum_url, minimum))
        fixed = bench_fixed(server.url, options.runs, services)
        synthetic = bench_synthetic(manifest, server.url)
        small = bench_synthetic(make_synthetic_manifest(DATA, options.synthetic // 10), server.url)
    report = table(create, fixed, synthetic, small)
    report += f"\n\n(load average {os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs)"
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"fleet-{stamp}.json").write_text(
        json.dumps(
            {
                "create": create,
                "per_file": per_file(create) if options.large else None,
                "fixed": fixed,
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
