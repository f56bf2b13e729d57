"""--create: hash the files the inputs name, in their order, into a manifest (and its
companion of metadata)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO

from dmp_cli.executor import Executor
from dmp_cli.fsutil import AtomicFile
from dmp_cli.inputs import Inputs, Lister, walk_items
from dmp_cli.manifest import FORMATS
from dmp_cli.meta import Recorder
from dmp_cli.options import Options, Work
from dmp_cli.reuse import Earlier, Reuse
from dmp_cli.rows import Item, Row, Status, error_row
from dmp_cli.rules import Command, Verdict
from dmp_cli.runs.files import MetaTarget, abort, commit, manifest_target
from dmp_cli.runs.report import Listener, Report, shown_name
from dmp_cli.runs.totals import expecting
from dmp_cli.runs.updating import PieceRunner, Totals, Unusable, rewrite
from dmp_cli.words import plural


@dataclass
class CreateReport(Report):
    files: int = 0
    bytes: int = 0
    problems: int = 0
    reused: int = 0  # --update: files whose earlier checksum was kept, not read
    reused_bytes: int = 0


@dataclass
class CreateCounts:
    """What a --create has done so far: files hashed, their bytes, inputs that could not
    be used. A run picked up where another left off starts from the counts it saved."""

    files: int = 0
    bytes: int = 0
    problems: int = 0
    reused: int = 0
    reused_bytes: int = 0


def create(
    inputs: Inputs,
    executor: Executor,
    *,
    manifest: str | None = None,
    stream: BinaryIO | None = None,
    fmt: str = "dmp",
    listener: Listener | None = None,
    target: AtomicFile | None = None,
    counts: CreateCounts | None = None,
    lister: Lister | None = None,
    meta: str | MetaTarget | None = None,
    leave_out: Sequence[str] = (),
    earlier: Earlier | None = None,
    rows: bool = True,
) -> CreateReport:
    """Hash the files ``inputs`` name, in their order, and write their manifest lines to
    the file ``manifest`` (made complete or not at all, never over an existing file; or
    ``target``, one already begun) or to ``stream``. If any input cannot be read, no
    manifest file is written. ``counts`` is updated as the run goes; ``lister`` lists
    the directories of the walk (by default the executor's: a detached job's workers,
    else this process). With ``meta``, the companion of metadata is written beside
    (``dmp_cli.meta``), and linked into place with the manifest. Files in ``leave_out``
    (a log being written) are not hashed. With ``inputs.update``, a file unchanged since
    that earlier manifest (``earlier``, if already opened) keeps its checksum there and
    is not read (``dmp_cli.reuse``); the output is byte for byte the same. Without
    ``rows`` (nobody hears each file's row), a --dir walk embedded goes in pieces
    (``dmp_cli.runs.updating``)."""
    hear = listener or Listener()
    if earlier is None and inputs.update:
        earlier = Earlier(inputs.update)  # before anything is written
    reuse: Reuse | None = None
    if target is None and manifest and manifest != "-":
        target = manifest_target(manifest)
    if isinstance(meta, str):
        try:
            meta = MetaTarget.new(meta)
        except BaseException:
            abort(target, None)
            raise
    out = target.stream if target else stream
    line = FORMATS[fmt]
    counts = counts if counts is not None else CreateCounts()
    unmatched: list[tuple[str, str]] = []
    recorder = meta.recorder if meta else None
    try:
        lister = lister or executor.lister(inputs)
        own = [file.temp for file in (target, meta.file if meta else None) if file]
        fallback: Listener | None = hear
        if earlier and not rows and lister is None and target and isinstance(executor, PieceRunner):
            fallback = _in_pieces(
                inputs, executor, earlier, target, meta, fmt, [*own, *leave_out], hear, counts
            )
        recorder = meta.recorder if meta else None
        if fallback is not None:
            reuse = earlier.reuse() if earlier else None
            items = walk_items(
                inputs,
                lambda pattern, why: unmatched.append((pattern, why)),
                lister,
                recorder.met if recorder else None,
            )
            if own or leave_out:
                items = _without(items, [*own, *leave_out])
            if recorder:
                items = _announced(items, recorder)
            if reuse:
                items = _with_old(items, reuse)
            _hash_all(executor, items, meta is not None, fallback, counts, out, line, recorder)
        error = None
        files, problems = counts.files, counts.problems
        if files == 0 and not problems:
            error = f"no files found in {_describe(inputs)}"
        else:
            for pattern, reason in unmatched:  # a warning, unless nothing is found at all
                hear.on_problem(pattern, f"warning: {reason}")
            if problems:
                where = (
                    "no manifest written" if target or not files else "the manifest is incomplete"
                )
                error = f"{plural(problems, 'input', 'inputs')} could not be read; {where}"
        if error is None:
            commit(target, meta)
    except BaseException:
        abort(target, meta)
        raise
    finally:
        if reuse:
            reuse.close()
    if error is not None:
        abort(target, meta)
    verdict = Verdict(1 if error else 0, problems)
    return CreateReport(
        Command.CREATE,
        verdict,
        error,
        files,
        counts.bytes,
        problems,
        counts.reused,
        counts.reused_bytes,
    )


def _hash_all(
    executor: Executor,
    items: Iterator[Item],
    meta: bool,
    hear: Listener,
    counts: CreateCounts,
    out: BinaryIO | None,
    line: Callable[[str, str], bytes],
    recorder: Recorder | None,
) -> None:
    """Hash the items in the executor, in order, into the manifest and companion."""
    counted, done = expecting(hear, items)
    work = Work(Command.CREATE.operation, options=Options(meta=True).to_json() if meta else None)
    for row in executor.map(work, counted):
        if done:
            done(row)
        hear.on_progress(1, row.get("bytes", 0))
        if recorder:
            if row["status"] == Status.OK:
                row = _recorded(row, recorder)
            else:
                recorder.row(None)
        if row["status"] != Status.OK:
            counts.problems += 1
            hear.on_problem(str(row["path"]), str(row.get("error")))
            continue
        counts.files += 1
        counts.bytes += row["bytes"]
        if row.get("reused"):
            counts.reused += 1
            counts.reused_bytes += row["bytes"]
        if out is not None:
            data = line(row["digest"], row["path"])
            out.write(data)
            if recorder:
                recorder.manifest_bytes(data)
        hear.on_row(row)


def _in_pieces(
    inputs: Inputs,
    executor: PieceRunner,
    earlier: Earlier,
    target: AtomicFile,
    meta: MetaTarget | None,
    fmt: str,
    own: list[str],
    hear: Listener,
    counts: CreateCounts,
) -> Listener | None:
    """A --dir walk made in pieces (``dmp_cli.runs.updating``), if it can be: None when
    done, else (nothing written, or what was written taken back) the listener for the
    general way, which does not tell again the problems already told."""
    if (
        earlier.version < 2
        or inputs.patterns
        or inputs.files_from is not None
        or len(inputs.dirs) != 1
        or counts != CreateCounts()
        or (meta is not None and meta.recorder.records)
    ):
        return hear
    totals = Totals()
    recorder = meta.recorder if meta else None
    try:
        rewrite(
            earlier,
            inputs.dirs[0],
            inputs.recursive,
            executor,
            target.stream,
            recorder,
            fmt,
            own,
            hear,
            totals,
        )
    except Unusable:
        pass
    else:
        counts.files, counts.bytes, counts.problems = totals.files, totals.bytes, totals.problems
        counts.reused, counts.reused_bytes = totals.reused, totals.reused_bytes
        return None
    for file in (target, meta.file if meta else None):
        if file is not None:
            file.stream.seek(0)
            file.stream.truncate()
    if meta is not None:
        meta.recorder = Recorder(meta.file.stream)
    if totals.items:
        hear.on_progress(-totals.items, -totals.bytes)  # counted again
    told = totals.problems

    def on_problem(path: str, why: str) -> None:
        nonlocal told
        if told:
            told -= 1
        else:
            hear.on_problem(path, why)

    return replace(hear, on_problem=on_problem)


def _announced(items: Iterator[Item], recorder: Recorder) -> Iterator[Item]:
    for item in items:
        recorder.file()
        yield item


def _with_old(items: Iterator[Item], reuse: Reuse) -> Iterator[Item]:
    """Each file with what the earlier manifest holds of it, if anything."""
    for item in items:
        if "problem" not in item:
            old = reuse.find(item["path"])
            if old is not None:
                item["old"] = old
        yield item


def _recorded(row: Row, recorder: Recorder) -> Row:
    """A hashed file's row, once its metadata is recorded; a failed row if it cannot be
    looked at any more (gone since it was hashed)."""
    try:
        recorder.row(row["path"], row.pop("stat", None))
    except OSError as exc:
        return error_row(row, exc)
    return row


def _without(items: Iterator[Item], files: list[str]) -> Iterator[Item]:
    """Leave out files that a walk finds but that are the run's own (the manifest's
    temporary file, a log being written), which would be stale when done."""
    names = {os.path.basename(path): path for path in files}
    endings = tuple(names)
    for item in items:
        path = item["path"]
        if path.endswith(endings):  # a cheap test first: a walk passes it a file at a time
            own = names.get(os.path.basename(path))
            if own is not None and _same_file(path, own):
                continue
        yield item


def _same_file(path: str, other: str) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:  # gone meanwhile: hashing it will report that
        return False


def _describe(inputs: Inputs, limit: int = 3) -> str:
    """The inputs, quoted, for a one-line message: the first few, then how many more."""
    names = [
        shown_name(name) for name in (*inputs.patterns, *inputs.dirs, inputs.files_from) if name
    ]
    if inputs.files_from == "-":
        names[-1] = "standard input"
    if not names:
        return "the given inputs"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
