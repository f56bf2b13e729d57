"""A manifest's companion of metadata, beyond --create's writing of it
(``dmp_cli.runs.files``): opened and verified against its manifest (for --check and
--fetch, and as a detached job is submitted), compared with what is there now (--check),
and stored in the vault beside the files (--archive)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from dmp_cli.digest import digest_stream
from dmp_cli.errors import ManifestError, ObjectExists, StoreError, UsageError
from dmp_cli.fsutil import AtomicFile
from dmp_cli.manifest import FORMATS
from dmp_cli.meta import Companion, differences, get_name, hard_link_key, open_companion
from dmp_cli.options import Options, StoreSpec
from dmp_cli.restore import TreeCounts, owners_settable
from dmp_cli.retry import with_retries
from dmp_cli.runs.report import Listener, shown_manifest, shown_name
from dmp_cli.store import StorePool


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


def open_for(meta: str | None, manifest: str, shown: str, stream: BinaryIO) -> Companion | None:
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


def compare(companion: Companion, hear: Listener) -> int:
    """Each recorded entry, link and directory against what is there now; how many
    differ. Owners are compared where a restore sets them (as root); names recorded as
    hard links of one file, that they are one file again."""
    owners = owners_settable()
    differ = 0
    firsts: dict[tuple[int, int], tuple[str, tuple[int, int] | None]] = {}
    for value in companion.records():
        found = differences(value, owners)
        key = hard_link_key(value)
        if key is not None:
            found.extend(_hard_link_difference(firsts, key, get_name(value, "path")))
        if found:
            differ += 1
            hear.on_meta(get_name(value, "path"), found)
    return differ


def _hard_link_difference(
    firsts: dict[tuple[int, int], tuple[str, tuple[int, int] | None]],
    key: tuple[int, int],
    path: str,
) -> list[str]:
    """``hard link of 'FIRST' != another file`` for a later name of a file recorded with
    hard links that is not the file its first name is now; the first name is
    remembered (only hard-linked files' are)."""
    try:
        st = os.lstat(path)
        inode: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        inode = None
    first, there = firsts.setdefault(key, (path, inode))
    if first == path or inode is None or inode == there:
        return []
    return [f"hard link of {shown_name(first)} != another file"]


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
    """Write ``target`` holding ``line``, unless it already names the same checksum (the
    companion named by another path to it: the manifest given as ``m.sha256`` once and
    as ``/abs/m.sha256`` another time); another content there is an error, left
    untouched."""
    try:
        with open(target, "rb") as stream:
            there = stream.read()
        if there == line or (there[:66] == line[:66] and there.count(b"\n") == 1):
            return
        raise ManifestError(
            f"{shown_name(target)}: already exists with another content; left untouched"
        )
    except FileNotFoundError:
        pass
    with AtomicFile(target) as file:
        file.stream.write(line)
        file.commit()


def check_submitted(meta: str | None, manifest: str) -> None:
    """A detached job's companion file, if it has one, checked against its manifest as
    the job is submitted: one clear error now, not a failed job later."""
    if meta is not None:
        open_companion(meta, manifest, shown_name(meta), shown_manifest(manifest))
