"""The vault on a filesystem: ``file:///dir``, the same key layout as on S3.

Every object is written to a pending file beside its final name (unnamed where the
filesystem can: ``dmp_cli.fsutil.PendingFile``), hashed as it is copied, synced, and
renamed into place only if the bytes hash to the expected sha256, so a reader never sees
a partial or wrong object, whatever is interrupted, and a killed writer leaves nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from dmp_cli.digest import CHUNK, digest_file, new_hasher
from dmp_cli.errors import (
    FatalStoreError,
    IntegrityError,
    ObjectExists,
    ObjectMissing,
    StoreError,
)
from dmp_cli.fsutil import PendingFile
from dmp_cli.store import ObjectInfo, ObjectState, OnBytes, Store, Upload


class FileStore:
    """Objects as files below ``root``; keys are ``/``-separated relative paths."""

    multipart = False  # an object is one file, written whole and renamed into place

    def __init__(self, root: str) -> None:
        self.root = root
        self.url = f"file://{root}"

    def close(self) -> None:  # nothing held between requests
        pass

    def uploads(self) -> Iterator[Upload]:
        return iter(())

    def abort_upload(self, upload: Upload) -> bool:
        return False

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def key_url(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    def check(self, create: bool = False) -> None:
        if create:
            try:
                os.makedirs(self.root, exist_ok=True)
            except OSError as exc:
                raise FatalStoreError(f"{self.url}: {exc.strerror}") from exc
        if not os.path.isdir(self.root):
            raise FatalStoreError(
                f"{self.url}: no such directory (a file:// vault must exist; make it first)"
            )

    def head(self, key: str) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StoreError(f"{self.key_url(key)}: {exc.strerror}") from exc
        return ObjectInfo(st.st_size) if stat.S_ISREG(st.st_mode) else None

    def object_state(self, key: str) -> ObjectState | None:
        """A directory has no storage classes: every object is read at once."""
        return None if self.head(key) is None else ObjectState(None)

    def request_restore(self, key: str, days: int | None, tier: str) -> str:
        raise StoreError(f"{self.key_url(key)}: a directory has no cold storage to restore from")

    def list_keys(self, prefix: str) -> Iterator[tuple[str, int]]:
        """The files whose keys start with ``prefix``, walked with os.scandir from the
        directory it names (a prefix that does not end in "/" names the start of the
        entries' names there); regular files only, as ``head`` counts them."""
        for key, st in self._files(prefix):
            yield key, st.st_size

    def list_dated(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        for key, st in self._files(prefix):
            yield key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)

    def list_states(self, prefix: str) -> Iterator[tuple[str, int, ObjectState]]:
        """A directory has no storage classes."""
        plain = ObjectState(None)
        for key, st in self._files(prefix):
            yield key, st.st_size, plain

    def _files(self, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
        """The regular files under ``prefix`` (as ``list_keys`` says), with their stat."""
        top, _, start = prefix.rpartition("/")
        pending = [top]
        while pending:
            at = pending.pop()
            try:
                with os.scandir(self._path(at) if at else self.root) as entries:
                    found = list(entries)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise StoreError(f"{self.key_url(at)}: {exc.strerror}") from exc
            if start and at == top:
                found = [entry for entry in found if entry.name.startswith(start)]
            for entry in found:
                key = f"{at}/{entry.name}" if at else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(key)
                    elif entry.is_file():
                        yield key, entry.stat()
                except FileNotFoundError:  # gone meanwhile: not there
                    continue
                except OSError as exc:
                    raise StoreError(f"{self.key_url(key)}: {exc.strerror}") from exc

    def has(self, key: str, digest: str) -> bool:
        # Content-addressed keys are their sha256; other keys (--path) must be hashed.
        try:
            return digest_file(self._path(key))[0] == digest
        except OSError:
            return False

    def put_file(
        self,
        key: str,
        path: str,
        digest: str,
        size: int,
        on_bytes: OnBytes | None = None,
        if_absent: bool = False,
        storage_class: str | None = None,  # a directory has no storage classes
    ) -> int:
        target = self._path(key)
        if if_absent and self.head(key) is not None:
            raise ObjectExists(f"{self.key_url(key)}: already there")
        # The source is opened first: a worker that blocks or dies opening it must not
        # leave a temporary file behind in the vault (nor does one that dies later: see
        # PendingFile). Objects are private to the vault's owner, as they always were.
        source = open(path, "rb")  # noqa: SIM115 - closed below
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            pending = PendingFile.beside(target, 0o600)
        except OSError as exc:
            source.close()
            raise StoreError(f"{self.key_url(key)}: {exc.strerror}") from exc
        try:
            with pending, source, os.fdopen(pending.fd, "wb", closefd=False) as out:
                sent, got = _copy_hashing(source, out, on_bytes)
                if got != digest:
                    raise IntegrityError(
                        f"changed since the manifest was made (sha256 now {got}); not stored"
                    )
                out.flush()
                os.fsync(out.fileno())
                pending.publish(replace=True)
        except OSError as exc:
            if exc.filename != path:
                raise StoreError(f"{self.key_url(key)}: {exc.strerror or exc}") from exc
            raise
        return sent

    def get_file(self, key: str, stream: BinaryIO, on_bytes: OnBytes | None = None) -> int:
        try:
            source = open(self._path(key), "rb")  # noqa: SIM115 - closed below
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectMissing(f"{self.key_url(key)}: not in the vault") from exc
        except OSError as exc:
            raise StoreError(f"{self.key_url(key)}: {exc.strerror}") from exc
        with source:
            total = 0
            while chunk := source.read(CHUNK):
                stream.write(chunk)
                total += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
            return total

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"not a range: {length} bytes at {start}")
        if length == 0:
            return b""
        try:
            with open(self._path(key), "rb") as source:
                source.seek(start)
                data = source.read(length)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectMissing(f"{self.key_url(key)}: not in the vault") from exc
        except OSError as exc:
            raise StoreError(f"{self.key_url(key)}: {exc.strerror}") from exc
        if len(data) < length:
            raise StoreError(
                f"{self.key_url(key)}: {len(data)} of the {length} bytes at {start} came "
                "(the object is shorter)"
            )
        return data

    def get_bytes(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as source:
                return source.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None  # a directory is no object, as ``head`` says
        except OSError as exc:
            raise StoreError(f"{self.key_url(key)}: {exc.strerror}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        # As put_file: written beside its name, synced, then renamed over what is there.
        target = self._path(key)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with PendingFile.beside(target, 0o600) as pending:
                view = memoryview(data)
                while view:
                    view = view[os.write(pending.fd, view) :]
                os.fsync(pending.fd)
                pending.publish(replace=True)
        except OSError as exc:
            raise StoreError(f"{self.key_url(key)}: {exc.strerror or exc}") from exc

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass  # a directory is no object, as ``head`` says
        except OSError as exc:
            raise StoreError(f"{self.key_url(key)}: {exc.strerror}") from exc

    def copy(
        self,
        source: Store,
        source_key: str,
        key: str,
        digest: str,
        storage_class: str | None = None,
    ) -> None:
        if not isinstance(source, FileStore):
            raise StoreError(
                f"{source.url} -> {self.url}: no server-side copy between different kinds of store"
            )
        # A copy, not a hard link: the vault's object must not change when the
        # --path file is later replaced or edited in place.
        self.put_file(key, source._path(source_key), digest, 0)


def _copy_hashing(source: BinaryIO, out: BinaryIO, on_bytes: OnBytes | None) -> tuple[int, str]:
    hasher = new_hasher()
    total = 0
    while chunk := source.read(CHUNK):
        hasher.update(chunk)
        out.write(chunk)
        total += len(chunk)
        if on_bytes:
            on_bytes(len(chunk))
    return total, hasher.hexdigest()
