#!/usr/bin/env python3
"""Peak memory and time of `dmp manifest --vault` over a packing vault whose catalog holds
every checksum of a big manifest: planning with the catalog at scale.

    python bench/bench_pack_planning.py [--entries 10000000] [--work DIR] [--per-object N]

Makes (once, under WORK) a manifest of ENTRIES distinct checksums and a `file://` packing
vault whose catalog names all of them: one index object per shard (as `dmp vault compact`
leaves it), or objects of N entries each (as packs of N files leave them, uncompacted).
The packs themselves are not written: `--vault` reads only the catalog.
Then runs `dmp manifest --vault -q` once and prints its wall time, CPU, peak RSS (the
child's ``ru_maxrss``) and the load average around it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from dmp_cli.packs.config import CONFIG_KEY, VaultConfig, index_key  # noqa: E402

# A command run as a child, its peak RSS (KiB) and CPU printed last.
MEASURED = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "used = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(used.ru_maxrss, used.ru_utime + used.ru_stime)"
)
PACK_SIZE = 64 << 20


def digest(i: int) -> str:
    return hashlib.sha256(b"%d" % i).hexdigest()


def make(work: str, entries: int, per_object: int) -> tuple[str, str]:
    """The manifest and the vault (made once)."""
    vault = os.path.join(work, f"vault-{entries}-{per_object}")
    manifest = os.path.join(work, f"manifest-{entries}.sha256")
    if not os.path.exists(manifest):
        with open(manifest + ".part", "w") as out:
            for i in range(entries):
                out.write(f'{digest(i)}  "f/{i:09d}"\n')
        os.rename(manifest + ".part", manifest)
    done = os.path.join(vault, ".done")
    if os.path.exists(done):
        return manifest, vault
    os.makedirs(vault, exist_ok=True)
    with open(os.path.join(vault, CONFIG_KEY), "wb") as f:
        f.write(VaultConfig().encode())
    by_shard: dict[str, list[str]] = {}
    for i in range(entries):
        d = digest(i)
        by_shard.setdefault(d[0], []).append(d)
    for shard, digests in by_shard.items():
        digests.sort()
        for start in range(0, len(digests), per_object):
            part = digests[start : start + per_object]
            pack = hashlib.sha256(f"{shard}{start}".encode()).hexdigest()
            path = os.path.join(vault, index_key(shard, pack))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as out:
                out.write(f"dmp-index 1\npack {pack} {PACK_SIZE}\n")
                for n, d in enumerate(part):
                    out.write(f"{d} 0 {512 + (n % 10000) * 1024} 512\n")
    open(done, "w").close()
    return manifest, vault


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--work", default="/tmp/dmp-bench-pack-planning")
    parser.add_argument(
        "--per-object", type=int, default=0, help="entries an index object (0: one a shard)"
    )
    opts = parser.parse_args()
    os.makedirs(opts.work, exist_ok=True)
    per_object = opts.per_object or opts.entries
    start = time.perf_counter()
    manifest, vault = make(opts.work, opts.entries, per_object)
    print(f"made in {time.perf_counter() - start:.0f} s")
    env = {**os.environ, "DMP_VAULT": f"file://{vault}", "PYTHONPATH": REPO}
    cmd = [sys.executable, "-m", "dmp_cli", "manifest", "--vault", "-q", "-m", manifest]
    before = load()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, *cmd], env=env, check=True, capture_output=True
    )
    wall = time.perf_counter() - start
    rss, cpu = done.stdout.split()
    objects = -(-opts.entries // per_object) * 16
    print(
        f"\n| entries | index objects | wall s | CPU s | peak RSS MiB | load before, after |\n"
        f"|---:|---:|---:|---:|---:|---|\n"
        f"| {opts.entries:,} | about {objects:,} | {wall:.1f} | {float(cpu):.1f} "
        f"| {int(rss) / 1024:.0f} | {before}; {load()} |"
    )


if __name__ == "__main__":
    main()
