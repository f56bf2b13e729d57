"""The Python API: create, read and check manifests from another program."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dmp_cli.check import CheckCounts
from dmp_cli.check import check_manifest as _check_rows
from dmp_cli.errors import InputError, ManifestError
from dmp_cli.executor import Executor, LocalExecutor
from dmp_cli.fsutil import AtomicFile
from dmp_cli.inputs import Inputs, expand
from dmp_cli.manifest import FORMATS, Entry, read_entries
from dmp_cli.ops import Row


@dataclass
class CheckResult:
    """The counts of a check and the rows that were not OK."""

    counts: CheckCounts
    failures: list[Row] = field(default_factory=list)
    strict: bool = False
    ignore_missing: bool = False

    def ok(self) -> bool:
        return self.counts.ok(strict=self.strict, ignore_missing=self.ignore_missing)


def create_manifest(
    paths: Iterable[str] = (),
    *,
    dirs: Iterable[str] = (),
    recursive: bool = False,
    manifest: str | None = None,
    fmt: str = "dmp",
    jobs: int | None = None,
    executor: Executor | None = None,
) -> list[Entry]:
    """Hash files (names or patterns) and the files in ``dirs``; write ``manifest`` if given.

    Raises InputError if any input cannot be read or nothing is found; the manifest file
    is then not written. An existing manifest file is never replaced.
    """
    if manifest is not None and os.path.lexists(manifest):
        raise ManifestError(f"{manifest}: manifest already exists")
    inputs = Inputs(list(paths), list(dirs), recursive)
    problems: list[str] = []
    items = expand(inputs, lambda p, r: problems.append(f"{p}: {r}"), lambda p, r: None)
    owned = executor is None
    runner = executor or LocalExecutor(jobs)
    try:
        entries = []
        for row in runner.map("hash", items, {}):
            if row["status"] == "ok":
                entries.append(Entry(row["digest"], row["path"]))
            else:
                problems.append(f"{row['path']}: {row['error']}")
    finally:
        if owned:
            runner.close()
    if problems:
        raise InputError("; ".join(problems))
    if not entries:
        raise InputError("no files found in the given inputs")
    if manifest is not None:
        try:
            target = AtomicFile(manifest)
        except OSError as exc:
            raise ManifestError(
                f"{manifest}: cannot create manifest: {exc.strerror or exc}"
            ) from exc
        with target:
            for entry in entries:
                target.stream.write(FORMATS[fmt](entry.digest, entry.path))
            target.commit()
    return entries


def read_manifest(manifest: str) -> Iterator[Entry]:
    """The entries of a manifest in any form dmp or sha256sum writes, streamed."""
    return read_entries(manifest)


def check_manifest(
    manifest: str,
    *,
    jobs: int | None = None,
    strict: bool = False,
    ignore_missing: bool = False,
    executor: Executor | None = None,
) -> CheckResult:
    """Verify every file a manifest names; ``result.ok()`` as sha256sum's exit status."""
    result = CheckResult(CheckCounts(), strict=strict, ignore_missing=ignore_missing)
    owned = executor is None
    runner = executor or LocalExecutor(jobs)
    try:
        for row in _check_rows(manifest, runner):
            kind = result.counts.add(row, ignore_missing)
            if kind in ("failed", "unreadable"):
                result.failures.append(row)
    finally:
        if owned:
            runner.close()
    return result
