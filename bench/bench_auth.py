"""What MUNGE authentication (DMP_AUTH=munge) costs the fleet, per file, on this machine.

    PYTHONPATH=. python bench/bench_auth.py [--files 100000] [--runs 7] [--shared-runs 3]
        [--no-shared] [--only create|check]

Starts its own redis-server and munged (a key and a socket of its own, as the tests'
``tests.munge.munge_daemon``), and on loopback three fleets of two `dmp worker -c 1`
each, one Redis database each:

- ``none``: DMP_AUTH=none, the workers and the command as this user (root here);
- ``munge``: DMP_AUTH=munge on the workers and the command, both as this same user, so
  that no process switch happens: the per-user fleet, which the 2 % target is about.
  As the user is root here, its workers take root's jobs (DMP_ALLOW_ROOT_JOBS=1), the
  only difference from a fleet of an ordinary user (one comparison of uids a credential);
- ``shared`` (unless ``--no-shared``): DMP_AUTH=munge, the workers as root, the command as
  another uid, so that each batch is done in a forked process that has dropped to that
  uid (``dmp_tasks.asuser``); against ``none`` with the command as that same uid. For
  these rounds the directories on the way to this Python get the execute bit for others
  (/root is 0700), and lose it again after.

Each round runs `dmp manifest --create --dir TREE -r` of FILES x 4 KiB in 100 directories
and `dmp manifest --check` of its manifest, with auth off and on in turn (which goes
first alternates from round to round), the tree read into the page cache before each
command. A command's CPU is user + system of it, and of the fleet's processes and their
children (forked batches included) from /proc, read before it and a moment after it;
Redis's and munged's are reported apart. CPU per file is a command's CPU over its files.
Before the rounds, a census run counts the credentials a command signs (batches, chord
callbacks, listings of the walk), and a loop in this process times what one batch's
credential costs at each end (``auth.sign``, ``auth.admit``) and in munged.

Prints Markdown and writes JSON and Markdown to bench/results/.
"""

from __future__ import annotations

import argparse
import ast
import compileall
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

import redis  # noqa: E402

from bench.bench_fleet import make_tree, warm  # noqa: E402
from tests.integration.fleet import fleet_env, worker  # noqa: E402
from tests.munge import Munged, munge_daemon  # noqa: E402
from tests.servers import redis_server  # noqa: E402

DATA = Path(REPO) / "bench" / "data"
RESULTS = Path(REPO) / "bench" / "results"
USER = 60101  # the shared fleet's submitter: a uid with no passwd entry

# Run as the command's process, it counts the credentials the command signs, by kind.
CENSUS = """
import collections, runpy, sys
from dmp_tasks import auth
counts = collections.Counter()
signed = auth.sign
def sign(*parts, **kwargs):
    counts[str(parts[0])] += 1
    return signed(*parts, **kwargs)
auth.sign = sign
sys.argv = ["dmp", *sys.argv[1:]]
try:
    runpy.run_module("dmp_cli", run_name="__main__")
finally:
    print("CENSUS", dict(counts), file=sys.stderr)
"""


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by these processes, their descendants alive, and the
    children they have waited for (a batch forked to run as its user), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0, list(pids)
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(field) for field in fields[11:15])  # utime stime cutime cstime
            for task in os.listdir(f"/proc/{pid}/task"):
                todo += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
        except OSError:  # gone meanwhile
            continue
    return total / tick


def as_user(uid: int | None) -> dict[str, Any]:
    """Popen's arguments that run a process as ``uid`` (its gid the same), or nothing."""
    return {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}


def timed(
    args: list[str], cwd: Path, env: dict[str, str], uid: int | None = None
) -> tuple[float, float, bytes]:
    """Run ``args`` (a command line); its seconds, CPU seconds and stderr. A failure
    stops the benchmark, with what the command said."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors, **as_user(uid)
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        errors.seek(0)
        said = errors.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed: {said.decode(errors='replace')[-2000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, said


def dmp(*args: str) -> list[str]:
    return [sys.executable, "-m", "dmp_cli", *args]


class Fleet:
    """Two workers on one Redis database, with the environment of their commands."""

    def __init__(self, name: str, url: str, pids: list[int], env: dict[str, str]) -> None:
        self.name, self.url, self.pids, self.env = name, url, pids, env


@contextmanager
def fleet(
    name: str, url: str, logs: Path, munged: Munged | None, **worker_env: str
) -> Iterator[Fleet]:
    """Two `dmp worker -c 1` on ``url``, signing and admitting with ``munged`` (or with
    DMP_AUTH=none); the environment their commands run in."""
    auth = {"DMP_AUTH": "munge", "DMP_MUNGE_SOCKET": munged.socket} if munged else {}
    auth = auth or {"DMP_AUTH": "none"}
    env: Any = {**auth, **worker_env}  # all strings, to the workers' environment
    with (
        worker(url, f"{name}1", logs, **env) as one,
        worker(url, f"{name}2", logs, **env) as two,
    ):
        yield Fleet(name, url, [one.pid, two.pid], fleet_env(url, **auth))


def measure(
    args: list[str],
    cwd: Path,
    on: Fleet,
    services: dict[str, list[int]],
    uid: int | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    """One command against fleet ``on``: its seconds, and the CPU seconds of it, of the
    fleet's workers, and of each of ``services``; the load average when it ended."""
    groups = {"workers": on.pids, **services}
    before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    seconds, cpu, _ = timed(args, cwd, env or on.env, uid)
    time.sleep(0.3)  # the chord's last callback
    got = {name: cpu_seconds(pids) - before[name] for name, pids in groups.items()}
    return {"seconds": seconds, "command": cpu, **got, "load": os.getloadavg()[0]}


def census(args: list[str], cwd: Path, on: Fleet) -> dict[str, int]:
    """The credentials a command signs against fleet ``on``, by what they cover."""
    _, _, said = timed([sys.executable, "-c", CENSUS, *args], cwd, on.env)
    line = [x for x in said.decode().splitlines() if x.startswith("CENSUS ")][-1]
    counts: dict[str, int] = ast.literal_eval(line.split(" ", 1)[1])
    return counts


def rounds(
    commands: dict[str, list[str]],
    cwd: Path,
    tree: Path,
    pair: tuple[Fleet, Fleet],
    services: dict[str, list[int]],
    runs: int,
    uid: int | None = None,
    home: Path | None = None,
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Each command against both fleets of ``pair`` in turn, RUNS rounds, which fleet
    goes first alternating; the tree read into the page cache before each command."""
    got: dict[str, dict[str, list[dict[str, float]]]] = {
        command: {on.name: [] for on in pair} for command in commands
    }
    for round_ in range(runs):
        for command, args in commands.items():
            for on in pair if round_ % 2 == 0 else pair[::-1]:
                env = {**on.env, "HOME": str(home)} if home else None
                warm(tree)
                got[command][on.name].append(measure(args, cwd, on, services, uid, env))
    return got


def summary(runs: list[dict[str, float]], files: int) -> dict[str, float]:
    """Medians of a command's runs against one fleet, and its CPU per file."""
    cpu = [r["command"] + r["workers"] for r in runs]
    everything = [r["command"] + r["workers"] + r["redis"] + r["munged"] for r in runs]
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "command_cpu": statistics.median(r["command"] for r in runs),
        "workers_cpu": statistics.median(r["workers"] for r in runs),
        "redis_cpu": statistics.median(r["redis"] for r in runs),
        "munged_cpu": statistics.median(r["munged"] for r in runs),
        "cpu": statistics.median(cpu),
        "us_per_file": statistics.median(cpu) / files * 1e6,
        "all_cpu": statistics.median(everything),
        "all_us_per_file": statistics.median(everything) / files * 1e6,
    }


def compare(
    got: dict[str, list[dict[str, float]]], off: str, on: str, files: int
) -> dict[str, Any]:
    """Fleet ``on`` against fleet ``off`` for one command: the medians of each, the ratio
    of the medians, and the median (and range) of each round's own ratio."""
    paired = sorted(
        (b["command"] + b["workers"]) / (a["command"] + a["workers"])
        for a, b in zip(got[off], got[on], strict=True)
    )
    loads = [r["load"] for r in got[off] + got[on]]
    first, second = summary(got[off], files), summary(got[on], files)
    return {
        off: first,
        on: second,
        "ratio": second["cpu"] / first["cpu"],
        "ratio_all": second["all_cpu"] / first["all_cpu"],
        "ratio_paired": statistics.median(paired),
        "ratio_range": (paired[0], paired[-1]),
        "wall_ratio": second["seconds"] / first["seconds"],
        "load": (min(loads), max(loads)),
        "runs": got,
    }


def per_batch(
    socket: str, url: str, op: str, items: int, repeat: int, munged_pid: int
) -> dict[str, Any]:
    """What one batch's credential costs, in this process and in munged: ``auth.sign``
    and ``auth.admit`` (its record of the credential in Redis included) of a batch of
    ``op`` of ITEMS files as a worker gets it (a --check's items carry their expected
    digest and line), REPEAT times; microseconds a batch."""
    from dmp_tasks import auth
    from dmp_tasks.tasks import batch_parts
    from dmp_tasks.wire import pack_items, speaks

    settings = auth.Policy(mode="munge", socket=socket, allow_root=True)
    paths = [f"tree/d{i // 1000:03}/f{i % 1000:05}" for i in range(items)]
    text = pack_items(
        [{"path": p, "digest": f"{i:064x}", "line": i + 1} for i, p in enumerate(paths)]
        if op == "check"
        else [{"path": p} for p in paths]
    )
    config = {"stores": None, "options": None, **speaks()}
    parts = [batch_parts(op, f"bench{n}", n, text, config, True, REPO) for n in range(repeat)]
    client = redis.Redis.from_url(url)

    def first_admitted(fingerprint: str, fresh: bool) -> bool:
        pipe = client.pipeline()
        pipe.hset("bench:admitted", fingerprint, 1)
        pipe.expire("bench:admitted", 60)
        pipe.execute()
        return True

    def clock() -> tuple[float, float, float]:
        return time.perf_counter(), time.process_time(), cpu_seconds([munged_pid])

    start = clock()
    signed = [auth.sign(*p, settings=settings) for p in parts]
    middle = clock()
    for credential, p in zip(signed, parts, strict=True):
        assert not isinstance(auth.admit(credential, p, first_admitted, settings), str)
    end = clock()
    client.delete("bench:admitted")
    client.close()
    micro = 1e6 / repeat
    return {
        "op": op,
        "items": items,
        "text_bytes": len(text),
        "sign_wall_us": (middle[0] - start[0]) * micro,
        "sign_cpu_us": (middle[1] - start[1]) * micro,
        "admit_wall_us": (end[0] - middle[0]) * micro,
        "admit_cpu_us": (end[1] - middle[1]) * micro,
        "munged_cpu_us": (end[2] - start[2]) * micro,
    }


@contextmanager
def python_for_everyone() -> Iterator[None]:
    """Other users can run this Python: the directories on the way to it, to its library
    and to this tree get the execute bit for others, and lose it again after (as the
    fixture of the same name in tests/integration/test_fleet_auth.py)."""
    changed: list[tuple[str, int]] = []
    seen: set[str] = set()
    try:
        for start in (os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix), REPO):
            path = start
            while path not in seen and path != "/":
                seen.add(path)
                mode = os.stat(path).st_mode
                if os.path.isdir(path) and not mode & 0o001:
                    changed.append((path, mode))
                    os.chmod(path, (mode | 0o001) & 0o7777)
                path = os.path.dirname(path)
        yield
    finally:
        for path, mode in changed:
            os.chmod(path, mode & 0o7777)


def _stop(signum: int, _: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # to the finally clauses: all stopped


def table(results: dict[str, Any], files: int) -> str:
    rows = [
        "| command | fleet | wall s | CPU s: command | workers | command + workers "
        "| µs a file | / auth none (rounds: median, range) | wall / none | Redis CPU s "
        "| munged CPU s | µs a file, with Redis and munged | load |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for key, label in (("per_user", "per-user"), ("shared", "shared")):
        for command, got in results.get(key, {}).items():
            off, on = ("none", "munge") if key == "per_user" else ("none-as-user", "shared")
            for name in (off, on):
                s = got[name]
                ratio = (
                    f"{got['ratio']:.3f} × ({got['ratio_paired']:.3f} ×, "
                    f"{got['ratio_range'][0]:.2f}-{got['ratio_range'][1]:.2f})"
                    if name == on
                    else ""
                )
                wall = f"{got['wall_ratio']:.2f} ×" if name == on else ""
                rows.append(
                    f"| `--{command}` | {label}: {name} | {s['seconds']:.2f} "
                    f"| {s['command_cpu']:.2f} | {s['workers_cpu']:.2f} | {s['cpu']:.2f} "
                    f"| {s['us_per_file']:.1f} | {ratio} | {wall} | {s['redis_cpu']:.2f} "
                    f"| {s['munged_cpu']:.3f} | {s['all_us_per_file']:.1f} "
                    f"| {got['load'][0]:.1f}-{got['load'][1]:.1f} |"
                )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--shared-runs", type=int, default=3)
    parser.add_argument("--no-shared", action="store_true")
    parser.add_argument("--only", choices=("create", "check"), help="time one command alone")
    options = parser.parse_args()
    if options.shared_runs and not options.no_shared and os.geteuid() != 0:
        raise SystemExit("the shared fleet's rounds need root (or --no-shared)")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    for package in ("dmp_cli", "dmp_tasks"):  # as an installed package is (bench_fleet.py)
        compileall.compile_dir(Path(REPO) / package, quiet=1)
    tree = make_tree(DATA, options.files)
    manifest = DATA / f"auth-{options.files}.sha256"
    create = dmp("manifest", "--create", "--dir", tree.name, "--recursive")
    check = dmp("manifest", "--check", "--manifest", manifest.name)
    commands = {"create": create, "check": check}
    if options.only:
        commands = {options.only: commands[options.only]}
    logs = Path(tempfile.mkdtemp(prefix="dmp-bench-auth-"))
    os.chmod(logs, 0o755)
    results: dict[str, Any] = {"files": options.files, "started": time.strftime("%F %T %Z")}
    loads = [os.getloadavg()]
    with ExitStack() as stack:
        server = stack.enter_context(redis_server())
        munged = stack.enter_context(munge_daemon())
        base = server.url.rsplit("/", 1)[0]
        none = stack.enter_context(fleet("none", f"{base}/2", logs, None))
        munge = stack.enter_context(
            fleet("munge", f"{base}/3", logs, munged, DMP_ALLOW_ROOT_JOBS="1")
        )
        services = {"redis": [server.proc.pid], "munged": [munged.proc.pid]}
        with open(manifest, "wb") as out:  # the manifest --check reads
            subprocess.run(create, cwd=DATA, env=none.env, stdout=out, check=True)
        for on in (none, munge):  # warm the workers, and the tree's listing
            for args in commands.values():
                timed(args, DATA, on.env)
        results["census"] = {name: census(args[3:], DATA, munge) for name, args in commands.items()}
        results["per_batch"] = [
            per_batch(munged.socket, server.url, op, items, 200, munged.proc.pid)
            for op in ("hash", "check")
            for items in (256, 1024, 8192)
        ]
        got = rounds(commands, DATA, tree, (none, munge), services, options.runs)
        results["per_user"] = {c: compare(got[c], "none", "munge", options.files) for c in got}
        loads.append(os.getloadavg())
        if options.shared_runs and not options.no_shared:
            shared = stack.enter_context(fleet("shared", f"{base}/4", logs, munged))
            home = Path(tempfile.mkdtemp(prefix="dmp-bench-home-"))
            os.chown(home, USER, USER)
            stack.enter_context(python_for_everyone())
            user_none = Fleet("none-as-user", none.url, none.pids, none.env)
            for on in (user_none, shared):
                timed(create, DATA, {**on.env, "HOME": str(home)}, USER)
            got = rounds(
                commands,
                DATA,
                tree,
                (user_none, shared),
                services,
                options.shared_runs,
                USER,
                home,
            )
            results["shared"] = {
                c: compare(got[c], "none-as-user", "shared", options.files) for c in got
            }
            loads.append(os.getloadavg())
    results["loads"] = loads
    results["cpus"] = os.cpu_count()
    results["ended"] = time.strftime("%F %T %Z")
    report = table(results, options.files)
    report += "\n\ncredentials signed by one command: " + ", ".join(
        f"`--{name}` {counts}" for name, counts in results["census"].items()
    )
    report += "\n\nper batch: " + "; ".join(
        f"{b['op']} of {b['items']} files ({b['text_bytes']:,} bytes of text): "
        f"sign {b['sign_cpu_us']:.0f} µs CPU ({b['sign_wall_us']:.0f} wall), "
        f"admit {b['admit_cpu_us']:.0f} µs CPU ({b['admit_wall_us']:.0f} wall), "
        f"munged {b['munged_cpu_us']:.0f} µs"
        for b in results["per_batch"]
    )
    report += (
        f"\n\n{results['started']} to {results['ended']}; load average (1 min) "
        + ", ".join(f"{load[0]:.1f}" for load in loads)
        + f" at start, after the per-user rounds and at the end, on {os.cpu_count()} CPUs"
    )
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"auth-{stamp}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"auth-{stamp}.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
