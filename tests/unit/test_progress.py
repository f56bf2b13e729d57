"""The progress bar: bytes and their rate beside the files, or bytes counted where the
job's sizes are known; what was done before a watch began counts, but not in its rate."""

from __future__ import annotations

from dmp_cli.cli.output import Progress

MiB = 1 << 20


def test_what_was_done_before_counts_but_not_in_the_rate() -> None:
    bar = Progress("job j", total=100, unit=" files", initial=(40, 40 * MiB))
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
    bar = Progress("job j", total=10, unit=" files", initial=(2, 2048), bytes_total=10240)
    try:
        bar.update(3, 3072)
        assert (bar._bar.n, bar._bar.total, bar._bar.unit) == (5120, 10240, "B")
        assert "5/10 files" in str(bar._bar)  # the files beside the bytes
        bar.moved(1 << 30)  # bytes as they move are for bars that count files
        assert bar._bar.n == 5120
    finally:
        bar.close()
