"""Whole runs of the five commands: create, check, vault, archive, fetch.

Each takes its inputs, an executor and a ``Listener`` (callbacks for each file's row,
for progress, for bytes as they move), and returns a report with one verdict: its exit
status, judged by the table in ``dmp_cli.rules``. The CLI, the Python API and jobs on
the fleet all call these; none of them prints (``Listener`` is how a caller hears).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from itertools import chain
from typing import BinaryIO, Protocol

from dmp_cli.check import CheckCounts, check_items
from dmp_cli.digest import digest_stream
from dmp_cli.errors import ManifestError, ObjectExists, RunStopped, StoreError, UsageError
from dmp_cli.executor import Executor, default_jobs, io_threads_for
from dmp_cli.fsutil import AtomicFile
from dmp_cli.inputs import Inputs, Lister, walk_items
from dmp_cli.job_record import DetachedJob
from dmp_cli.manifest import FORMATS, open_manifest, parse_lines, parsed
from dmp_cli.meta import Companion, Recorder, differences, get_name, open_companion
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.plan import Plan, Tally, retry_items
from dmp_cli.quoting import quote_name
from dmp_cli.restore import TreeCounts, owners_settable, restore_tree
from dmp_cli.retry import with_retries
from dmp_cli.rows import Item, Row, Status, error_row
from dmp_cli.rules import Command, Verdict, judge
from dmp_cli.settings import Settings
from dmp_cli.stdio import stdin_closed
from dmp_cli.store import StorePool
from dmp_cli.words import plural


def _nothing(*_: object) -> None:
    pass


@dataclass
class Listener:
    """How a caller hears of a run as it goes; every callback is optional."""

    # A file's outcome (a --vault, --archive or --fetch row with its copies resolved;
    # for --check every line but those --ignore-missing skips; for --create the files
    # hashed). Called in manifest (or input) order.
    on_row: Callable[[Row], None] = _nothing
    # Each item done, with the bytes it read or moved: for a progress bar.
    on_progress: Callable[[int, int], None] = _nothing
    # Bytes as they move, from transfer threads, where the executor can tell.
    on_bytes: Callable[[int], None] | None = None
    # --create: an input that cannot be used (path, reason), and patterns that matched
    # nothing ("warning: ..."), said once the walk is over.
    on_problem: Callable[[str, str], None] = _nothing
    # --check with a companion: an entry whose metadata differs (path, differences);
    # --fetch with one: a link or directory that could not be restored goes to on_problem.
    on_meta: Callable[[str, list[str]], None] = _nothing
    # The whole run's work as now expected (items, and their bytes where every item's
    # size is known, else None), for a progress bar's totals: told once the input has
    # been read to its end, then again whenever that changes (a file already archived
    # moves none of its bytes). Items are counted as ``on_progress`` counts them.
    on_total: Callable[[int, int | None], None] | None = None


@dataclass
class Report:
    command: Command
    verdict: Verdict
    error: str | None = None  # why the run failed as a whole, in one line (no file named)

    @property
    def status(self) -> int:
        """The run's exit status: 0 success, 1 a failure."""
        return self.verdict.status


@dataclass
class CreateReport(Report):
    files: int = 0
    bytes: int = 0
    problems: int = 0


@dataclass
class CheckReport(Report):
    counts: CheckCounts = field(default_factory=CheckCounts)
    metadata: int | None = None  # with a companion: entries whose metadata differs


@dataclass
class CompanionOutcome:
    """What --fetch restored of a companion beyond the files, or how --archive stored
    the companion itself."""

    path: str
    tree: TreeCounts | None = None
    status: str | None = None  # --archive: uploaded, skipped, would-upload, failed
    digest: str | None = None
    error: str | None = None  # --archive: why it failed
    bytes: int = 0
    checksum_file: str | None = None  # --archive: the one-line manifest naming it


@dataclass
class TransferReport(Report):
    plan: Plan = field(default_factory=Plan)
    tally: Tally = field(default_factory=Tally)
    dry_run: bool = False
    companion: CompanionOutcome | None = None


def shown_name(path: str) -> str:
    """A file name as messages show it: quoted as coreutils quotes it."""
    return quote_name(path).decode("utf-8", "surrogateescape")


def shown_manifest(path: str) -> str:
    # sha256sum calls its stdin "standard input" in messages (quoted: it has a space)
    return shown_name("standard input" if path == "-" else path)


class _Expected:
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


def _expecting(
    hear: Listener, items: Iterable[Item]
) -> tuple[Iterable[Item], Callable[[Row], None] | None]:
    """The items, counted for ``hear.on_total`` if it listens, and what to call with
    each row as it comes back (None if nobody listens: a call a file saved)."""
    if hear.on_total is None:
        return items, None
    expected = _Expected(hear.on_total)
    return expected.items(items), expected.done


# ---------------------------------------------------------------- create


@dataclass
class CreateCounts:
    """What a --create has done so far: files hashed, their bytes, inputs that could not
    be used. A run picked up where another left off starts from the counts it saved."""

    files: int = 0
    bytes: int = 0
    problems: int = 0


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
) -> CreateReport:
    """Hash the files ``inputs`` name, in their order, and write their manifest lines to
    the file ``manifest`` (made complete or not at all, never over an existing file; or
    ``target``, one already begun) or to ``stream``. If any input cannot be read, no
    manifest file is written. ``counts`` is updated as the run goes; ``lister`` lists
    the directories of the walk (by default the executor's: a detached job's workers,
    else this process). With ``meta``, the companion of metadata is written beside
    (``dmp_cli.meta``), and linked into place with the manifest. Files in ``leave_out``
    (a log being written) are not hashed."""
    hear = listener or Listener()
    if target is None and manifest and manifest != "-":
        target = manifest_target(manifest)
    if isinstance(meta, str):
        try:
            meta = MetaTarget.new(meta)
        except BaseException:
            _abort(target, None)
            raise
    out = target.stream if target else stream
    line = FORMATS[fmt]
    counts = counts if counts is not None else CreateCounts()
    unmatched: list[tuple[str, str]] = []
    recorder = meta.recorder if meta else None
    try:
        lister = lister or executor.lister(inputs)
        items = walk_items(
            inputs,
            lambda pattern, why: unmatched.append((pattern, why)),
            lister,
            recorder.met if recorder else None,
        )
        own = [file.temp for file in (target, meta.file if meta else None) if file]
        if own or leave_out:
            items = _without(items, [*own, *leave_out])
        if recorder:
            items = _announced(items, recorder)
        counted, done = _expecting(hear, items)
        work = Work(
            Command.CREATE.operation, options=Options(meta=True).to_json() if meta else None
        )
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
            if out is not None:
                data = line(row["digest"], row["path"])
                out.write(data)
                if recorder:
                    recorder.manifest_bytes(data)
            hear.on_row(row)
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
            _commit(target, meta)
    except BaseException:
        _abort(target, meta)
        raise
    if error is not None:
        _abort(target, meta)
    verdict = Verdict(1 if error else 0, problems)
    return CreateReport(Command.CREATE, verdict, error, files, counts.bytes, problems)


@dataclass
class MetaTarget:
    """A companion of metadata being written: its file, and what writes it."""

    file: AtomicFile
    recorder: Recorder

    @classmethod
    def new(cls, path: str) -> MetaTarget:
        file = manifest_target(path, "metadata file")
        return cls(file, Recorder(file.stream))


def _announced(items: Iterator[Item], recorder: Recorder) -> Iterator[Item]:
    for item in items:
        recorder.file()
        yield item


def _recorded(row: Row, recorder: Recorder) -> Row:
    """A hashed file's row, once its metadata is recorded; a failed row if it cannot be
    looked at any more (gone since it was hashed)."""
    try:
        recorder.row(row["path"], row.pop("stat", None))
    except OSError as exc:
        return error_row(row, exc)
    return row


def _commit(target: AtomicFile | None, meta: MetaTarget | None) -> None:
    """The companion first, so that a manifest in place has its companion beside it."""
    if meta:
        meta.recorder.finish()
        meta.file.commit()
    if target:
        try:
            target.commit()
        except BaseException:
            if meta:
                with contextlib.suppress(OSError):
                    os.unlink(meta.file.target)
            raise


def _abort(target: AtomicFile | None, meta: MetaTarget | None) -> None:
    for file in (target, meta.file if meta else None):
        if file:
            file.abort()


def manifest_target(path: str, what: str = "manifest") -> AtomicFile:
    """A new manifest file, written beside its name and linked into place when complete;
    an existing one is an error, left untouched."""
    name = shown_name(path)
    if os.path.lexists(path):
        raise ManifestError(
            f"{name}: {what} already exists (dmp never overwrites one; "
            "remove it or choose another name)"
        )
    try:
        return AtomicFile(path)
    except OSError as exc:
        raise ManifestError(f"{name}: cannot create {what}: {exc.strerror or exc}") from exc


def _without(items: Iterator[Item], files: list[str]) -> Iterator[Item]:
    """Leave out files that a walk finds but that are the run's own (the manifest's
    temporary file, a log being written), which would be stale when done."""
    names = {os.path.basename(path): path for path in files}
    for item in items:
        path = item["path"]
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


# ---------------------------------------------------------------- check


def check(
    manifest: str,
    executor: Executor,
    *,
    strict: bool = False,
    ignore_missing: bool = False,
    listener: Listener | None = None,
    stdin: bool = True,
    meta: str | None = None,
) -> CheckReport:
    """Verify every file ``manifest`` names (``-`` is stdin) as `sha256sum --check` does:
    every line is checked, whatever fails before it. An entry named ``-`` in a manifest
    file is what is left of stdin, read when its line comes; without ``stdin`` (a detached
    job has none), such an entry cannot be read. With ``meta``, a companion file, the
    metadata it records is compared too, after the files (``Listener.on_meta``)."""
    hear = listener or Listener()
    shown = shown_manifest(manifest)
    counts = CheckCounts()
    stream = open_manifest(manifest, shown)
    companion = _companion(meta, manifest, shown, stream)
    try:
        with stream:
            items, done = _expecting(hear, _check_items(manifest, stream, stdin))
            for row in executor.map(Work(Command.CHECK.operation), items):
                if done:
                    done(row)
                hear.on_progress(1, row.get("bytes", 0))
                if counts.add(row, ignore_missing) != "ignored":
                    hear.on_row(row)
    except ManifestError as exc:  # the manifest could be opened but not read to the end
        reason = str(exc).rpartition(": ")[2]
        raise ManifestError(f"{shown}: {reason}") from None
    verdict = judge(Command.CHECK, counts.statuses(), strict=strict, ignore_missing=ignore_missing)
    differ = None
    if companion is not None:
        differ = _compare(companion, hear)
        if differ:
            verdict = replace(verdict, status=1, failed=verdict.failed + differ)
    error = None
    if counts.properly_formatted == 0:
        error = f"{shown}: no properly formatted checksum lines found"
    elif ignore_missing and counts.matched == 0:
        error = f"{shown}: no file was verified"
    return CheckReport(Command.CHECK, verdict, error, counts, differ)


def _companion(meta: str | None, manifest: str, shown: str, stream: BinaryIO) -> Companion | None:
    """The companion ``meta`` of ``manifest``, verified against it before anything is
    done; the manifest's stream is closed if it is refused."""
    if meta is None:
        return None
    if manifest == "-":
        stream.close()
        raise UsageError("a companion file of metadata needs the manifest in a file, not stdin")
    try:
        return open_companion(meta, manifest, shown_name(meta), shown)
    except BaseException:
        stream.close()
        raise


def _compare(companion: Companion, hear: Listener) -> int:
    """Each recorded entry, link and directory against what is there now; how many
    differ. Owners are compared where a restore sets them (as root)."""
    owners = owners_settable()
    differ = 0
    for value in companion.records():
        found = differences(value, owners)
        if found:
            differ += 1
            hear.on_meta(get_name(value, "path"), found)
    return differ


def _check_items(manifest: str, stream: BinaryIO, stdin: bool) -> Iterator[Item]:
    entries = parsed(stream)
    if manifest == "-":
        return check_items(entries, stdin_manifest=True)
    return _with_stdin_read(check_items(entries), stdin)


def _with_stdin_read(items: Iterator[Item], stdin: bool) -> Iterator[Item]:
    """An entry named '-' in a manifest file is stdin, as in sha256sum: hashed here, in
    order, since no other process (a pool's, a worker's) reads this one's stdin; the item
    carries the digest, or the error, to the check operation."""
    for item in items:
        if item.get("path") == "-":
            try:
                if not stdin or stdin_closed():  # none, or closed (`<&-`)
                    raise OSError(errno.EBADF, os.strerror(errno.EBADF))
                item["stdin"] = list(digest_stream(sys.stdin.buffer))
            except OSError as exc:
                item["stdin_error"] = [exc.errno or errno.EIO, exc.strerror or str(exc)]
        yield item


# ---------------------------------------------------------------- vault, archive, fetch


def transfer(
    command: Command,
    manifest: str,
    executor: Executor,
    spec: StoreSpec,
    options: Options | None = None,
    listener: Listener | None = None,
    detached: bool = False,
    meta: str | None = None,
) -> TransferReport:
    """--vault (ask the vault about each checksum, once per checksum), --archive (upload
    each checksum the vault lacks, or to another destination: a rerun uploads nothing) or
    --fetch (bring each file back, verified): the per-file rows in manifest order, a later
    copy of content answered from the first one's row (unless ``detached``: a job's
    coordinator, which can be taken over, asks about each entry on its own), then the
    verdict. With ``meta``, a companion file of metadata (checked against the manifest
    first): --fetch restores what it records, --archive stores it in the vault too."""
    hear = listener or Listener()
    options = (options or Options()).validated(spec.validated())
    shown = shown_manifest(manifest)
    stream = open_manifest(manifest, shown)
    companion = _companion(meta, manifest, shown, stream)
    plan = _plan(command, options, detached=detached)
    with stream:
        preflight(executor.stores, spec)
        items = plan.items(parse_lines(stream))
        if companion is not None and command is Command.FETCH:
            items = companion.attach(items)
        tally = _execute(command, plan, items, executor, spec, options, hear)
    if plan.entries == 0:
        raise ManifestError(f"{shown}: no properly formatted SHA256 checksum lines found")
    counts = {**tally.counts, Status.MISFORMATTED: plan.misformatted}
    verdict = judge(command, counts, strict=options.strict)
    outcome = None
    if companion is not None and command is Command.FETCH:
        outcome = CompanionOutcome(companion.path)
        if not options.dry_run:
            outcome.tree = restore_tree(companion.records(), options, hear.on_problem)
            if outcome.tree.failed:
                verdict = replace(verdict, status=1, failed=verdict.failed + outcome.tree.failed)
    elif companion is not None and command is Command.ARCHIVE:
        outcome = archive_companion(companion.path, executor.stores, spec, options)
        if outcome.status == "failed" and detached:  # the job fails with its error
            raise StoreError(outcome.error or "the companion was not archived")
        if outcome.status == "failed":
            verdict = replace(verdict, status=1, failed=verdict.failed + 1)
    return TransferReport(command, verdict, None, plan, tally, options.dry_run, outcome)


def archive_companion(
    path: str, stores: StorePool, spec: StoreSpec, options: Options
) -> CompanionOutcome:
    """Store a companion file in the vault under its sha256, like any file, and write
    ``PATH.sha256`` beside it: a one-line manifest of it, which --fetch brings it back
    with (and sha256sum checks). Its requests are tried again as a file's are; if they
    fail all the same, the outcome says so ("failed", and why), for the run to say before
    its summary, which stays its last line."""
    with open(path, "rb") as stream:
        digest, size = digest_stream(stream)
    outcome = CompanionOutcome(path, digest=digest, checksum_file=path + ".sha256")
    vault = stores.vault(spec)
    try:
        if options.dry_run:
            there = with_retries(lambda: vault.head(digest)) is not None
            outcome.status, outcome.bytes = ("skipped", 0) if there else ("would-upload", size)
            return outcome
        try:
            outcome.bytes = with_retries(
                lambda: vault.put_file(digest, path, size, None, if_absent=True)
            )
            outcome.status = "uploaded"
        except ObjectExists:
            outcome.status = "skipped"
    except StoreError as exc:
        outcome.status, outcome.error = "failed", str(exc)
        return outcome
    _write_checksum_file(outcome.checksum_file or "", FORMATS["dmp"](digest, path))
    return outcome


def _write_checksum_file(target: str, line: bytes) -> None:
    """Write ``target`` holding ``line``, unless it already does; another content there
    is an error, left untouched."""
    try:
        with open(target, "rb") as stream:
            if stream.read() == line:
                return
        raise ManifestError(
            f"{shown_name(target)}: already exists with another content; left untouched"
        )
    except FileNotFoundError:
        pass
    with AtomicFile(target) as file:
        file.stream.write(line)
        file.commit()


vault = partial(transfer, Command.VAULT)
archive = partial(transfer, Command.ARCHIVE)
fetch = partial(transfer, Command.FETCH)


def transfer_stores(
    command: Command, settings: Settings, options: Options, path: str | None = None
) -> tuple[StoreSpec, Options]:
    """Where the stores of a vault command are (the settings, and --path for an archive)
    and what it does, validated: a bad URL or combination is a usage error now."""
    dest, mode = None, None
    if command is Command.ARCHIVE and path:
        dest, mode = path, "path"
    elif command is Command.ARCHIVE and settings.archive_default:
        dest, mode = settings.archive_default, "default"
    spec = StoreSpec(
        vault=settings.vault,
        dest=dest,
        profile=settings.profile,
        region=settings.region,
        endpoint_url=settings.endpoint_url,
        conditional_put=settings.conditional_put,
        multipart_threshold=settings.multipart_threshold,
        multipart_chunksize=settings.multipart_chunksize,
        # One connection per transfer thread (the embedded executor's rule).
        concurrency=io_threads_for(settings.jobs or default_jobs()),
    ).validated()
    return spec, replace(options, dest_mode=mode).validated(spec)


def _plan(command: Command, options: Options, detached: bool) -> Plan:
    # Attached, a later entry with the same content is answered from the first one's row
    # (uploaded once). A detached job's rows are counted, never gathered, so each entry
    # there is asked about on its own; a copy finds its content archived and is skipped.
    dedupe = not detached and (
        command is Command.VAULT or (command is Command.ARCHIVE and not options.all)
    )
    return Plan(dedupe=dedupe, with_size=command is Command.ARCHIVE)


def preflight(stores: StorePool, spec: StoreSpec) -> None:
    """One clear line now, rather than the same failure for every file. The stores are
    the ones the operations will use in this process (their clients made once)."""
    stores.vault(spec).check()
    if spec.dest:
        # Like a prefix in a bucket, an archive directory is made by the first upload.
        stores.dest(spec).check(create=True)


def _execute(
    command: Command,
    plan: Plan,
    items: Iterable[Item],
    executor: Executor,
    spec: StoreSpec,
    options: Options,
    hear: Listener,
) -> Tally:
    tally = Tally(archive=command is Command.ARCHIVE, dedupe=plan.dedupe)
    work = Work.of(command.operation, spec, options)
    expected = _Expected(hear.on_total) if hear.on_total else None
    first = True
    while True:
        retries: list[Row] = []
        if expected:
            items = expected.items(items, more_files=first)
        for raw in executor.map(work, items, on_bytes=hear.on_bytes):
            if raw.get("fatal"):
                raise RunStopped(str(raw.get("error")))
            if expected:
                expected.done(raw)
            if tally.needs_retry(raw):
                retries.append(raw)
                continue
            row = tally.add(raw)
            hear.on_progress(1, raw.get("bytes") or 0)
            hear.on_row(row)
        if not retries:
            return tally
        # Each round retries only copies of content whose first file failed in the
        # round before, so the rounds end.
        items = retry_items(retries, with_size=True)
        first = False


# ---------------------------------------------------------------- detached jobs


class Submitter(Protocol):
    """What a detached run needs of the fleet's executor (``dmp_tasks``' is one): its
    stores, asked whether they can be used before the job is sent, and the sending."""

    stores: StorePool

    def submit_job(self, detached: DetachedJob, rules: Mapping[str, bool]) -> str:
        """Queue the job (``detached``: what its coordinator runs; ``rules``: how it is
        judged) and return its id at once."""
        ...


def _submitted_companion(meta: str | None, manifest: str) -> None:
    """A detached job's companion file, if it has one, checked against its manifest as
    the job is submitted: one clear error now, not a failed job later."""
    if meta is not None:
        open_companion(meta, manifest, shown_name(meta), shown_manifest(manifest))


def submit_check(
    manifest: str,
    executor: Submitter,
    *,
    strict: bool = False,
    ignore_missing: bool = False,
    meta: str | None = None,
) -> str:
    """Submit a check to the fleet: its coordinator runs ``check`` there, and the job is
    judged by the same rules. Only the manifest's first entry is read here (with
    ``meta``, a companion file, checked against the manifest here first)."""
    _first_entry(manifest, lambda name, stream: _check_items(name, stream, stdin=False))
    _submitted_companion(meta, manifest)
    detached = DetachedJob(
        Command.CHECK,
        os.getcwd(),
        manifest,
        strict=strict,
        ignore_missing=ignore_missing,
        meta=meta or None,
    )
    return executor.submit_job(detached, {"strict": strict, "ignore_missing": ignore_missing})


def submit_transfer(
    command: Command,
    manifest: str,
    executor: Submitter,
    spec: StoreSpec,
    options: Options,
    meta: str | None = None,
) -> str:
    """Submit --vault, --archive or --fetch to the fleet, once its stores answer: its
    coordinator runs ``transfer`` there (with ``meta``, a companion file, checked
    against the manifest here first)."""
    options.validated(spec.validated())
    preflight(executor.stores, spec)
    plan = _plan(command, options, detached=True)
    _first_entry(manifest, lambda _, stream: plan.items(parse_lines(stream)), "SHA256 ")
    _submitted_companion(meta, manifest)
    work = Work.of(command.operation, spec, options)
    detached = DetachedJob(
        command,
        os.getcwd(),
        manifest,
        stores=work.stores,
        options=work.options,
        meta=meta or None,
    )
    return executor.submit_job(detached, {"strict": options.strict})


def submit_create(
    inputs: Inputs,
    manifest: str,
    executor: Submitter,
    *,
    fmt: str = "dmp",
    meta: str | None = None,
) -> str:
    """Submit a --create to the fleet: its coordinator walks the inputs, and the
    manifest is written beside ``manifest`` on the shared filesystem and linked into
    place when complete, byte for byte what ``create`` would write here."""
    if inputs.files_from == "-":
        raise ManifestError("--detach cannot read the list of files from standard input")
    target = manifest_target(manifest)  # the temporary file, made now: its coordinator
    target.stream.close()  # writes it, and takes it over if the coordinator dies
    detached = DetachedJob(
        Command.CREATE,
        os.getcwd(),
        inputs=asdict(inputs),
        output=manifest,
        temp=target.temp,
        fmt=fmt,
    )
    companion = None
    try:
        if meta:
            companion = manifest_target(meta, "metadata file")
            companion.stream.close()
            detached = replace(detached, meta_output=meta, meta_temp=companion.temp)
        return executor.submit_job(detached, {})
    except BaseException:
        _abort(target, None)
        if companion:
            companion.abort()
        raise


def refuse_stdin(manifest: str) -> None:
    """A detached job's manifest is read on the fleet, which cannot read this stdin."""
    if manifest == "-":
        raise UsageError("--detach needs a manifest file (the fleet cannot read stdin)")


def _first_entry(
    manifest: str, items: Callable[[str, BinaryIO], Iterator[Item]], kind: str = ""
) -> None:
    """Refuse a manifest on stdin, one that cannot be opened or has no entry, before a
    job is submitted: its coordinator reads it on the fleet."""
    refuse_stdin(manifest)
    shown = shown_manifest(manifest)
    with open_manifest(manifest, shown) as stream:
        _nonempty(
            items(manifest, stream), f"{shown}: no properly formatted {kind}checksum lines found"
        )


def _nonempty(items: Iterator[Item], error: str) -> Iterator[Item]:
    """The items, or ManifestError now if there are none: an empty job is refused before
    anything is submitted."""
    first = next(items, None)
    if first is None:
        raise ManifestError(error)
    return chain([first], items)
