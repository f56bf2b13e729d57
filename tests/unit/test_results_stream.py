"""stdout for results (``ResultsStream``): collected after the stream under it was closed (as
a run ended by ^C leaves it), it flushes nothing and says nothing."""

from __future__ import annotations

import gc
import io
import sys
from typing import Any

import pytest

from dmp_cli.stdio import ResultsStream, WriteError


def test_collected_after_its_stream_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    stream = io.BufferedWriter(io.BytesIO())
    results = ResultsStream(stream)
    results.write(b"a: OK\n")
    stream.close()
    del results
    gc.collect()
    assert unraisable == []


class _Disk(io.RawIOBase):
    full = True

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.full:
            raise OSError(28, "No space left on device")
        return len(data)


def test_a_failed_write_says_why() -> None:
    disk = _Disk()
    results = ResultsStream(io.BufferedWriter(disk))
    results.write(b"a: OK\n")
    with pytest.raises(WriteError, match=r"^write error: No space left on device$"):
        results.flush()
    disk.full = False  # for the flush as the writer is collected


def test_nothing_to_write_touches_nothing() -> None:
    results = ResultsStream(io.BufferedWriter(_Disk(), buffer_size=1))
    assert results.write(b"") == 0
