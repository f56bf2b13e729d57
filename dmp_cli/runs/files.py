"""The files a --create writes: a new manifest and its companion of metadata, each
written beside its name and linked into place when complete, together or not at all."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from dmp_cli.errors import ManifestError
from dmp_cli.fsutil import AtomicFile
from dmp_cli.meta import Recorder
from dmp_cli.runs.report import shown_name


@dataclass
class MetaTarget:
    """A companion of metadata being written: its file, and what writes it."""

    file: AtomicFile
    recorder: Recorder

    @classmethod
    def new(cls, path: str) -> MetaTarget:
        file = manifest_target(path, "metadata file")
        return cls(file, Recorder(file.stream))


def commit(target: AtomicFile | None, meta: MetaTarget | None) -> None:
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


def abort(target: AtomicFile | None, meta: MetaTarget | None) -> None:
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
