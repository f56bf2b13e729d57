"""Progress and its words: the bar counts bytes where the bytes to do are known (its
ETA by bytes), else files with the bytes and their rate alongside; a run tells the bar
its totals once its input has been read to its end; what was done before a watch began
counts, but not in its rate; summaries end with the time taken and the rates."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from tqdm import tqdm

from dmp_cli import runs
from dmp_cli.cli.output import Pace
from dmp_cli.cli.progress import Bar
from dmp_cli.executor import LocalExecutor
from dmp_cli.inputs import Inputs
from dmp_cli.options import Options
from dmp_cli.rules import Command
from dmp_cli.settings import Settings
from dmp_cli.words import duration, pace

MiB = 1 << 20


def _eta(bar: Bar, elapsed: float, rate: float) -> str:
    """The ETA the bar draws, at a given elapsed time and rate (no clock involved)."""
    meter = {**bar._bar.format_dict, "elapsed": elapsed, "rate": rate}
    text = tqdm.format_meter(**meter)
    return text.split("<", 1)[1].split(",", 1)[0]


def test_what_was_done_before_counts_but_not_in_the_rate() -> None:
    bar = Bar("job j", total=100, unit=" files", initial=(40, 40 * MiB))
    try:
        assert bar._bar.n == 40  # the bar starts where the job is
        bar._start -= 2.0  # two seconds into the watch
        bar.update(10, 10 * MiB)
        done, rate = bar._bytes_text().split(", ")
        assert done == "50.0 MiB"
        assert rate.endswith(" MiB/s") and 4.0 <= float(rate.split()[0]) <= 5.1  # not 25
    finally:
        bar.close()


def test_with_the_sizes_known_the_bar_counts_bytes() -> None:
    bar = Bar("job j", total=10, unit=" files", initial=(2, 2048), bytes_total=10240)
    try:
        bar.update(3, 3072)
        assert (bar._bar.n, bar._bar.total, bar._bar.unit) == (5120, 10240, "B")
        assert "5/10 files" in str(bar._bar)  # the files beside the bytes
        # 5 KiB to go at 1 KiB/s: 5 s, however many files are left
        assert _eta(bar, elapsed=5, rate=1024) == "00:05"
        bar.moved(6144)  # bytes as they move (a huge file) advance it before it is done
        assert bar._bar.n == 2048 + 6144
    finally:
        bar.close()


def test_the_totals_once_known_turn_a_bar_of_files_into_one_of_bytes() -> None:
    bar = Bar("hashing", total=None, unit=" files")
    try:
        bar.update(1, 1 * MiB)  # a big file first
        bar.update(1, 1024)
        started = bar._bar.start_t
        assert (bar._bar.unit, bar._bar.total) == (" files", None)
        bar.expect(10, 11 * MiB)  # the walk is over: 10 files, 11 MiB
        assert (bar._bar.unit, bar._bar.total, bar._bar.n) == ("B", 11 * MiB, MiB + 1024)
        assert bar._bar.start_t == started  # the same run: its elapsed time goes on
        assert "2/10 files" in str(bar._bar)
        # By bytes: 10 MiB to go at 1 MiB/s is 10 s; by files (8 left, 2 done in 1 s)
        # it would have been 4 s.
        assert _eta(bar, elapsed=1, rate=MiB) == "00:09"
        bar.expect(10, 12 * MiB)  # a file that grew: the total follows
        assert bar._bar.total == 12 * MiB
    finally:
        bar.close()


def test_without_every_size_the_bar_counts_files_to_their_total() -> None:
    bar = Bar("checking", total=None, unit=" files")
    try:
        bar.update(2, 5 * MiB)
        bar.expect(8, None)
        assert (bar._bar.unit, bar._bar.total, bar._bar.n) == (" files", 8, 2)
        assert _eta(bar, elapsed=2, rate=1.0) == "00:06"  # by files: all there is
    finally:
        bar.close()


# ---------------------------------------------------------------- a run's totals


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name, size in (("a", 10), ("b", 2000), ("c", 0)):
        (tmp_path / "data" / name).write_bytes(b"x" * size)
    return tmp_path


def _totals(run: Callable[[LocalExecutor, runs.Listener], object]) -> list[tuple[int, int | None]]:
    """What ``run`` told its listener's ``on_total``, in order."""
    heard: list[tuple[int, int | None]] = []
    listener = runs.Listener(on_total=lambda files, nbytes: heard.append((files, nbytes)))
    with LocalExecutor(jobs=1) as executor:
        run(executor, listener)
    return heard


def test_a_walk_that_knows_its_sizes_tells_files_and_bytes(tree: Path) -> None:
    heard = _totals(
        lambda executor, listener: runs.create(
            Inputs(patterns=["data/*", "gone"]), executor, listener=listener
        )
    )
    assert heard == [(4, 2010)]  # 'gone' is counted as done, with no bytes


def test_a_walk_of_directories_knows_no_sizes(tree: Path) -> None:
    heard = _totals(
        lambda executor, listener: runs.create(Inputs(dirs=["data"]), executor, listener=listener)
    )
    assert heard == [(3, None)]  # no stat a file: files only


def test_a_check_knows_its_lines_not_their_sizes(tree: Path) -> None:
    (tree / "m").write_text(f"{sha(b'x' * 10)}  data/a\nnot a line\n{sha(b'')}  data/c\n")
    heard = _totals(lambda executor, listener: runs.check("m", executor, listener=listener))
    assert heard == [(3, None)]  # the improperly formatted line counts as done


def test_an_archive_expects_the_bytes_it_will_move(tree: Path) -> None:
    """The plan's sizes, once the manifest is read; a file already archived moves
    none of its bytes, and the bytes expected drop by its size."""
    (tree / "vault").mkdir()
    entries = [("data/a", 10), ("data/b", 2000), ("data/c", 0)]
    (tree / "m").write_text(
        "".join(f"{sha(b'x' * n)}  {p}\n" for p, n in entries) + f"{sha(b'x' * 10)}  copy\n"
    )
    settings = Settings(vault=f"file://{tree / 'vault'}", jobs=1)
    spec, options = runs.transfer_stores(Command.ARCHIVE, settings, Options())

    def archive(executor: LocalExecutor, listener: runs.Listener) -> None:
        runs.archive("m", executor, spec, options, listener)

    first = _totals(archive)
    assert first[0] == (4, 2010) and first[-1] == (4, 2010)  # a copy moves nothing
    again = _totals(archive)
    assert again[0][0] == 4 and again[-1] == (4, 0)  # all archived: nothing to move


# ---------------------------------------------------------------- words


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.042, "0.04 s"), (4.25, "4.2 s"), (184, "3m 04s"), (7384, "2h 03m 04s")],
    ids=["under-a-second", "seconds", "minutes", "hours"],
)
def test_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_a_summary_ends_with_the_time_and_the_rates() -> None:
    assert pace(2.0, 17921, 3 << 30) == "in 2.0 s (1.5 GiB/s, 8,960 files/s)"
    assert pace(4.0, 10) == "in 4.0 s (2.5 files/s)"  # nothing read or moved: files only
    assert Pace(0.0, 5, 100).fields() == {  # too quick for the clock: a millisecond
        "seconds": 0.0,
        "files_per_second": 5000.0,
        "bytes_per_second": 100000,
    }
    assert "bytes_per_second" not in Pace(1.0, 5).fields()
