"""The fleet's pieces that need no services: configuration, routing, retries, transport."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest
from kombu.serialization import dumps, loads

from dmp_cli import ops, retry
from dmp_cli.cli.worker import worker_argv
from dmp_cli.errors import BrokerError
from dmp_cli.options import Work
from dmp_tasks import tasks, wire
from dmp_tasks.config import BIG_QUEUE, HASH_QUEUE, TRANSFER_QUEUE, celery_config, safe_url
from dmp_tasks.routing import BIG_FILE_BYTES, queue_for
from tests.servers import REPO


def test_config_is_json_only_and_redelivers() -> None:
    conf = celery_config({"DMP_BROKER_URL": "redis://:pw@r:6379/1", "DMP_REDELIVERY_TIMEOUT": "30"})
    assert conf["accept_content"] == conf["result_accept_content"] == ["json"]
    assert conf["task_serializer"] == conf["result_serializer"] == "json"
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["result_backend"] == "redis://:pw@r:6379/1"
    options = conf["broker_transport_options"]
    assert options["visibility_timeout"] == 30
    assert options["unacked_restore_interval"] == 3
    assert options["unacked_restore_throttle"] == 1


def test_config_defaults() -> None:
    conf = celery_config({"DMP_BROKER_URL": "redis://r/0", "DMP_RESULT_BACKEND": "redis://b/2"})
    assert conf["result_backend"] == "redis://b/2"
    assert conf["broker_transport_options"]["visibility_timeout"] == 3600
    assert conf["broker_transport_options"]["unacked_restore_interval"] == 60


@pytest.mark.parametrize("value", ["soon", "0", "-5"], ids=["word", "zero", "negative"])
def test_bad_redelivery_timeout(value: str) -> None:
    with pytest.raises(BrokerError, match="DMP_REDELIVERY_TIMEOUT"):
        celery_config({"DMP_REDELIVERY_TIMEOUT": value})


def test_safe_url_masks_the_password() -> None:
    assert safe_url("redis://:s3cret@host:6379/0") == "redis://:**@host:6379/0"
    assert "s3cret" not in safe_url("rediss://user:s3cret@host:6380/0?ssl_cert_reqs=required")


@pytest.fixture
def io_op() -> Iterator[str]:
    """An S3-like operation, registered for the test only."""
    ops.OPERATIONS["fake-io"] = ops.Operation("fake-io", lambda item, ctx: {}, "io")
    try:
        yield "fake-io"
    finally:
        del ops.OPERATIONS["fake-io"]


def test_queues(io_op: str) -> None:
    small = [{"path": "a", "size": 10}, {"path": "b", "size": 20}]
    huge = [{"path": "h", "size": BIG_FILE_BYTES}]
    assert queue_for("hash", small) == HASH_QUEUE
    assert queue_for("check", [{"line": 1, "bad": True}]) == HASH_QUEUE
    assert queue_for(io_op, small) == TRANSFER_QUEUE
    assert queue_for("hash", huge) == queue_for(io_op, huge) == BIG_QUEUE


def test_big_files_go_alone_to_the_big_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of DMP_BIG_FILE_BYTES or more is a batch of its own, in its place, however
    roomy the batch it interrupts; the files around it batch as before."""
    from dmp_cli.executor import batches

    monkeypatch.setenv("DMP_BIG_FILE_BYTES", "1000")
    items = [
        {"path": "a", "size": 10},
        {"path": "big1", "size": 1000},
        {"path": "big2", "size": 5000},
        {"path": "b", "size": 999},
        {"path": "c"},
    ]
    groups = list(batches(items, max_items=10, max_bytes=1 << 30, alone_bytes=1000))
    assert [[item["path"] for item in group] for group in groups] == [
        ["a"],
        ["big1"],
        ["big2"],
        ["b", "c"],
    ]
    assert [queue_for("hash", group) for group in groups] == [
        HASH_QUEUE,
        BIG_QUEUE,
        BIG_QUEUE,
        HASH_QUEUE,
    ]


def test_worker_argv() -> None:
    argv = worker_argv(4, "dmp.hash", None, "INFO", None)
    name = argv[argv.index("--hostname") + 1]
    assert name.startswith("dmp-") and "@" in name
    assert argv[argv.index("--concurrency") + 1] == "4"
    assert "--prefetch-multiplier" not in argv
    big = worker_argv(None, BIG_QUEUE, "big@node", "INFO", "/tmp/w.log")
    assert big[big.index("--prefetch-multiplier") + 1] == "1"
    assert big[big.index("--hostname") + 1] == "big@node"
    assert "--idle-exit" not in big and "--idle-exit" not in worker_argv(
        None, BIG_QUEUE, None, "INFO", None, 0
    )
    idle = worker_argv(None, "dmp.hash", None, "INFO", None, 30)
    assert idle[idle.index("--idle-exit") + 1] == "30"
    assert "--task-events" not in idle
    assert "--task-events" in worker_argv(None, "dmp.hash", None, "INFO", None, task_events=True)


def test_celery_workers_of_the_app_take_idle_exit() -> None:
    """`celery -A dmp_tasks worker --idle-exit N` is what `dmp worker` passes on."""
    from dmp_tasks import app
    from dmp_tasks.idle import IdleExit

    assert "idle_exit" in {option.name for option in app.user_options["worker"]}
    assert IdleExit in app.steps["worker"]


def test_non_utf8_paths_survive_the_json_serializer() -> None:
    path = "dir/latin1-\udcff\udcfe-ü\n.bin"
    content_type, encoding, body = dumps([{"path": path, "size": 1}], serializer="json")
    assert body.isascii()
    assert loads(body, content_type, encoding) == [{"path": path, "size": 1}]


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """An operation that fails transiently on its first call for each file."""
    calls: list[str] = []

    def op(item: ops.Item, ctx: ops.Context) -> ops.Row:
        calls.append(item["path"])
        if item["path"] == "permanent":
            return {
                "path": item["path"],
                "status": "missing",
                "errno": 2,
                "bytes": 0,
                "error": "No such file or directory",
            }
        if calls.count(item["path"]) == 1:
            raise ConnectionError("connection reset by peer")
        return {"path": item["path"], "status": "ok", "bytes": 1}

    monkeypatch.setitem(ops.OPERATIONS, "flaky", ops.Operation("flaky", op, "cpu"))
    monkeypatch.setattr(retry, "pause", lambda delay: None)
    yield calls


def test_transient_failures_are_retried_in_the_batch(flaky: list[str]) -> None:
    """The batch runner every executor uses (embedded, and in the fleet's tasks)."""
    items = [{"path": "a", "line": 1}, {"path": "permanent", "line": 2}, {"path": "b"}]
    rows = ops.run_batch(Work("flaky"), items)  # type: ignore[arg-type]
    assert [row["status"] for row in rows] == ["ok", "missing", "ok"]
    assert rows[0]["line"] == 1 and rows[1]["line"] == 2
    assert sorted(flaky) == ["a", "a", "b", "b", "permanent"]  # the missing file: once
    assert tasks.count_rows(rows) == {"s:ok": 2, "s:missing": 1, "files": 3, "bytes": 2}


@pytest.mark.integration  # a fresh interpreter
def test_cli_imports_no_celery_until_it_needs_the_fleet() -> None:
    code = (
        "import sys, dmp_cli.cli, dmp_cli.cli.job, dmp_cli.cli.worker;"
        "print(sorted(m for m in ('celery', 'kombu', 'redis') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        cwd=REPO,
        check=True,
        env={"PYTHONPATH": REPO, "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout == b"[]\n"


def test_paths_elided_on_the_stream_come_back_exactly() -> None:
    items = [{"path": "a\udcff", "size": 1}, {"line": 2, "bad": True}, {"path": "b"}]
    rows = [
        {"path": "a\udcff", "status": "ok", "bytes": 1},
        {"status": "misformatted", "bytes": 0, "line": 2},
        {"path": "other", "status": "error", "bytes": 0},
    ]
    expected = copy.deepcopy(rows)
    sent = wire.pack_rows(rows, items)  # type: ignore[arg-type]
    assert [row.get("path") for row in json.loads(sent)] == [0, None, "other"]
    back = wire.unpack_rows(sent, [item.get("path") for item in items])  # type: ignore[misc]
    assert back == expected
    assert [list(row) for row in back] == [list(row) for row in expected]  # key order kept


class _Job:
    """A job store as BatchSizes sees it: the mean file size after each batch."""

    def __init__(self, means: list[int | None]) -> None:
        self.means = iter(means)

    def mean_file_size(self, job: str) -> int | None:
        return next(self.means)


def test_batches_grow_blind_then_by_the_files_sizes() -> None:
    from dmp_cli.executor import batches
    from dmp_tasks.routing import BATCH_BYTES, BLIND_BATCH_ITEMS, FIRST_BATCH_ITEMS
    from dmp_tasks.submit import BatchSizes

    small, huge = 4096, 2 * BATCH_BYTES
    means: list[int | None] = [None] * 5 + [small] * 3 + [huge] * 3
    sizes_of = BatchSizes(
        _Job(means),
        "job",
        most=4 * BLIND_BATCH_ITEMS,  # type: ignore[arg-type]
        reread_s=0,
    )
    items = ({"path": f"f{i}"} for i in range(20_000))
    sizes = [
        len(batch) for batch in islice(batches(items, max_bytes=BATCH_BYTES, sizes=sizes_of), 11)
    ]
    # No size known: from the first batch, doubling, to the blind bound and no further.
    blind = [FIRST_BATCH_ITEMS, 2 * FIRST_BATCH_ITEMS, 4 * FIRST_BATCH_ITEMS]
    assert FIRST_BATCH_ITEMS * 4 == BLIND_BATCH_ITEMS
    assert sizes[:5] == [*blind, BLIND_BATCH_ITEMS, BLIND_BATCH_ITEMS]
    # Small files: up to the most a batch holds. Huge ones: one a batch.
    assert sizes[5:8] == [2 * BLIND_BATCH_ITEMS, 4 * BLIND_BATCH_ITEMS, 4 * BLIND_BATCH_ITEMS]
    assert sizes[8:] == [1, 1, 1]


def test_the_batch_sizes_ask_redis_at_most_every_so_often() -> None:
    from dmp_tasks.submit import BatchSizes

    job = _Job([None, 4096])
    sizes_of = BatchSizes(job, "job", most=4096, reread_s=3600)  # type: ignore[arg-type]
    assert [sizes_of()[0] for _ in range(5)] == [256, 512, 1024, 1024, 1024]  # one read: None
    assert next(job.means) == 4096  # not read yet


@pytest.mark.parametrize(
    ("op", "name"),
    [
        ("hash", "dmp.hash_batch"),
        ("check", "dmp.hash_batch"),
        ("head", "dmp.head_batch"),
        ("upload", "dmp.upload_batch"),
        ("download", "dmp.download_batch"),
    ],
)
def test_each_kind_of_work_has_its_task(
    op: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [{"path": "a"}]
    signature = tasks.batch_signature(op, "job", 3, items, {}, True, "/work")
    assert signature.task == name and name in tasks.app.tasks
    assert signature.immutable  # the chord must not pass results into a batch
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(tasks, "run_batch", lambda *args: calls.append(args) or {"files": 1})
    assert tasks.app.tasks[name](*signature.args) == {"files": 1}
    # As text; with no credential where DMP_AUTH is none (dmp_tasks.auth).
    assert calls == [("job", 3, op, wire.pack_items(items), {}, True, "/work", None)]
    assert wire.unpack_items(calls[0][3]) == items


def test_asking_the_vault_is_batched_by_count_alone() -> None:
    """Its rows' bytes are the objects' sizes, not work done: huge objects must not make
    one HEAD a batch."""
    from dmp_tasks.submit import BatchSizes

    sizes_of = BatchSizes(_Job([]), "job", most=32, by_bytes=False)  # type: ignore[arg-type]
    assert [sizes_of() for _ in range(3)] == [(32, 0)] * 3  # and Redis never asked


def test_a_submitter_leaves_the_workers_app_alone() -> None:
    from dmp_tasks.app import app, client_app

    before = app.conf.broker_url
    client = client_app("redis://127.0.0.1:1/5")
    assert client is not app and client.conf.broker_url == "redis://127.0.0.1:1/5"
    assert client.conf.task_serializer == "json" and client.conf.task_acks_late
    assert app.conf.broker_url == before
    assert client_app("redis://127.0.0.1:1/5") is client  # made once per URL
    signature = tasks.batch_signature("upload", "job", 0, [], {}, False, "/w", client)
    assert signature.app is client and signature.task == "dmp.upload_batch"


def test_a_batch_resolves_paths_against_the_jobs_directory(tmp_path: Path) -> None:
    """Workers never change directory: a relative path means what it meant where the job
    was submitted; a directory a worker cannot see fails each file, saying why."""
    (tmp_path / "f").write_bytes(b"x")
    [row] = ops.run_batch(Work("hash", cwd=str(tmp_path)), [{"path": "f"}])
    assert (row["status"], row["path"]) == ("ok", "f")
    [row] = ops.run_batch(Work("hash", cwd=str(tmp_path / "nowhere")), [{"path": "f", "line": 3}])
    assert row["status"] == "unreadable" and row["line"] == 3
    assert row["error"] == f"working directory {tmp_path / 'nowhere'} not usable on this worker"


def test_window_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """DMP_BATCHES_IN_FLIGHT and DMP_FILES_IN_FLIGHT size the window; nonsense is a
    usage error that names the setting."""
    from dmp_cli.errors import UsageError
    from dmp_tasks.executor import BATCHES_IN_FLIGHT, FILES_IN_FLIGHT, _setting

    assert _setting("DMP_BATCHES_IN_FLIGHT", BATCHES_IN_FLIGHT) == BATCHES_IN_FLIGHT
    monkeypatch.setenv("DMP_FILES_IN_FLIGHT", "100000")
    assert _setting("DMP_FILES_IN_FLIGHT", FILES_IN_FLIGHT) == 100_000
    for bad in ("lots", "0"):
        monkeypatch.setenv("DMP_BATCHES_IN_FLIGHT", bad)
        with pytest.raises(UsageError, match="DMP_BATCHES_IN_FLIGHT must"):
            _setting("DMP_BATCHES_IN_FLIGHT", BATCHES_IN_FLIGHT)
