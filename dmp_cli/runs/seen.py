"""The distinct checksums a vault, archive or fetch run has met, each with the first
row's outcome once it is known: a dict in memory while they are few, then an sqlite
table on disk, so that memory stays flat however long the manifest.

The table is sqlite's temporary database: a file in the temporary directory (TMPDIR)
that sqlite removes as soon as it has opened it, so that nothing of it outlives the
process, however it ends; its space is freed by ``close``, or when the table is dropped.
"""

from __future__ import annotations

import os
import sqlite3
import weakref

from dmp_cli.rows import Status

# Beyond this many distinct checksums the table goes to disk (about 100 bytes of memory
# each before: 25 MB at this size). DMP_DEDUPE_SPILL sets another bound, for tests.
SPILL_DISTINCT = 250_000
# The pages sqlite keeps in memory for one spilled table, in KiB (DMP_DEDUPE_CACHE_KIB
# sets another size, for tests: the table reaches its file sooner).
CACHE_KIB = 32 << 10

# A first row's outcome: its status and its error, if any.
Outcome = tuple[str, str | None]

# Statuses are stored as their index here (an unforeseen one as its text), and each
# error-free outcome in memory is one shared tuple.
_STATUSES: tuple[str, ...] = tuple(str(status) for status in Status)
_CODES = {status: code for code, status in enumerate(_STATUSES)}
_PLAIN: dict[str, Outcome] = {status: (status, None) for status in _STATUSES}


def spill_at() -> int:
    """The bound on distinct checksums kept in memory: ``DMP_DEDUPE_SPILL`` if set (a
    positive number), else ``SPILL_DISTINCT``."""
    return _setting("DMP_DEDUPE_SPILL", SPILL_DISTINCT)


def _setting(name: str, default: int) -> int:
    setting = os.environ.get(name, "")
    return int(setting) if setting.isdigit() and int(setting) > 0 else default


class Seen:
    """Checksums (32 raw bytes each), each with an outcome or none yet.

    ``first`` records a checksum as met, saying whether it is new; ``put`` records a
    first row's outcome; ``get`` reads it back. Past ``limit`` checksums (``spill_at()``
    if not given), they move to an sqlite table, answered the same way."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = spill_at() if limit is None else limit
        self._memory: dict[bytes, Outcome | None] | None = {}
        self._db: sqlite3.Connection | None = None
        # Closes the table when this is dropped unclosed (a run that stopped early).
        self._closer: weakref.finalize[[], Seen] | None = None

    @property
    def spilled(self) -> bool:
        """Whether the checksums have gone to disk."""
        return self._db is not None

    def first(self, key: bytes) -> bool:
        """Record ``key`` as met; True if it was not before."""
        memory = self._memory
        if memory is not None:
            if key in memory:
                return False
            memory[key] = None
            if len(memory) > self.limit:
                self._spill()
            return True
        assert self._db is not None
        cursor = self._db.execute("INSERT OR IGNORE INTO seen (digest) VALUES (?)", (key,))
        return cursor.rowcount > 0

    def put(self, key: bytes, status: str, error: str | None) -> bool:
        """Record the outcome of ``key``'s first row (replacing any before); True if
        ``key`` was not met before."""
        outcome = (_PLAIN.get(status) if error is None else None) or (status, error)
        memory = self._memory
        if memory is not None:
            new = key not in memory
            memory[key] = outcome
            if new and len(memory) > self.limit:
                self._spill()
            return new
        assert self._db is not None
        code = _CODES.get(status, status)
        cursor = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)", (key, code, error))
        if cursor.rowcount > 0:
            return True
        self._db.execute(
            "UPDATE seen SET status = ?, error = ? WHERE digest = ?", (code, error, key)
        )
        return False

    def get(self, key: bytes) -> Outcome | None:
        """The outcome recorded for ``key``; None if it has none (or was never met)."""
        if self._memory is not None:
            return self._memory.get(key)
        assert self._db is not None
        found = self._db.execute(
            "SELECT status, error FROM seen WHERE digest = ?", (key,)
        ).fetchone()
        if found is None or found[0] is None:
            return None
        code, error = found
        status = _STATUSES[code] if isinstance(code, int) else str(code)
        return (status, error) if error is not None else _PLAIN.get(status, (status, None))

    def __len__(self) -> int:
        if self._memory is not None:
            return len(self._memory)
        assert self._db is not None
        return int(self._db.execute("SELECT count(*) FROM seen").fetchone()[0])

    def _spill(self) -> None:
        assert self._memory is not None
        # "": a temporary database, its file unlinked by sqlite once open.
        db = sqlite3.connect("", isolation_level=None)
        try:
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE"):
                db.execute(f"PRAGMA {pragma}")
            db.execute(f"PRAGMA cache_size=-{_setting('DMP_DEDUPE_CACHE_KIB', CACHE_KIB)}")
            db.execute(
                "CREATE TABLE seen (digest BLOB PRIMARY KEY, status, error TEXT) WITHOUT ROWID"
            )
            # One transaction for the table's life: nothing of it is kept past the run.
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO seen VALUES (?, ?, ?)",
                (
                    (key, None, None)
                    if outcome is None
                    else (key, _CODES.get(outcome[0], outcome[0]), outcome[1])
                    for key, outcome in sorted(self._memory.items())
                ),
            )
        except BaseException:
            db.close()
            raise
        self._db, self._memory = db, None
        self._closer = weakref.finalize(self, db.close)

    def close(self) -> None:
        """Forget every checksum, freeing the table on disk, if any."""
        if self._closer is not None:
            self._closer()  # closes the table, once
        self._closer, self._db = None, None
        self._memory = {}
