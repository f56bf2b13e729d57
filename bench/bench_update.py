#!/usr/bin/env python3
"""A rerun of `dmp manifest --create --dir -r` with `--update` against a full `--create`
and against the floor, `find -printf` of the fields that tell a file unchanged.

    python bench/bench_update.py [--files 200000] [--runs 3] [--data DIR] [--changed 0.01]

Makes (once) FILES files of 4 KiB in directories of 1,000, and a manifest of them (with its
companion); then times, in each round, each command with the tree read into the page
cache before it (the commands taking turns):

- the floor: ``find TREE -printf '%s %T@ %C@ %i %D\\n'``, size, mtime, ctime, inode and
  device of every entry;
- Python's floor: the least a Python walk does, an ``lstat`` an entry (``os.scandir``'s
  ``DirEntry.stat()`` beside the directory's descriptor) on 2 processes, the tree's top
  entries shared between them (``PYTHON_FLOOR``), Python's start included;
- a full ``--create`` (every file read);
- ``--create --update`` of the unchanged tree (no file read): without ``--json``, the
  hashing processes walk the tree again in pieces beside the earlier manifest's;
- the same with ``--json`` rows (each file a row), the general way every file of which
  passes through the command's own process (``--general``; left out by default).

Then ``--changed`` of the files (every 100th, at 1 %) get other bytes of the same size,
and ``--update`` runs again in one process (DMP_JOBS=1), its own reading counted from
/proc/self/io (``rchar``: every byte read() returned, page cache or not) as it ends: the
bytes it read beyond those of the same run on the unchanged tree (the earlier manifest,
its companion, Python's modules) are the bytes of the files it hashed. The changed files
are restored afterwards (their old bytes, in a copy of the tree's earlier manifest).
Prints the medians (wall and CPU) as a Markdown table, each as a multiple of the floor's
in the same rounds, with the load average (``/proc/loadavg``) before and after; and the
bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SIZE = 4096
# dmp run in this process, its own reading (/proc/self/io) printed last on stderr.
COUNTED = (
    "import atexit, runpy, sys; "
    "atexit.register(lambda: sys.stderr.write(open('/proc/self/io').read())); "
    "sys.argv = ['dmp', *sys.argv[1:]]; "
    "runpy.run_module('dmp_cli', run_name='__main__')"
)


# Python's floor: an lstat of every entry of the tree in argv[1], nothing else, on two
# processes that share its top entries, each walked beside its directory's descriptor.
PYTHON_FLOOR = """
import os, sys

def walk(fd):
    with os.scandir(fd) as entries:
        for entry in entries:
            entry.stat(follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False):
                sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                walk(sub)
                os.close(sub)

root = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
names = sorted(os.listdir(root))
child = os.fork()
for name in names[1 if child else 0 :: 2]:
    st = os.lstat(name, dir_fd=root)
    if (st.st_mode & 0o170000) == 0o040000:
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root)
        walk(sub)
        os.close(sub)
if child:
    os.waitpid(child, 0)
else:
    os._exit(0)
"""


# A command run as a child, the peak RSS of that child (KiB) printed last.
MEASURED = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def make_tree(data: str, files: int) -> str:
    tree = os.path.join(data, f"update-{files}")
    if os.path.exists(os.path.join(tree, ".done")):
        return tree
    for d in range((files + 999) // 1000):
        sub = os.path.join(tree, f"d{d:04d}")
        os.makedirs(sub, exist_ok=True)
        for i in range(min(1000, files - d * 1000)):
            with open(os.path.join(sub, f"f{i:04d}"), "wb") as f:
                f.write(os.urandom(SIZE))
    open(os.path.join(tree, ".done"), "w").close()
    return tree


def warm(tree: str) -> None:
    """Read the whole tree (and its metadata), so that the next command finds it cached."""
    subprocess.run(
        f"find {tree} -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True
    )


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def dmp(*args: str) -> list[str]:
    return [sys.executable, "-m", "dmp_cli", *args]


def timed(cmd: list[str] | str, tree: str, before: list[str]) -> tuple[float, float]:
    for path in before:
        for name in (path, path + ".meta"):
            if os.path.exists(name):
                os.unlink(name)
    warm(tree)
    cpu, start = _cpu(), time.perf_counter()
    subprocess.run(cmd, shell=isinstance(cmd, str), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, _cpu() - cpu


def rchar(tree: str, old: str, new: str) -> int:
    """Bytes read by a --create --update of ``tree`` against ``old`` in one process."""
    for name in (new, new + ".meta"):
        if os.path.exists(name):
            os.unlink(name)
    warm(tree)
    args = ["manifest", "--create", "--dir", tree, "-r", "-m", new, "--update", old]
    done = subprocess.run(
        [sys.executable, "-c", COUNTED, *args],
        env={**os.environ, "DMP_JOBS": "1"},
        check=True,
        capture_output=True,
    )
    fields = dict(line.split(": ") for line in done.stderr.decode().splitlines() if ": " in line)
    return int(fields["rchar"])


def synthetic(work: str, lines: int) -> str:
    """An earlier manifest of ``lines`` entries ``WORK/x/f0000000``... and its companion,
    as --create writes them (the files need not exist: none is reused)."""
    manifest = os.path.join(work, f"synthetic-{lines}.sha256")
    prefix = os.path.join(work, "x").encode()
    if os.path.exists(manifest + ".meta"):
        return manifest
    digest = hashlib.sha256()
    with open(manifest, "wb") as out, open(manifest + ".meta", "wb") as meta:
        meta.write(b'{"format":"dmp-meta","version":2}\n')
        for i in range(lines):
            line = b'%s  "%s/f%07d"\n' % (b"ab" * 32, prefix, i)
            out.write(line)
            digest.update(line)
            meta.write(
                b'{"path":"%s/f%07d","type":"file","entry":true,"mode":"0644",'
                b'"mtime_ns":1796579025696137867,"size":4096,"uid":0,"gid":0,"user":"root",'
                b'"group":"root","ctime_ns":1796579025696137867,"ino":%d,"dev":65024,'
                b'"nlink":1}\n' % (prefix, i, 1000 + i)
            )
        trailer = {"end": True, "records": lines, "entries": lines}
        meta.write(json.dumps({**trailer, "manifest_sha256": digest.hexdigest()}).encode())
        meta.write(b"\n")
    return manifest


def peak_rss(work: str, lines: int) -> None:
    """Peak RSS of --update over an earlier manifest of ``lines`` entries, read whole: as
    a stream beside a walk whose paths (WORK/y/...) all sort after its own (WORK/x/...),
    and through the on-disk index, for a list of files out of a walk's order."""
    old = synthetic(work, lines)
    tree = os.path.join(work, "y")
    os.makedirs(tree, exist_ok=True)
    for name in ("a", "b"):
        with open(os.path.join(tree, name), "w") as f:
            f.write(name)
    with open(os.path.join(work, "list"), "w") as f:
        f.write(f"{tree}/b\n{tree}/a\n")
    ways = {
        "stream (--dir)": ["--dir", tree],
        "on-disk index (--files-from out of order)": ["--files-from", os.path.join(work, "list")],
    }
    print(f"\nPeak RSS of --update over an earlier manifest of {lines:,} entries:\n")
    print("| read as | peak RSS MiB | wall s |")
    print("|---|---:|---:|")
    for name, inputs in ways.items():
        new = os.path.join(work, "rss.sha256")
        for path in (new, new + ".meta"):
            if os.path.exists(path):
                os.unlink(path)
        start = time.perf_counter()
        cmd = dmp("manifest", "--create", *inputs, "-m", new, "--update", old)
        done = subprocess.run(
            [sys.executable, "-c", MEASURED, *cmd],
            check=True,
            env={**os.environ, "DMP_JOBS": "1"},
            capture_output=True,
        )
        wall = time.perf_counter() - start
        print(f"| {name} | {int(done.stdout.split()[-1]) / 1024:.0f} | {wall:.1f} |")


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def table(
    tree: str, title: str, runs: int, work: str, general: bool = False, full_runs: bool = True
) -> tuple[str, str]:
    """Time the floor, a full --create and an --update of ``tree`` (unchanged since its
    earlier manifest, made once under ``work``) and print their medians; the earlier
    manifest's path and the new one's."""
    os.makedirs(work, exist_ok=True)
    old, new, full = (os.path.join(work, n) for n in ("old.sha256", "new.sha256", "full.sha256"))
    made = None
    if not os.path.exists(old + ".meta"):
        made = timed(dmp("manifest", "--create", "--dir", tree, "-r", "-m", old), tree, [old])
    commands: dict[str, tuple[list[str] | str, list[str]]] = {
        "floor: find -printf '%s %T@ %C@ %i %D'": (
            f"find {tree} -printf '%s %T@ %C@ %i %D\\n' > /dev/null",
            [],
        ),
        "Python's floor: lstat of each entry, 2 processes": (
            [sys.executable, "-c", PYTHON_FLOOR, tree],
            [],
        ),
        "dmp --create (full)": (
            dmp("manifest", "--create", "--dir", tree, "-r", "-m", full),
            [full],
        ),
        "dmp --create --update (unchanged)": (
            dmp("manifest", "--create", "--dir", tree, "-r", "-m", new, "--update", old),
            [new],
        ),
    }
    if not full_runs:  # the earlier manifest's making alone, if timed
        del commands["dmp --create (full)"]
        full = old
    if general:
        rows = os.path.join(work, "rows.sha256")
        commands["dmp --json --create --update (unchanged, rows)"] = (
            dmp("--json", "manifest", "--create", "--dir", tree, "-r", "-m", rows, "--update", old),
            [rows],
        )
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    load_before = load()
    for _ in range(runs):
        for name, (cmd, before) in commands.items():
            times[name].append(timed(cmd, tree, before))
    for suffix in ("", ".meta"):
        with open(new + suffix, "rb") as a, open(full + suffix, "rb") as b:
            assert a.read() == b.read(), "--update wrote another manifest than --create"
    floor = statistics.median(wall for wall, _ in times[next(iter(commands))])
    floor_cpu = statistics.median(cpu for _, cpu in times[next(iter(commands))])
    loads = f"load average {load_before} before, {load()} after"
    print(f"\n{title}, {runs} rounds, medians ({loads})\n")
    print("| command | wall s | CPU s | × floor (wall) | × floor (CPU) |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / floor:.2f} | {cpu / floor_cpu:.2f} |")
    if made is not None:
        wall, cpu = made
        print(
            f"| dmp --create (full), making the earlier manifest, once | {wall:.2f} | {cpu:.2f}"
            f" | {wall / floor:.2f} | {cpu / floor_cpu:.2f} |"
        )
    floors, updates = times[next(iter(commands))], times["dmp --create --update (unchanged)"]
    ratios = [w / f for (w, _), (f, _) in zip(updates, floors, strict=True)]
    print(f"\n`--update` over the floor, round by round: {', '.join(f'{r:.2f}' for r in ratios)}")
    python = times["Python's floor: lstat of each entry, 2 processes"]
    ratios = [w / f for (w, _), (f, _) in zip(updates, python, strict=True)]
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"`--update` over Python's floor, round by round: {shown}")
    return old, new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", default=os.path.join(HERE, "data"))
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--work", default="/tmp/dmp-bench-update")
    parser.add_argument(
        "--rss", type=int, default=0, metavar="LINES", help="only the peak RSS over LINES"
    )
    parser.add_argument("--general", action="store_true", help="also --update with --json rows")
    parser.add_argument("--no-changed", action="store_true", help="leave out the 1 % rerun")
    parser.add_argument(
        "--no-full", action="store_true", help="time a full --create once (the earlier manifest)"
    )
    parser.add_argument("--no-big", action="store_true", help="leave out the 8 files of 256 MiB")
    opts = parser.parse_args()
    os.environ["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    if opts.rss:
        os.makedirs(opts.work, exist_ok=True)
        peak_rss(opts.work, opts.rss)
        return
    tree = make_tree(opts.data, opts.files)
    os.makedirs(opts.work, exist_ok=True)
    title = f"{opts.files:,} files of {SIZE} B"
    old, new = table(tree, title, opts.runs, opts.work, opts.general, not opts.no_full)
    big = os.path.join(opts.data, "big")
    # bench_hash.py's 8 files of 256 MiB
    if not opts.no_big and os.path.exists(os.path.join(big, ".done")):
        table(big, "8 files of 256 MiB", opts.runs, os.path.join(opts.work, "big"))
    if opts.no_changed:
        return

    unchanged = rchar(tree, old, new)
    step = max(1, round(1 / opts.changed))
    names = sorted(
        os.path.join(root, f) for root, _, fs in os.walk(tree) for f in fs if f != ".done"
    )[::step]
    saved = os.path.join(opts.work, "saved")
    os.makedirs(saved, exist_ok=True)
    try:
        for i, path in enumerate(names):
            shutil.copy2(path, os.path.join(saved, str(i)))
            with open(path, "wb") as f:
                f.write(os.urandom(SIZE))
        changed = rchar(tree, old, new)
    finally:
        for i, path in enumerate(names):
            kept = os.path.join(saved, str(i))
            if os.path.exists(kept):
                shutil.copy2(kept, path)
        shutil.rmtree(saved)
        for name in (old, old + ".meta"):  # the restored files' ctimes moved: made again
            os.unlink(name)
    expected = len(names) * SIZE
    print(
        f"\n{len(names):,} files changed ({len(names) * 100 / opts.files:g} %, {expected:,} B): "
        f"--update read {changed - unchanged:,} B more than on the unchanged tree "
        f"({unchanged:,} B then, {changed:,} B now; "
        f"{(changed - unchanged) / expected:.3f} × the changed files' bytes)"
    )


if __name__ == "__main__":
    main()
