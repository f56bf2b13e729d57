"""Progress totals: what a run expects to do, told to ``Listener.on_total`` as it
learns more."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator

from dmp_cli.rows import Item, Row
from dmp_cli.runs.report import Listener


class Expected:
    """What a run expects to do, told to ``Listener.on_total``: the items, counted as
    the executor takes them, and their bytes where every size is known (a file's
    ``size``; a copy of content already named, or an input that cannot be used, moves
    none). Once the input is read to its end, each row that read or moved other than
    its item's size corrects the bytes expected, so that a bar ends full. Rows come
    back in the items' order, so the sizes in flight are a queue (as long as the
    executor's window)."""

    def __init__(self, on_total: Callable[[int, int | None], None]) -> None:
        self._tell = on_total
        self.files = 0
        self.bytes: int | None = 0
        self._known = False  # the input read to its end
        self._sizes: deque[int] = deque()

    def items(self, items: Iterable[Item], more_files: bool = True) -> Iterator[Item]:
        """``items``, counted; ``more_files=False`` for items that stand in for rows
        not counted (an archive's retries), whose bytes are still to move."""
        for item in items:
            size = _expected_size(item)
            self._sizes.append(size or 0)
            if more_files:
                self.files += 1
            if self.bytes is not None:
                self.bytes = None if size is None else self.bytes + size
                if self._known and size:
                    self._tell(self.files, self.bytes)
            yield item
        if not self._known:
            self._known = True
            self._tell(self.files, self.bytes)

    def done(self, row: Row) -> None:
        """The next item's row is back (in order): correct the bytes expected."""
        size = self._sizes.popleft() if self._sizes else 0
        nbytes = row.get("bytes") or 0
        if self.bytes is not None and nbytes != size:
            self.bytes += nbytes - size
            if self._known:
                self._tell(self.files, self.bytes)


def _expected_size(item: Item) -> int | None:
    if item.get("same") or "problem" in item:
        return 0
    size = item.get("size")
    return None if size is None else int(size)


def expecting(
    hear: Listener, items: Iterable[Item]
) -> tuple[Iterable[Item], Callable[[Row], None] | None]:
    """The items, counted for ``hear.on_total`` if it listens, and what to call with
    each row as it comes back (None if nobody listens: a call a file saved)."""
    if hear.on_total is None:
        return items, None
    expected = Expected(hear.on_total)
    return expected.items(items), expected.done
