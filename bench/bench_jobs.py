"""Benchmark of jobs that live on the fleet, on this machine.

    PYTHONPATH=. python bench/bench_jobs.py [--sizes 100000,1000000,10000000] [--tree 1000000]

1. A detached `--check` of synthetic manifests (lines naming files that do not exist, so
   that the workers do next to nothing and the fleet's own costs show), for each size:
   the time `--detach` takes to return (median of 3 submissions), then one job run to its
   end by 2 local workers: Redis's peak memory above idle while it runs (it must stay
   flat as the job grows), the coordinator's peak RSS, and files per second end to end.
2. A `--create` of a tree of TREE empty files (1000 to a directory): embedded, and
   detached to 2 local workers, whose coordinator has them list the directories, and
   which hash the files (median of 3 each, in turn; the manifests compared), and the walk
   alone, listed here or by the workers.

Starts its own redis-server and workers on loopback and stops them at the end; writes
JSON to bench/results/jobs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

import redis  # noqa: E402

from tests.integration.fleet import fleet_env, worker  # noqa: E402
from tests.servers import redis_server  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fleet import DATA, RESULTS, RedisMemory, make_synthetic_manifest  # noqa: E402


def empty_tree(files: int) -> Path:
    tree = DATA / f"empty-tree-{files}"
    if (tree / ".complete").exists():
        return tree
    for i in range(files):
        if i % 1000 == 0:
            directory = tree / f"d{i // 1000:05}"
            directory.mkdir(parents=True, exist_ok=True)
        os.close(os.open(directory / f"f{i:07}", os.O_CREAT | os.O_WRONLY, 0o644))
    (tree / ".complete").touch()
    return tree


def warm(path: Path) -> None:
    """Read the file, or list the tree, so that the page cache holds it."""
    if path.is_file():
        with open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
    else:
        for _ in os.walk(path):
            pass


def dmp(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dmp_cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - started, done.stdout.decode().strip()


class Sampler(RedisMemory):
    """Redis's used memory, and a process's RSS once its pid is set, sampled in a thread."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.pid: int | None = None
        self.rss_peak = 0

    def sample(self) -> None:
        super().sample()
        if self.pid:
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.rss_peak = max(self.rss_peak, int(line.split()[1]) * 1024)
            except OSError:
                pass


def job_info(client: Any, job: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(f"dmp:job:{job}").items()}


def bench_detached(url: str, items: int) -> dict[str, Any]:
    manifest = make_synthetic_manifest(DATA, items)
    env = fleet_env(url)
    client = redis.Redis.from_url(url)
    args = ["manifest", "--check", "--detach", "-m", manifest.name]
    submits = []
    for _ in range(3):  # submitted and cancelled: the time to return is what is measured
        warm(manifest)
        seconds, job = dmp(args, manifest.parent, env)
        submits.append(seconds)
        dmp(["job", "cancel", job], manifest.parent, env)
    time.sleep(2)  # the cancelled jobs' coordinators end
    warm(manifest)
    with Sampler(url) as sampler:
        _, job = dmp(args, manifest.parent, env)
        while True:
            info = job_info(client, job)
            owner = info.get("coordinator")
            if owner and sampler.pid is None:
                sampler.pid = int(owner.split(":")[1])
            if info.get("state") != "active":
                break
            time.sleep(0.2)
    info = job_info(client, job)
    elapsed = float(info["finished"]) - float(info["created"])
    client.close()
    return {
        "items": items,
        "submit_s": statistics.median(submits),
        "submit_runs": submits,
        "redis_peak_mb": (sampler.peak - sampler.base) / 2**20,
        "coordinator_rss_mb": sampler.rss_peak / 2**20,
        "files": int(info.get("files", 0)),
        "seconds": elapsed,
        "files_per_s": int(info.get("files", 0)) / elapsed,
    }


def bench_walk(url: str, files: int, runs: int) -> dict[str, Any]:
    """A --create of the tree: embedded, and detached (its coordinator's walk listed by
    the workers), in turn; then the walk alone, here and listed by the workers."""
    tree = empty_tree(files)
    args = ["manifest", "--create", "--dir", tree.name, "--recursive"]
    client = redis.Redis.from_url(url)
    embedded, fleet = [], []
    for run in range(runs):
        warm(tree)
        embedded.append(
            dmp([*args, "-m", f"/tmp/walk-e{run}.sha256"], tree.parent, fleet_env(None))[0]
        )
        warm(tree)
        _, job = dmp(
            [*args, "--detach", "-m", f"/tmp/walk-f{run}.sha256"], tree.parent, fleet_env(url)
        )
        while job_info(client, job).get("state") == "active":
            time.sleep(0.2)
        info = job_info(client, job)
        fleet.append(float(info["finished"]) - float(info["created"]))
        same = (
            Path(f"/tmp/walk-e{run}.sha256").read_bytes()
            == Path(f"/tmp/walk-f{run}.sha256").read_bytes()
        )
        assert same, "the fleet's manifest differs"
        for name in (f"/tmp/walk-e{run}.sha256", f"/tmp/walk-f{run}.sha256"):
            os.unlink(name)
            if os.path.exists(name + ".meta"):  # the companion of metadata
                os.unlink(name + ".meta")
    client.close()
    from dmp_cli.inputs import Inputs, walk_items
    from dmp_tasks.app import client_app
    from dmp_tasks.walk import FleetLister

    inputs = Inputs(dirs=[tree.name], recursive=True)
    here, listed = [], []
    cwd = os.getcwd()
    os.chdir(tree.parent)
    try:
        for _ in range(runs):
            warm(tree)
            started = time.perf_counter()
            count = sum(1 for _ in walk_items(inputs, lambda *_: None))
            here.append(time.perf_counter() - started)
            warm(tree)
            lister = FleetLister(client_app(url), str(tree.parent), inputs.dirs, True)
            started = time.perf_counter()
            assert sum(1 for _ in walk_items(inputs, lambda *_: None, lister)) == count
            listed.append(time.perf_counter() - started)
    finally:
        os.chdir(cwd)
    return {
        "files": count,
        "create_embedded_s": statistics.median(embedded),
        "create_detached_s": statistics.median(fleet),
        "walk_here_s": statistics.median(here),
        "walk_by_workers_s": statistics.median(listed),
        "runs": {"embedded": embedded, "fleet": fleet, "here": here, "listed": listed},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--tree", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    results: dict[str, Any] = {"detached": [], "walk": None}
    with (
        tempfile.TemporaryDirectory() as logs,
        redis_server() as server,
        worker(server.url, "bench1", Path(logs), concurrency=2),
        worker(server.url, "bench2", Path(logs), concurrency=2),
    ):
        for size in map(int, options.sizes.split(",")) if options.sizes else []:
            found = bench_detached(server.url, size)
            print(json.dumps(found), flush=True)
            results["detached"].append(found)
        if options.tree:
            results["walk"] = bench_walk(server.url, options.tree, options.runs)
            print(json.dumps(results["walk"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "jobs.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
